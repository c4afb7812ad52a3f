//! `event.toml`: what an organiser writes, checked and resolved into an
//! [`Event`] that the rest of venue can trust (times in UTC, rooms unique,
//! the schedule attached to the rooms).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::error::{did_you_mean, InputError};
use crate::schedule::{self, Session};

/// Hetzner Cloud locations (GET /locations). An unknown name is a typo far
/// more often than a brand-new data centre.
pub const KNOWN_LOCATIONS: &[&str] = &["fsn1", "nbg1", "hel1", "ash", "hil", "sin"];

/// What a server does in the venue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A BigBlueButton server.
    Bbb,
    /// The Jitsi Meet main host (prosody, jicofo, web, one videobridge).
    Jitsi,
    /// An extra Jitsi videobridge that joins the main host's bridge MUC.
    Jvb,
    /// The TURN server (coturn).
    Coturn,
    /// The attendee portal.
    Portal,
    /// The stream origin: stages pushed as RTMP, served as HLS.
    Stream,
    /// A caching HLS edge in front of the origin.
    Edge,
    /// The event's Matrix homeserver (Synapse, Element), at `chat.<domain>`.
    Chat,
}

impl Role {
    pub const ALL: [Role; 8] = [
        Role::Bbb,
        Role::Jitsi,
        Role::Jvb,
        Role::Coturn,
        Role::Portal,
        Role::Stream,
        Role::Edge,
        Role::Chat,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Bbb => "bbb",
            Role::Jitsi => "jitsi",
            Role::Jvb => "jvb",
            Role::Coturn => "coturn",
            Role::Portal => "portal",
            Role::Stream => "stream",
            Role::Edge => "edge",
            Role::Chat => "chat",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RoomKind {
    /// Scheduled talks; listed in the timetable.
    Session,
    /// Open rooms for hallway talk and hacking.
    Hack,
    /// Rooms that need an invitation (speaker green room, ...).
    Private,
    /// The staff room: staff only.
    Staff,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Bbb,
    Jitsi,
}

impl Backend {
    /// The most people one meeting holds: BigBlueButton advises at most 100
    /// per session (BBB FAQ); a Jitsi meeting lives on one videobridge, 120
    /// webcam participants on the servers venue rents (5% of a core each at
    /// 75% of 8 cores). Above it, a room is a stage and a stream unless its
    /// `audience` says otherwise.
    pub const fn meeting_limit(self) -> u32 {
        match self {
            Backend::Bbb => 100,
            Backend::Jitsi => 120,
        }
    }
}

impl Room {
    /// Whether the room's audience watches a stream of its stage: as
    /// event.toml says, else above what one meeting holds.
    pub fn streamed(&self) -> bool {
        match self.audience {
            Some(Audience::Stream) => true,
            Some(Audience::Interactive) => false,
            None => self.peak > self.backend.meeting_limit(),
        }
    }
}

/// What happens to media servers between event days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Overnight {
    /// Media servers exist from the first day's warm-up to the last day's grace.
    #[default]
    Keep,
    /// Media servers are released after each day and rented again the next.
    Release,
}

/// A checked event.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub id: String,
    pub name: String,
    pub timezone: Tz,
    pub domain: String,
    pub attendees: u32,
    /// The chat link on every portal page: event.toml's `chat = "<url>"`,
    /// or Element at `https://chat.<domain>/` with `[chat] enable = true`.
    pub chat: Option<String>,
    /// The event's own Matrix homeserver (`[chat] enable = true`), which
    /// venue rents as the `chat` role; None: none.
    pub homeserver: Option<Homeserver>,
    pub code_of_conduct: Option<String>,
    pub contact: Option<String>,
    pub cloud: Cloud,
    pub deploy: Deploy,
    pub tls: Tls,
    pub dns: Option<Dns>,
    pub days: Vec<Day>,
    pub rooms: Vec<Room>,
    pub static_hosts: Vec<StaticHost>,
    /// The attendees' talk vote (`[vote]`).
    pub vote: Vote,
    /// Portal settings that belong to the event (`[portal]`).
    pub portal: PortalSettings,
    /// How `venue autopilot` sizes the media servers (`[autopilot]`).
    pub autopilot: Autopilot,
    /// The schedule file as event.toml names it (relative to its folder).
    pub schedule_file: Option<String>,
    /// Sessions from the schedule, sorted by start.
    pub sessions: Vec<Session>,
    /// Where event.toml was read from.
    pub file: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
pub struct Cloud {
    pub location: String,
    pub image: String,
    pub overnight: Overnight,
    pub warmup: Duration,
    pub grace: Duration,
    /// How long before the first day's opening the portal and TURN server are up,
    /// so attendees can log in and test their audio the day before.
    pub portal_early: Duration,
}

/// Certificates for the event's names.
#[derive(Debug, Clone, Serialize)]
pub struct Tls {
    /// The ACME account's contact address: `[tls] email`, else the address of a
    /// `mailto:` contact. None: the event has no address to give (hosts cannot
    /// get certificates; `venue up` refuses before renting).
    pub email: Option<String>,
    /// The ACME server's directory URL: `[tls] acme_directory`, default Let's
    /// Encrypt production (`VENUE_ACME_DIRECTORY` overrides both).
    pub acme_directory: String,
    /// The organiser's own certificate chain and key (`[tls] certificate`,
    /// `key`, relative to event.toml): used instead of ACME when given.
    pub certificate: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// Let's Encrypt's production directory (the default); staging is
/// [`LETS_ENCRYPT_STAGING`], for trying the whole flow without its rate limits.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// DNS records for the event's names (`[dns]`).
#[derive(Debug, Clone, Serialize)]
pub struct Dns {
    /// A zone of the organiser's Hetzner project (`example.org`); the event's
    /// domain is it or a name below it.
    pub zone: String,
    /// The variable holding the token for the zone's project; None: `HCLOUD_TOKEN`.
    pub token_env: Option<String>,
}

/// The attendees' talk vote in the portal (`[vote]`). Staff can also open
/// and close it by hand on the portal, which then overrides these times.
#[derive(Debug, Clone, Serialize)]
pub struct Vote {
    /// When the vote opens by itself; None: when staff open it.
    pub opens: Option<DateTime<Utc>>,
    /// When it closes by itself; None: when staff close it.
    pub closes: Option<DateTime<Utc>>,
    /// Votes each ticket may cast (at most one per proposal); default 10.
    pub votes_per_ticket: u32,
}

/// The event's Matrix homeserver, rented for the whole event like the
/// portal (`[chat]`): Synapse with Element at `chat.<domain>`, its server
/// name the event's domain, login through the portal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Homeserver {
    /// Federation with other homeservers (port 8448 open); default off.
    pub federation: bool,
}

/// Event settings of the attendee portal (`[portal]`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct PortalSettings {
    /// Serve the schedule's calendar feed (`/schedule.ics`) without a login.
    pub public_schedule: bool,
}

/// How `venue autopilot` keeps the media servers at what the load and the
/// schedule need (`[autopilot]`). It scales BigBlueButton servers and extra
/// Jitsi videobridges; every other role is sized by the plan.
#[derive(Debug, Clone, Serialize)]
pub struct Autopilot {
    pub bbb: Limits,
    pub jvb: Limits,
    /// Capacity kept free above the load, in percent of the load.
    pub headroom_percent: u32,
    /// How long before a session its servers are rented: they boot, deploy
    /// and are checked in this time. None: what the autopilot measured for
    /// this event's earlier rents (or its default).
    pub lead: Option<Duration>,
    /// A pause between sessions shorter than this keeps the servers. Hetzner
    /// bills every started hour, and a server released in a pause must be
    /// back the lead time before the next session: below the lead plus an
    /// hour, releasing saves nothing. None: the lead + 60 minutes.
    pub gap: Option<Duration>,
}

/// How many rented servers of one role the autopilot keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Limits {
    /// Never fewer (long-lived hosts come on top).
    pub min: u32,
    /// Never more; None: as many as `venue plan` priced.
    pub max: Option<u32>,
}

/// Capacity kept above the load unless `[autopilot] headroom_percent` says
/// otherwise; the cost model's per-server figures already keep a margin.
pub const AUTOPILOT_HEADROOM_PERCENT: u32 = 20;

/// How hosts get their systems.
#[derive(Debug, Clone, Serialize)]
pub struct Deploy {
    /// A Nix file `{ fleet }: { <host> = <system>; }`; None: this flake's NixOS hosts.
    pub systems: Option<PathBuf>,
    /// A Nix file `{ fleet }: { kexec = <dir with the kexec tarball>;
    /// disko.<host> = <disko script>; }` for the install phase; None: this
    /// flake's kexec-installer package and each host's diskoScript.
    pub installer: Option<PathBuf>,
    /// How long a switched host may take to answer its health check.
    pub health_timeout: Duration,
    /// Hosts deployed at once.
    pub concurrency: u32,
    /// Compress what `nix copy` sends (ssh compression): fewer bytes on a
    /// slow uplink, more CPU on both ends.
    pub compress: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Day {
    pub date: NaiveDate,
    pub open: DateTime<Utc>,
    pub close: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Room {
    pub name: String,
    /// URL-safe name, unique within the event.
    pub slug: String,
    pub kind: RoomKind,
    pub backend: Backend,
    /// Expected peak of people in the room at once.
    pub peak: u32,
    pub webcams: bool,
    /// Public URL of the room's stream, if it is streamed.
    pub stream: Option<String>,
    /// Who takes part: everyone (`interactive`), or speakers on a stage and
    /// the audience watching a stream (`stream`). None: decided by the plan
    /// (a stream above what one meeting of the backend carries).
    pub audience: Option<Audience>,
    /// People on a streamed room's stage (speakers, moderators); None: the
    /// plan's default.
    pub stage: Option<u32>,
}

/// How a room's people take part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Audience {
    /// Everyone joins the meeting.
    Interactive,
    /// Speakers meet on a stage; everyone else watches its stream.
    Stream,
}

#[derive(Debug, Clone, Serialize)]
pub struct StaticHost {
    pub name: String,
    pub address: String,
    pub ssh_port: u16,
    /// The host's SSH public key, `algorithm base64`; pinned when deploying.
    pub host_key: String,
    pub roles: Vec<Role>,
    pub cores: u32,
    /// Its own NixOS configuration (profile, network), to which venue adds
    /// its roles; `venue deploy` deploys it like a rented server.
    pub configuration: Option<PathBuf>,
}

impl Event {
    /// Reads and checks `path`, and the schedule it names.
    pub fn load(path: &Path) -> Result<Event, InputError> {
        let source = std::fs::read_to_string(path).map_err(|e| {
            InputError::whole_file(path, format!("cannot read the event file: {e}"))
        })?;
        Event::parse(path, &source)
    }

    /// Checks an event file's text; `path` names it in errors and anchors
    /// the schedule's relative path.
    pub fn parse(path: &Path, source: &str) -> Result<Event, InputError> {
        let raw: RawEvent = toml::from_str(source).map_err(|e| toml_error(path, source, &e))?;
        let at = |offset: usize, msg: String| InputError::at_offset(path, source, offset, msg);
        raw.resolve(path, &at)
    }

    pub fn room(&self, name: &str) -> Option<&Room> {
        self.rooms.iter().find(|r| r.name == name)
    }

    /// The first opening and the last closing of the event.
    pub fn span(&self) -> (DateTime<Utc>, DateTime<Utc>) {
        let start = self
            .days
            .iter()
            .map(|d| d.open)
            .min()
            .expect("an event has days");
        let end = self
            .days
            .iter()
            .map(|d| d.close)
            .max()
            .expect("an event has days");
        (start, end)
    }
}

fn toml_error(path: &Path, source: &str, e: &toml::de::Error) -> InputError {
    let offset = e.span().map_or(0, |s| s.start);
    let mut message = e.message().trim().to_owned();
    if let Some(hint) = unknown_key_hint(&message) {
        message.push_str(&hint);
    }
    InputError::at_offset(path, source, offset, message)
}

/// serde says "unknown field `nmae`, expected one of `name`, `kind`"; add a
/// "did you mean" when one of the expected keys is a likely typo.
fn unknown_key_hint(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (word, rest) = rest.split_once('`')?;
    let expected: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
    did_you_mean(word, expected.iter().copied()).map(|s| format!("; did you mean `{s}`?"))
}

// ----- the file as written -----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvent {
    id: Spanned<String>,
    name: String,
    timezone: Spanned<String>,
    domain: Spanned<String>,
    attendees: Spanned<i64>,
    chat: Option<RawChat>,
    code_of_conduct: Option<String>,
    contact: Option<String>,
    schedule: Option<Spanned<String>>,
    #[serde(default)]
    cloud: Option<Spanned<RawCloud>>,
    #[serde(default)]
    deploy: Option<RawDeploy>,
    #[serde(default)]
    tls: Option<RawTls>,
    #[serde(default)]
    dns: Option<Spanned<RawDns>>,
    #[serde(rename = "day", default)]
    days: Vec<Spanned<RawDay>>,
    #[serde(rename = "room", default)]
    rooms: Vec<Spanned<RawRoom>>,
    #[serde(rename = "static_host", default)]
    static_hosts: Vec<Spanned<RawStaticHost>>,
    #[serde(default)]
    vote: Option<RawVote>,
    #[serde(default)]
    portal: Option<RawPortal>,
    #[serde(default)]
    autopilot: Option<RawAutopilot>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCloud {
    location: Option<Spanned<String>>,
    image: Option<String>,
    #[serde(default)]
    overnight: Overnight,
    warmup_minutes: Option<Spanned<i64>>,
    grace_minutes: Option<Spanned<i64>>,
    portal_early_hours: Option<Spanned<i64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDeploy {
    systems: Option<Spanned<String>>,
    installer: Option<Spanned<String>>,
    health_timeout_seconds: Option<Spanned<i64>>,
    concurrency: Option<Spanned<i64>>,
    compress: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTls {
    email: Option<Spanned<String>>,
    acme_directory: Option<Spanned<String>>,
    certificate: Option<Spanned<String>>,
    key: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDns {
    zone: Spanned<String>,
    token_env: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawVote {
    opens: Option<Spanned<toml::value::Datetime>>,
    closes: Option<Spanned<toml::value::Datetime>>,
    votes_per_ticket: Option<Spanned<i64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPortal {
    #[serde(default)]
    public_schedule: bool,
}

/// `chat`: a link to a chat elsewhere (`chat = "https://…"`), or the
/// `[chat]` table for the event's own homeserver.
enum RawChat {
    Link(String),
    Server(RawChatServer),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChatServer {
    enable: Spanned<bool>,
    #[serde(default)]
    federation: Option<Spanned<bool>>,
}

impl<'de> Deserialize<'de> for RawChat {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Either;
        impl<'de> serde::de::Visitor<'de> for Either {
            type Value = RawChat;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a link to the event's chat (a string), or a [chat] table with `enable` (and `federation`)")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawChat, E> {
                Ok(RawChat::Link(v.to_owned()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<RawChat, A::Error> {
                RawChatServer::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(RawChat::Server)
            }
        }
        d.deserialize_any(Either)
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAutopilot {
    bbb: Option<Spanned<RawLimits>>,
    jvb: Option<Spanned<RawLimits>>,
    headroom_percent: Option<Spanned<i64>>,
    lead_minutes: Option<Spanned<i64>>,
    gap_minutes: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    min: Option<Spanned<i64>>,
    max: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDay {
    date: Spanned<String>,
    open: Spanned<String>,
    close: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoom {
    name: Spanned<String>,
    kind: RoomKind,
    #[serde(default = "default_backend")]
    backend: Backend,
    peak: Spanned<i64>,
    webcams: Option<bool>,
    stream: Option<String>,
    audience: Option<Audience>,
    stage: Option<Spanned<i64>>,
}

fn default_backend() -> Backend {
    Backend::Bbb
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStaticHost {
    name: Spanned<String>,
    address: Spanned<String>,
    #[serde(default = "default_ssh_port")]
    ssh_port: u16,
    host_key: Spanned<String>,
    roles: Spanned<Vec<Role>>,
    cores: Spanned<i64>,
    configuration: Option<Spanned<String>>,
}

fn default_ssh_port() -> u16 {
    22
}

type At<'a> = dyn Fn(usize, String) -> InputError + 'a;

impl RawEvent {
    fn resolve(self, path: &Path, at: &At) -> Result<Event, InputError> {
        let id = self.id.get_ref();
        if !is_dns_label(id) || id.len() > 40 {
            return Err(at(
                self.id.span().start,
                format!("event id `{id}` must be 1 to 40 characters of a-z, 0-9 and '-', not starting or ending with '-' (it names servers and labels)"),
            ));
        }
        let timezone = parse_timezone(&self.timezone, at)?;
        let domain = self.domain.get_ref();
        if domain.is_empty() || !domain.split('.').all(is_dns_label) {
            return Err(at(
                self.domain.span().start,
                format!("`{domain}` is not a domain name (like conf.example.org)"),
            ));
        }
        let attendees = non_negative(&self.attendees, "attendees", at)?;
        let (chat, homeserver) = resolve_chat(self.chat, domain, at)?;
        let cloud = resolve_cloud(self.cloud, at)?;
        let autopilot = resolve_autopilot(self.autopilot.unwrap_or_default(), at)?;
        let deploy = resolve_deploy(self.deploy.unwrap_or_default(), path, at)?;

        if self.days.is_empty() {
            return Err(InputError::whole_file(
                path,
                "the event has no days: add at least one [[day]] with date, open and close",
            ));
        }
        let mut days: Vec<Day> = Vec::new();
        for raw in &self.days {
            let day = resolve_day(raw.get_ref(), timezone, at)?;
            if days.iter().any(|d| d.date == day.date) {
                return Err(at(
                    raw.get_ref().date.span().start,
                    format!("the day {} is listed twice", day.date),
                ));
            }
            days.push(day);
        }
        days.sort_by_key(|d| d.open);

        if self.rooms.is_empty() {
            return Err(InputError::whole_file(
                path,
                "the event has no rooms: add at least one [[room]]",
            ));
        }
        let mut rooms: Vec<Room> = Vec::new();
        for raw in &self.rooms {
            let r = raw.get_ref();
            let name = r.name.get_ref().trim();
            if name.is_empty() {
                return Err(at(r.name.span().start, "a room needs a name".into()));
            }
            let slug = slugify(name);
            if let Some(other) = rooms.iter().find(|o| o.slug == slug) {
                return Err(at(
                    r.name.span().start,
                    format!("room `{name}` has the same name as room `{}` (names must differ in more than case and punctuation)", other.name),
                ));
            }
            let peak = non_negative(&r.peak, "peak", at)?;
            let stage = match &r.stage {
                None => None,
                Some(s) => {
                    let n = non_negative(s, "stage", at)?;
                    if n == 0 || n > peak {
                        return Err(at(
                            s.span().start,
                            format!("stage {n}: the people on the stage are at least 1 and at most the room's peak ({peak})"),
                        ));
                    }
                    if r.audience == Some(Audience::Interactive) {
                        return Err(at(
                            s.span().start,
                            "stage is for rooms with audience = \"stream\"".into(),
                        ));
                    }
                    Some(n)
                }
            };
            rooms.push(Room {
                name: name.to_owned(),
                slug,
                kind: r.kind,
                backend: r.backend,
                peak,
                // Talks are listened to; hack and staff rooms are conversations.
                webcams: r.webcams.unwrap_or(r.kind != RoomKind::Session),
                stream: r.stream.clone(),
                audience: r.audience,
                stage,
            });
        }

        let mut static_hosts: Vec<StaticHost> = Vec::new();
        for raw in &self.static_hosts {
            let h = raw.get_ref();
            let name = h.name.get_ref();
            if !is_dns_label(name) {
                return Err(at(
                    h.name.span().start,
                    format!("static host name `{name}` must be a-z, 0-9 and '-'"),
                ));
            }
            if static_hosts.iter().any(|o| &o.name == name) {
                return Err(at(
                    h.name.span().start,
                    format!("static host `{name}` is listed twice"),
                ));
            }
            check_host_key(&h.host_key, at)?;
            if h.roles.get_ref().is_empty() {
                return Err(at(
                    h.roles.span().start,
                    format!("static host `{name}` has no roles"),
                ));
            }
            if h.roles.get_ref().contains(&Role::Chat) && homeserver.is_none() {
                return Err(at(
                    h.roles.span().start,
                    format!("static host `{name}` has the chat role, but the event runs no homeserver: add [chat] enable = true"),
                ));
            }
            let cores = non_negative(&h.cores, "cores", at)?;
            if h.address.get_ref().trim().is_empty() {
                return Err(at(
                    h.address.span().start,
                    "a static host needs an address".into(),
                ));
            }
            let configuration = match &h.configuration {
                None => None,
                Some(rel) => {
                    let file = path.parent().unwrap_or(Path::new(".")).join(rel.get_ref());
                    let file = file.canonicalize().map_err(|_| {
                        at(
                            rel.span().start,
                            format!("configuration {} does not exist", file.display()),
                        )
                    })?;
                    Some(file)
                }
            };
            static_hosts.push(StaticHost {
                name: name.clone(),
                address: h.address.get_ref().trim().to_owned(),
                ssh_port: h.ssh_port,
                host_key: h.host_key.get_ref().trim().to_owned(),
                roles: h.roles.get_ref().clone(),
                cores,
                configuration,
            });
        }

        let mut event = Event {
            id: id.clone(),
            name: self.name,
            timezone,
            domain: domain.clone(),
            attendees,
            chat,
            homeserver,
            code_of_conduct: self.code_of_conduct,
            tls: resolve_tls(
                self.tls.unwrap_or_default(),
                self.contact.as_deref(),
                path,
                at,
            )?,
            dns: match &self.dns {
                Some(d) => Some(resolve_dns(d, domain, at)?),
                None => None,
            },
            contact: self.contact,
            cloud,
            deploy,
            days,
            rooms,
            static_hosts,
            vote: resolve_vote(self.vote.unwrap_or_default(), at)?,
            portal: PortalSettings {
                public_schedule: self.portal.unwrap_or_default().public_schedule,
            },
            autopilot,
            schedule_file: self.schedule.as_ref().map(|s| s.get_ref().clone()),
            sessions: Vec::new(),
            file: path.to_path_buf(),
        };
        if let Some(schedule_path) = &self.schedule {
            let file = path
                .parent()
                .unwrap_or(Path::new("."))
                .join(schedule_path.get_ref());
            if !file.is_file() {
                return Err(at(
                    schedule_path.span().start,
                    format!("schedule file {} does not exist", file.display()),
                ));
            }
            event.sessions = schedule::load(&file, &event)?;
        }
        Ok(event)
    }
}

fn resolve_vote(raw: RawVote, at: &At) -> Result<Vote, InputError> {
    let time = |t: &Option<Spanned<toml::value::Datetime>>,
                what: &str|
     -> Result<Option<DateTime<Utc>>, InputError> {
        let Some(t) = t else { return Ok(None) };
        DateTime::parse_from_rfc3339(&t.get_ref().to_string())
            .map(|d| Some(d.with_timezone(&Utc)))
            .map_err(|_| {
                at(
                    t.span().start,
                    format!("[vote] {what} must be a date and time with its offset, like 2020-08-01T12:00:00Z, not `{}`", t.get_ref()),
                )
            })
    };
    let opens = time(&raw.opens, "opens")?;
    let closes = time(&raw.closes, "closes")?;
    if let (Some(o), Some(c), Some(cs)) = (opens, closes, &raw.closes) {
        if c <= o {
            return Err(at(
                cs.span().start,
                "[vote] closes must be after opens".into(),
            ));
        }
    }
    let votes_per_ticket = match &raw.votes_per_ticket {
        None => 10,
        Some(v) => match u32::try_from(*v.get_ref()) {
            Ok(n @ 1..=1000) => n,
            _ => {
                return Err(at(
                    v.span().start,
                    format!(
                        "[vote] votes_per_ticket must be between 1 and 1000, not {}",
                        v.get_ref()
                    ),
                ))
            }
        },
    };
    Ok(Vote {
        opens,
        closes,
        votes_per_ticket,
    })
}

/// The chat link and the event's own homeserver, from `chat`.
fn resolve_chat(
    raw: Option<RawChat>,
    domain: &str,
    at: &At,
) -> Result<(Option<String>, Option<Homeserver>), InputError> {
    match raw {
        None => Ok((None, None)),
        Some(RawChat::Link(url)) => Ok((Some(url), None)),
        Some(RawChat::Server(s)) => {
            let federation = s.federation.as_ref().is_some_and(|f| *f.get_ref());
            if !*s.enable.get_ref() {
                if let (Some(f), true) = (&s.federation, federation) {
                    return Err(at(
                        f.span().start,
                        "[chat] federation = true needs enable = true: without it venue runs no homeserver".into(),
                    ));
                }
                return Ok((None, None));
            }
            // Element is at the root of the homeserver's name.
            Ok((
                Some(format!("https://chat.{domain}/")),
                Some(Homeserver { federation }),
            ))
        }
    }
}

/// Headroom above this is a typo far more often than a plan: 400% keeps
/// five servers where one would do.
const MAX_HEADROOM_PERCENT: u32 = 400;

fn resolve_autopilot(raw: RawAutopilot, at: &At) -> Result<Autopilot, InputError> {
    let limits = |raw: &Option<Spanned<RawLimits>>, role: &str| -> Result<Limits, InputError> {
        let Some(raw) = raw else {
            return Ok(Limits::default());
        };
        let r = raw.get_ref();
        let min = match &r.min {
            None => 0,
            Some(v) => non_negative(v, &format!("[autopilot] {role}.min"), at)?,
        };
        let max = match &r.max {
            None => None,
            Some(v) => {
                let max = non_negative(v, &format!("[autopilot] {role}.max"), at)?;
                if max < min {
                    return Err(at(
                        v.span().start,
                        format!("[autopilot] {role}.max is {max}, below its min ({min})"),
                    ));
                }
                Some(max)
            }
        };
        Ok(Limits { min, max })
    };
    let headroom_percent = match &raw.headroom_percent {
        None => AUTOPILOT_HEADROOM_PERCENT,
        Some(v) => match u32::try_from(*v.get_ref()) {
            Ok(n) if n <= MAX_HEADROOM_PERCENT => n,
            _ => {
                return Err(at(
                    v.span().start,
                    format!(
                    "[autopilot] headroom_percent must be from 0 to {MAX_HEADROOM_PERCENT}, not {}",
                    v.get_ref()
                ),
                ))
            }
        },
    };
    let minutes = |v: &Option<Spanned<i64>>, what: &str| -> Result<_, InputError> {
        match v {
            None => Ok(None),
            Some(v) => Ok(Some(Duration::minutes(non_negative(v, what, at)?.into()))),
        }
    };
    let lead = minutes(&raw.lead_minutes, "[autopilot] lead_minutes")?;
    let gap = minutes(&raw.gap_minutes, "[autopilot] gap_minutes")?;
    Ok(Autopilot {
        bbb: limits(&raw.bbb, "bbb")?,
        jvb: limits(&raw.jvb, "jvb")?,
        headroom_percent,
        lead,
        gap,
    })
}

fn resolve_tls(
    raw: RawTls,
    contact: Option<&str>,
    path: &Path,
    at: &At,
) -> Result<Tls, InputError> {
    let email = match raw.email {
        Some(e) => {
            let v = e.get_ref().trim();
            if !is_email(v) {
                return Err(at(
                    e.span().start,
                    format!("[tls] email `{v}` is not an e-mail address (ACME wants one like noc@example.org)"),
                ));
            }
            Some(v.to_owned())
        }
        None => contact
            .and_then(|c| c.trim().strip_prefix("mailto:"))
            .filter(|a| is_email(a))
            .map(str::to_owned),
    };
    let acme_directory = match &raw.acme_directory {
        Some(d) => {
            let v = d.get_ref().trim();
            if !(v.starts_with("https://") || v.starts_with("http://")) {
                return Err(at(
                    d.span().start,
                    format!(
                        "[tls] acme_directory `{v}` is not a URL (e.g. {LETS_ENCRYPT_STAGING})"
                    ),
                ));
            }
            v.to_owned()
        }
        None => LETS_ENCRYPT.to_owned(),
    };
    let file = |f: &Spanned<String>, what: &str| -> Result<PathBuf, InputError> {
        let p = path.parent().unwrap_or(Path::new(".")).join(f.get_ref());
        if !p.is_file() {
            return Err(at(
                f.span().start,
                format!("[tls] {what} file {} does not exist", p.display()),
            ));
        }
        Ok(p)
    };
    let (certificate, key) = match (&raw.certificate, &raw.key) {
        (None, None) => (None, None),
        (Some(c), Some(k)) => (Some(file(c, "certificate")?), Some(file(k, "key")?)),
        (Some(c), None) => {
            return Err(at(
                c.span().start,
                "[tls] certificate needs its `key` (the private key file) too".into(),
            ))
        }
        (None, Some(k)) => {
            return Err(at(
                k.span().start,
                "[tls] key needs its `certificate` (the chain file) too".into(),
            ))
        }
    };
    Ok(Tls {
        email,
        acme_directory,
        certificate,
        key,
    })
}

fn resolve_dns(raw: &Spanned<RawDns>, domain: &str, at: &At) -> Result<Dns, InputError> {
    let r = raw.get_ref();
    let zone = r
        .zone
        .get_ref()
        .trim()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    if zone.is_empty() || !zone.split('.').all(is_dns_label) || !zone.contains('.') {
        return Err(at(
            r.zone.span().start,
            format!("[dns] zone `{zone}` is not a domain name like example.org"),
        ));
    }
    if domain != zone && !domain.ends_with(&format!(".{zone}")) {
        return Err(at(
            r.zone.span().start,
            format!("the event's domain `{domain}` is not in the zone `{zone}`: records for it cannot be made there"),
        ));
    }
    let token_env = match &r.token_env {
        Some(t) => {
            let v = t.get_ref().trim();
            if v.is_empty() || !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(at(
                    t.span().start,
                    format!("[dns] token_env `{v}` is not an environment variable name"),
                ));
            }
            Some(v.to_owned())
        }
        None => None,
    };
    Ok(Dns { zone, token_env })
}

/// Enough of an address for an ACME account: one `@` with a dotted domain, no spaces.
fn is_email(s: &str) -> bool {
    match s.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !s.contains(char::is_whitespace)
                && !domain.contains('@')
        }
        None => false,
    }
}

fn resolve_cloud(raw: Option<Spanned<RawCloud>>, at: &At) -> Result<Cloud, InputError> {
    let raw = raw.map(Spanned::into_inner).unwrap_or_default();
    let location = match &raw.location {
        None => "fsn1".to_owned(),
        Some(l) if KNOWN_LOCATIONS.contains(&l.get_ref().as_str()) => l.get_ref().clone(),
        Some(l) => {
            let hint = did_you_mean(l.get_ref(), KNOWN_LOCATIONS.iter().copied())
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
            return Err(at(
                l.span().start,
                format!(
                    "unknown Hetzner location `{}` (known: {}){hint}",
                    l.get_ref(),
                    KNOWN_LOCATIONS.join(", ")
                ),
            ));
        }
    };
    let minutes = |v: &Option<Spanned<i64>>, name: &str, default: i64| -> Result<i64, InputError> {
        match v {
            None => Ok(default),
            Some(s) => non_negative(s, name, at).map(i64::from),
        }
    };
    Ok(Cloud {
        location,
        // "auto": a venue snapshot of the event's base system when one
        // exists (`venue image build`), else Ubuntu and the install phase.
        image: raw.image.unwrap_or_else(|| "auto".to_owned()),
        overnight: raw.overnight,
        // Boot (about a minute on Hetzner), copy the closure, activate, check health,
        // and leave staff time to try the rooms before attendees arrive.
        warmup: Duration::minutes(minutes(&raw.warmup_minutes, "warmup_minutes", 60)?),
        // Sessions overrun; people linger in hallway rooms.
        grace: Duration::minutes(minutes(&raw.grace_minutes, "grace_minutes", 30)?),
        portal_early: Duration::hours(minutes(&raw.portal_early_hours, "portal_early_hours", 24)?),
    })
}

fn resolve_deploy(raw: RawDeploy, path: &Path, at: &At) -> Result<Deploy, InputError> {
    // Nix files next to the event file, as `systems` and `installer` name them.
    let nix_file = |field: &Option<Spanned<String>>, what: &str| match field {
        None => Ok(None),
        Some(rel) => {
            let file = path.parent().unwrap_or(Path::new(".")).join(rel.get_ref());
            if !file.is_file() {
                return Err(at(
                    rel.span().start,
                    format!("{what} file {} does not exist", file.display()),
                ));
            }
            Ok(Some(file))
        }
    };
    let systems = nix_file(&raw.systems, "systems")?;
    let installer = nix_file(&raw.installer, "installer")?;
    let health = match &raw.health_timeout_seconds {
        None => 120,
        Some(v) => non_negative(v, "health_timeout_seconds", at)?,
    };
    let concurrency = match &raw.concurrency {
        None => 8,
        Some(v) => match non_negative(v, "concurrency", at)? {
            0 => return Err(at(v.span().start, "concurrency must be at least 1".into())),
            n => n,
        },
    };
    Ok(Deploy {
        systems,
        installer,
        health_timeout: Duration::seconds(i64::from(health)),
        concurrency,
        compress: raw.compress.unwrap_or(true),
    })
}

fn resolve_day(raw: &RawDay, tz: Tz, at: &At) -> Result<Day, InputError> {
    let date = NaiveDate::parse_from_str(raw.date.get_ref(), "%Y-%m-%d").map_err(|_| {
        at(
            raw.date.span().start,
            format!("`{}` is not a date like 2020-08-24", raw.date.get_ref()),
        )
    })?;
    let open = local_instant(tz, date, &raw.open, at)?;
    let close = local_instant(tz, date, &raw.close, at)?;
    if close <= open {
        return Err(at(
            raw.close.span().start,
            format!(
                "the day {date} closes at {} but opens at {}: a day must close after it opens",
                raw.close.get_ref(),
                raw.open.get_ref()
            ),
        ));
    }
    Ok(Day { date, open, close })
}

fn local_instant(
    tz: Tz,
    date: NaiveDate,
    time: &Spanned<String>,
    at: &At,
) -> Result<DateTime<Utc>, InputError> {
    let t = NaiveTime::parse_from_str(time.get_ref(), "%H:%M")
        .or_else(|_| NaiveTime::parse_from_str(time.get_ref(), "%H:%M:%S"))
        .map_err(|_| {
            at(
                time.span().start,
                format!("`{}` is not a time like 09:30", time.get_ref()),
            )
        })?;
    tz.from_local_datetime(&date.and_time(t))
        .earliest()
        .map(|dt| dt.with_timezone(&Utc))
        .ok_or_else(|| {
            at(
                time.span().start,
                format!(
                    "{date} {} does not exist in {tz} (clocks skip it)",
                    time.get_ref()
                ),
            )
        })
}

fn parse_timezone(raw: &Spanned<String>, at: &At) -> Result<Tz, InputError> {
    raw.get_ref().parse::<Tz>().map_err(|_| {
        let hint = did_you_mean(
            raw.get_ref(),
            chrono_tz::TZ_VARIANTS.iter().map(|t| t.name()),
        )
        .map(|s| format!("; did you mean `{s}`?"))
        .unwrap_or_default();
        at(
            raw.span().start,
            format!(
                "unknown time zone `{}`: use an IANA name like Europe/Berlin or UTC{hint}",
                raw.get_ref()
            ),
        )
    })
}

fn non_negative(v: &Spanned<i64>, what: &str, at: &At) -> Result<u32, InputError> {
    u32::try_from(*v.get_ref()).map_err(|_| {
        at(
            v.span().start,
            format!(
                "{what} must be a whole number from 0 to {}, not {}",
                u32::MAX,
                v.get_ref()
            ),
        )
    })
}

fn check_host_key(key: &Spanned<String>, at: &At) -> Result<(), InputError> {
    const ALGORITHMS: &[&str] = &[
        "ssh-ed25519",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "ssh-rsa",
    ];
    let mut parts = key.get_ref().split_whitespace();
    let ok = matches!((parts.next(), parts.next()), (Some(alg), Some(b64))
        if ALGORITHMS.contains(&alg) && b64.len() >= 16 && b64.chars().all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c)));
    if ok {
        Ok(())
    } else {
        Err(at(
            key.span().start,
            "host_key must be an SSH public key like `ssh-ed25519 AAAAC3Nza...` (the line in /etc/ssh/ssh_host_ed25519_key.pub)".into(),
        ))
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Lower-case ASCII letters and digits joined by single dashes.
pub fn slugify(name: &str) -> String {
    let mut slug = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    while slug.ends_with('-') {
        slug.pop();
    }
    slug
}

/// Room names of the event, for "did you mean" in schedule errors.
pub(crate) fn room_names(event: &Event) -> HashSet<&str> {
    event.rooms.iter().map(|r| r.name.as_str()).collect()
}
