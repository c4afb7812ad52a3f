//! What the venue needs now: given the load on every BigBlueButton server
//! and Jitsi videobridge, and the schedule ahead, which servers to add, to
//! drain and to release. Pure (no I/O): the autopilot's loop gathers the
//! observation and carries the decision out.
//!
//! Public interface (the core loop uses these):
//! ```text
//! pub enum State { Active, Draining }
//! pub struct MeetingLoad { id: String, participants: u64, video: u64, listeners: u64 }
//!     impl From<&check::bbb::Meeting>; fn units(&self) -> u64
//! pub struct BbbServer { name, long_lived_units: Option<u64>, state: State,
//!                        meetings: Option<Vec<MeetingLoad>> }
//! pub struct Bridge { name, long_lived: bool, state: State,
//!                     stress: Option<f64>, conferences: Option<u64> }
//! pub struct Expected { room: String, backend: Backend, people: u32, webcams: bool,
//!                       starts_in: Duration }
//! pub struct Observation { event_id: String, bbb: Vec<BbbServer>, bridges: Vec<Bridge>,
//!                          expected: Vec<Expected> }
//! pub struct Bounds { min: u32, max: u32 }
//! pub struct Settings { bbb: Bounds, jvb: Bounds, headroom_percent: u32, lead: Duration,
//!                       gap: Duration, lead_source: LeadSource }
//! pub enum LeadSource { Event, Measured }
//!     fn Settings::new(&conference::event::Autopilot, &plan::Plan, lead: Duration) -> Settings
//!         // lead: the measured one (autopilot::lead), unless event.toml sets lead_minutes
//!     fn Settings::horizon(&self) -> Duration
//! pub struct Add { role: Role, count: u32, reason: String }
//! pub struct Action { role: Role, name: String, reason: String }
//! pub struct Decision { add: Vec<Add>, undrain: Vec<Action>, drain: Vec<Action>,
//!                       release: Vec<Action>, notes: Vec<String> }
//!     fn is_empty(&self) -> bool
//! pub fn expected_rooms(&Event, now: DateTime<Utc>, horizon: Duration,
//!                       Option<&plan::measured::Measured>) -> Vec<Expected>
//! pub fn decide(&Settings, &Observation) -> Decision
//! // and for the measured load the planner reads (plan::measured):
//! pub fn plan::measured::record(&StateDir, &Event, &[Sample { room: slug, people: u32 }],
//!                               now: DateTime<Utc>) -> Result<Measured>
//! ```
//!
//! The rules:
//! - Load is counted in the plan's units (plan::cost_model): a BigBlueButton
//!   participant as a listener, one with a webcam double; a videobridge by
//!   its own `stress_level` (jvb's /colibri/stats), where jicofo's default
//!   `jicofo.bridge.stress-threshold = 0.8` (jicofo-selector reference.conf
//!   @ 00e73cc1778c) is a full bridge: above it jicofo calls the bridge
//!   overstressed.
//! - Demand is, per room, the larger of the people in its meeting now and
//!   the people expected when a session of the room starts within the lead
//!   time (scaling up before the block starts); meetings of no room count
//!   as they are. Bridges report no rooms: their demand is the larger of the
//!   summed stress and the expected rooms.
//! - Servers wanted = the demand plus the headroom, less what long-lived
//!   hosts carry, in servers of the cost model, between the event's min and
//!   max. A room that exists needs a server to live on.
//! - Hysteresis: a server is drained only when the demand within the gap
//!   (a pause shorter than `gap` keeps the servers) fits the remaining
//!   servers with another DRAIN_MARGIN_PERCENT of headroom; between the
//!   two thresholds nothing changes. A draining server is taken back before
//!   a new one is rented.
//! - Release: only a rented server that is draining and reported empty (no
//!   meeting at all, no conference): never a server with a live meeting,
//!   nor one whose meetings are unknown, nor a long-lived host.

use std::cmp::Reverse;

use chrono::{DateTime, Duration, Utc};
use conference::event::Autopilot;
use conference::{Backend, Event, Role};
use serde::Serialize;

use crate::check::bbb::Meeting;
use crate::plan::cost_model::{bbb_live_units, people_units, server_units, JITSI_SERVER_UNITS};
use crate::plan::measured::Measured;
use crate::plan::{stream, Plan};

/// jicofo's `bridge.stress-threshold` (0.8), in thousandths: a full bridge.
pub const BRIDGE_FULL_MILLI: u64 = 800;

/// Extra headroom, in percent of the load, that the servers left after a
/// drain must still have: the band between adding and draining.
pub const DRAIN_MARGIN_PERCENT: u64 = 25;

/// Whether a server takes new meetings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Active,
    /// Gets no new meeting; released once empty.
    Draining,
}

/// One meeting on a BigBlueButton server, as getMeetings counts it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct MeetingLoad {
    pub id: String,
    pub participants: u64,
    /// Webcam streams (`videoCount`).
    pub video: u64,
    /// Listen-only participants (`listenerCount`).
    pub listeners: u64,
}

impl MeetingLoad {
    /// Its load in the cost model's BigBlueButton units.
    pub fn units(&self) -> u64 {
        bbb_live_units(self.participants, self.video)
    }
}

impl From<&Meeting> for MeetingLoad {
    fn from(m: &Meeting) -> MeetingLoad {
        MeetingLoad {
            id: m.id.clone(),
            participants: m.participants,
            video: m.video,
            listeners: m.listeners,
        }
    }
}

/// A BigBlueButton server of the venue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BbbServer {
    pub name: String,
    /// A long-lived host and the units it carries (cost_model::static_units);
    /// None: rented, of the cost model's server type (cost_model::server_units).
    /// Long-lived hosts are never drained or released.
    pub long_lived_units: Option<u64>,
    pub state: State,
    /// Its meetings as last polled; None: not known (not answering, not
    /// polled since it began draining).
    pub meetings: Option<Vec<MeetingLoad>>,
}

/// A Jitsi videobridge.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bridge {
    pub name: String,
    /// The main Jitsi host's bridge or a long-lived host's: never drained.
    pub long_lived: bool,
    pub state: State,
    /// `stress_level` from /colibri/stats; None: not answering.
    pub stress: Option<f64>,
    /// `conferences` from /colibri/stats; None: not answering.
    pub conferences: Option<u64>,
}

/// A room the schedule expects people in soon, or now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Expected {
    /// The room's slug: its meeting is `<event>-<slug>`.
    pub room: String,
    pub backend: Backend,
    /// People expected in its meeting (a streamed room: its stage).
    pub people: u32,
    pub webcams: bool,
    /// Until it opens; zero when it is open.
    #[serde(serialize_with = "minutes")]
    pub starts_in: Duration,
}

fn minutes<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_i64(d.num_minutes())
}

/// What the autopilot saw.
#[derive(Debug, Clone, Serialize)]
pub struct Observation {
    pub event_id: String,
    pub bbb: Vec<BbbServer>,
    pub bridges: Vec<Bridge>,
    /// From [`expected_rooms`] with [`Settings::horizon`].
    pub expected: Vec<Expected>,
}

/// How many rented servers of a role there may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Bounds {
    pub min: u32,
    pub max: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub bbb: Bounds,
    pub jvb: Bounds,
    pub headroom_percent: u32,
    pub lead: Duration,
    pub gap: Duration,
    pub lead_source: LeadSource,
}

/// Where the lead time comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LeadSource {
    /// `[autopilot] lead_minutes`.
    Event,
    /// Given by the autopilot: measured from this event's earlier rents,
    /// or its default.
    Measured,
}

impl Settings {
    /// The event's `[autopilot]`; a max left out is what `venue plan`
    /// priced for the role (never less than the min); a lead time left out
    /// is `lead`, the one measured for this event's rents (autopilot::lead);
    /// a gap left out is the lead + an hour.
    pub fn new(autopilot: &Autopilot, plan: &Plan, lead: Duration) -> Settings {
        let planned = |role: Role| -> u32 {
            plan.servers
                .iter()
                .filter(|g| g.role == role)
                .map(|g| g.count)
                .sum()
        };
        let bounds = |l: &conference::event::Limits, role: Role| Bounds {
            min: l.min,
            max: l.max.unwrap_or_else(|| planned(role).max(l.min)),
        };
        let (lead, lead_source) = match autopilot.lead {
            Some(l) => (l, LeadSource::Event),
            None => (lead, LeadSource::Measured),
        };
        Settings {
            bbb: bounds(&autopilot.bbb, Role::Bbb),
            jvb: bounds(&autopilot.jvb, Role::Jvb),
            headroom_percent: autopilot.headroom_percent,
            lead,
            gap: autopilot.gap.unwrap_or(lead + Duration::hours(1)),
            lead_source,
        }
    }

    /// How far ahead the schedule matters: the lead time to add, the gap to keep.
    pub fn horizon(&self) -> Duration {
        self.lead.max(self.gap)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Add {
    pub role: Role,
    pub count: u32,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Action {
    pub role: Role,
    pub name: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// Servers to rent, per role.
    pub add: Vec<Add>,
    /// Draining servers to take new meetings again (before renting more).
    pub undrain: Vec<Action>,
    /// Servers to give no new meeting.
    pub drain: Vec<Action>,
    /// Drained, empty servers to delete.
    pub release: Vec<Action>,
    /// Per role: the load, the capacity and what is wanted.
    pub notes: Vec<String>,
}

impl Decision {
    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.add.is_empty()
            && self.undrain.is_empty()
            && self.drain.is_empty()
            && self.release.is_empty()
    }
}

/// The rooms the schedule expects people in within `horizon` of `now`: a
/// room with sessions from `horizon` before one starts until `[cloud]
/// grace` after it ends; a room without sessions (hack rooms, an event
/// without a schedule) while a day is open, likewise. People: the room's
/// measured peak where `venue plan` would use it, else its declared peak; a
/// streamed room by its stage.
pub fn expected_rooms(
    event: &Event,
    now: DateTime<Utc>,
    horizon: Duration,
    measured: Option<&Measured>,
) -> Vec<Expected> {
    let (event, _) = crate::plan::measured::apply(event, measured);
    let staged = stream::staged(&event);
    let grace = event.cloud.grace;
    let starts_in = |start: DateTime<Utc>, end: DateTime<Utc>| {
        (start - horizon <= now && now < end + grace).then(|| (start - now).max(Duration::zero()))
    };
    let mut out = Vec::new();
    for room in &staged.rooms {
        let mut sessions = event
            .sessions
            .iter()
            .filter(|s| s.room == room.name)
            .peekable();
        let soonest = if sessions.peek().is_some() {
            sessions.filter_map(|s| starts_in(s.start, s.end)).min()
        } else {
            event
                .days
                .iter()
                .filter_map(|d| starts_in(d.open, d.close))
                .min()
        };
        if let Some(starts_in) = soonest {
            out.push(Expected {
                room: room.slug.clone(),
                backend: room.backend,
                people: room.peak,
                webcams: room.webcams,
                starts_in,
            });
        }
    }
    out
}

/// One server of a role, as the sizing sees it.
struct Member<'a> {
    name: &'a str,
    /// None: rented, of the role's standard size.
    long_lived: Option<u64>,
    state: State,
    /// Its load, for picking the least loaded to drain.
    load: u64,
    /// It answers: it can be taken back from draining.
    answers: bool,
    /// Known to hold nothing: it may be released once drained.
    empty: bool,
}

/// What one role's sizing gets.
struct Sizing<'a> {
    role: Role,
    bounds: Bounds,
    headroom: u64,
    /// The unit of the notes.
    unit: &'static str,
    per_server: u64,
    /// Demand within the lead time (to add) and within the gap (to keep).
    need: u64,
    keep: u64,
    /// Rooms open within the lead time / the gap: they need a server to live on.
    rooms_need: bool,
    rooms_keep: bool,
    members: Vec<Member<'a>>,
}

/// Decides what to add, take back, drain and release.
pub fn decide(settings: &Settings, obs: &Observation) -> Decision {
    let mut d = Decision::default();
    let headroom = u64::from(settings.headroom_percent);
    let soon = |e: &&Expected| e.starts_in <= settings.lead;
    let keep = |e: &&Expected| e.starts_in <= settings.horizon();

    // BigBlueButton: per room, the larger of now and expected.
    let live: Vec<&MeetingLoad> = obs
        .bbb
        .iter()
        .filter_map(|s| s.meetings.as_ref())
        .flatten()
        .collect();
    let bbb_expected: Vec<&Expected> = obs
        .expected
        .iter()
        .filter(|e| e.backend == Backend::Bbb)
        .collect();
    let demand = |window: &dyn Fn(&&Expected) -> bool| -> u64 {
        let mut total = 0;
        let mut rooms_seen = Vec::new();
        for e in bbb_expected.iter().filter(|e| window(e)) {
            let id = format!("{}-{}", obs.event_id, e.room);
            let now: u64 = live.iter().filter(|m| m.id == id).map(|m| m.units()).sum();
            let expected = people_units(Backend::Bbb, u64::from(e.people), e.webcams);
            total += now.max(expected);
            rooms_seen.push(id);
        }
        total
            + live
                .iter()
                .filter(|m| !rooms_seen.contains(&m.id))
                .map(|m| m.units())
                .sum::<u64>()
    };
    let bbb = Sizing {
        role: Role::Bbb,
        bounds: settings.bbb,
        headroom,
        unit: "units",
        per_server: server_units(Backend::Bbb),
        need: demand(&soon),
        keep: demand(&keep),
        rooms_need: bbb_expected.iter().any(soon),
        rooms_keep: bbb_expected.iter().any(keep),
        members: obs
            .bbb
            .iter()
            .map(|s| Member {
                name: &s.name,
                long_lived: s.long_lived_units,
                state: s.state,
                load: s
                    .meetings
                    .as_ref()
                    .map_or(0, |ms| ms.iter().map(MeetingLoad::units).sum()),
                answers: s.meetings.is_some(),
                empty: s.meetings.as_ref().is_some_and(Vec::is_empty),
            })
            .collect(),
    };
    size(&bbb, &mut d);

    // Jitsi: bridges report stress, not rooms.
    let jitsi_expected = |window: &dyn Fn(&&Expected) -> bool| -> u64 {
        obs.expected
            .iter()
            .filter(|e| e.backend == Backend::Jitsi)
            .filter(|e| window(e))
            .map(|e| {
                (people_units(Backend::Jitsi, u64::from(e.people), e.webcams) * BRIDGE_FULL_MILLI)
                    .div_ceil(JITSI_SERVER_UNITS)
            })
            .sum()
    };
    let stress_milli = |s: Option<f64>| -> u64 {
        // NaN and negative answers count as nothing; f64 → u64 saturates.
        s.map_or(0, |s| (s.max(0.0) * 1000.0).ceil() as u64)
    };
    let measured: u64 = obs.bridges.iter().map(|b| stress_milli(b.stress)).sum();
    let jvb = Sizing {
        role: Role::Jvb,
        bounds: settings.jvb,
        headroom,
        unit: "thousandths of a bridge",
        per_server: BRIDGE_FULL_MILLI,
        need: measured.max(jitsi_expected(&soon)),
        keep: measured.max(jitsi_expected(&keep)),
        // The main Jitsi host is always there for rooms to live on.
        rooms_need: false,
        rooms_keep: false,
        members: obs
            .bridges
            .iter()
            .map(|b| Member {
                name: &b.name,
                long_lived: b.long_lived.then_some(BRIDGE_FULL_MILLI),
                state: b.state,
                load: stress_milli(b.stress),
                answers: b.stress.is_some(),
                empty: b.conferences == Some(0),
            })
            .collect(),
    };
    if !obs.bridges.is_empty() || jvb.need > 0 || settings.jvb.min > 0 {
        size(&jvb, &mut d);
    }
    d
}

/// Rented servers wanted for `demand` plus `headroom_percent`, beyond what
/// long-lived hosts carry.
fn servers_for(
    demand: u64,
    headroom_percent: u64,
    long_lived: u64,
    per_server: u64,
    rooms: bool,
) -> u64 {
    let with_headroom = (demand * (100 + headroom_percent)).div_ceil(100);
    let n = with_headroom
        .saturating_sub(long_lived)
        .div_ceil(per_server);
    if rooms && long_lived == 0 {
        n.max(1)
    } else {
        n
    }
}

fn size(s: &Sizing, d: &mut Decision) {
    let long_lived: u64 = s
        .members
        .iter()
        .filter(|m| m.state == State::Active)
        .filter_map(|m| m.long_lived)
        .sum();
    let rented = |state: State| {
        s.members
            .iter()
            .filter(move |m| m.long_lived.is_none() && m.state == state)
    };
    let active = rented(State::Active).count() as u64;
    let need = servers_for(s.need, s.headroom, long_lived, s.per_server, s.rooms_need);
    let keep = servers_for(
        s.keep,
        s.headroom + DRAIN_MARGIN_PERCENT,
        long_lived,
        s.per_server,
        s.rooms_keep,
    )
    .max(need);
    let (min, max) = (u64::from(s.bounds.min), u64::from(s.bounds.max));
    let target = need.max(active.min(keep)).clamp(min, max);
    let role = s.role;
    let limit = if need > max {
        format!("; capped at the max of {max}")
    } else if need.max(keep.min(active)) < min {
        format!("; raised to the min of {min}")
    } else {
        String::new()
    };
    let why = format!(
        "{role}: load {} {unit} within the lead time ({} within the gap), +{}% headroom; long-lived hosts carry {long_lived}, a rented server {}: {need} rented wanted, {keep} kept{limit}; {active} active",
        s.need,
        s.keep,
        s.headroom,
        s.per_server,
        unit = s.unit
    );
    d.notes.push(why.clone());

    let mut undrained = Vec::new();
    if target > active {
        let mut deficit = target - active;
        // Taking a draining server back is faster and cheaper than renting.
        let mut back: Vec<&Member> = rented(State::Draining).filter(|m| m.answers).collect();
        back.sort_by_key(|m| (Reverse(m.load), m.name));
        for m in back.into_iter().take(deficit as usize) {
            d.undrain.push(Action {
                role,
                name: m.name.to_owned(),
                reason: format!("{role} needs {target} active servers, {active} are: {why}"),
            });
            undrained.push(m.name);
            deficit -= 1;
        }
        if deficit > 0 {
            d.add.push(Add {
                role,
                count: u32::try_from(deficit).unwrap_or(u32::MAX),
                reason: format!("{role} needs {target} active servers, {active} are: {why}"),
            });
        }
    } else if target < active {
        // The least loaded go first; among equals the last rented (the
        // highest number in the name).
        let mut out: Vec<&Member> = rented(State::Active).collect();
        out.sort_by_key(|m| (m.load, Reverse(name_number(m.name)), Reverse(m.name)));
        for m in out.into_iter().take((active - target) as usize) {
            d.drain.push(Action {
                role,
                name: m.name.to_owned(),
                reason: format!(
                    "{role} keeps {target} active servers, {active} are (load here {} {}): {why}",
                    m.load, s.unit
                ),
            });
        }
    }
    for m in rented(State::Draining) {
        if m.empty && !undrained.contains(&m.name) {
            d.release.push(Action {
                role,
                name: m.name.to_owned(),
                reason: "drained and empty: no meeting on it".to_owned(),
            });
        }
    }
}

/// The `<n>` of `<event>-<role>-<n>`, for ordering servers as rented.
fn name_number(name: &str) -> u64 {
    name.rsplit('-')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::plan::prices::PriceTable;

    fn t(h: u32, m: u32) -> DateTime<Utc> {
        format!("2026-05-01T{h:02}:{m:02}:00Z").parse().unwrap()
    }

    /// Three listen-only BBB talk rooms of 80 with sessions 10:00-12:00 and
    /// 14:00-16:00, a Jitsi hack room of 20, a day open 09:00-17:00 UTC.
    fn event() -> Event {
        let mut s = String::from(
            "id = \"ev\"\nname = \"Ev\"\ntimezone = \"UTC\"\ndomain = \"ev.example.org\"\nattendees = 300\n\
             [[day]]\ndate = \"2026-05-01\"\nopen = \"09:00\"\nclose = \"17:00\"\n\
             [[room]]\nname = \"Hall\"\nkind = \"hack\"\nbackend = \"jitsi\"\npeak = 20\n",
        );
        for r in ["A", "B", "C"] {
            s += &format!("[[room]]\nname = \"{r}\"\nkind = \"session\"\npeak = 80\n");
        }
        let mut e = Event::parse(Path::new("event.toml"), &s).unwrap();
        for r in ["A", "B", "C"] {
            for (start, end) in [(t(10, 0), t(12, 0)), (t(14, 0), t(16, 0))] {
                e.sessions.push(crate::plan::test_session(r, start, end));
            }
        }
        e
    }

    fn settings(min: u32, max: u32, lead: i64, gap: i64) -> Settings {
        Settings {
            bbb: Bounds { min, max },
            jvb: Bounds { min: 0, max: 2 },
            headroom_percent: 20,
            lead: Duration::minutes(lead),
            gap: Duration::minutes(gap),
            lead_source: LeadSource::Event,
        }
    }

    fn rented(name: &str, state: State, people: &[(&str, u64)]) -> BbbServer {
        BbbServer {
            name: name.into(),
            long_lived_units: None,
            state,
            meetings: Some(
                people
                    .iter()
                    .map(|(id, n)| MeetingLoad {
                        id: (*id).into(),
                        participants: *n,
                        ..MeetingLoad::default()
                    })
                    .collect(),
            ),
        }
    }

    fn observe(s: &Settings, now: DateTime<Utc>, bbb: Vec<BbbServer>) -> Observation {
        Observation {
            event_id: "ev".into(),
            bbb,
            bridges: vec![],
            expected: expected_rooms(&event(), now, s.horizon(), None)
                .into_iter()
                .filter(|e| e.backend == Backend::Bbb)
                .collect(),
        }
    }

    fn names(actions: &[Action]) -> Vec<&str> {
        actions.iter().map(|a| a.name.as_str()).collect()
    }

    #[test]
    fn rents_a_lead_time_before_the_block_and_not_earlier() {
        let s = settings(0, 6, 60, 120);
        // 08:30: the block is 90 minutes away, beyond the lead time.
        let d = decide(&s, &observe(&s, t(8, 30), vec![]));
        assert!(d.is_empty(), "{d:?}");
        // 09:05: 240 people × 2 units + 20% = 576 units: two servers of 300.
        let d = decide(&s, &observe(&s, t(9, 5), vec![]));
        assert_eq!(d.add.len(), 1, "{d:?}");
        assert_eq!((d.add[0].role, d.add[0].count), (Role::Bbb, 2));
        assert!(
            d.add[0].reason.contains("load 480 units"),
            "{}",
            d.add[0].reason
        );
    }

    #[test]
    fn more_people_than_expected_add_a_server() {
        let s = settings(0, 6, 60, 120);
        let busy = |n| {
            vec![
                rented("ev-bbb-1", State::Active, &[("ev-a", n), ("ev-b", 80)]),
                rented("ev-bbb-2", State::Active, &[("ev-c", 80)]),
            ]
        };
        assert!(decide(&s, &observe(&s, t(10, 30), busy(80))).is_empty());
        // Room A has 140 instead of 80: 600 units + 20% = 720: three servers.
        let d = decide(&s, &observe(&s, t(10, 30), busy(140)));
        assert_eq!(d.add[0].count, 1, "{d:?}");
        // The max caps it.
        let d = decide(&settings(0, 2, 60, 120), &observe(&s, t(10, 30), busy(140)));
        assert!(d.add.is_empty(), "{d:?}");
        assert!(
            d.notes[0].contains("capped at the max of 2"),
            "{}",
            d.notes[0]
        );
    }

    #[test]
    fn a_pause_shorter_than_the_gap_keeps_the_servers() {
        let servers = || {
            vec![
                rented("ev-bbb-1", State::Active, &[]),
                rented("ev-bbb-2", State::Active, &[]),
            ]
        };
        // 12:40, after the morning block and its grace; the next at 14:00.
        let s = settings(0, 6, 60, 120);
        assert!(decide(&s, &observe(&s, t(12, 40), servers())).is_empty());
        let s = settings(0, 6, 60, 30);
        let d = decide(&s, &observe(&s, t(12, 40), servers()));
        assert_eq!(names(&d.drain), ["ev-bbb-2", "ev-bbb-1"], "{d:?}");
        // The min holds one.
        let s = settings(1, 6, 60, 30);
        let d = decide(&s, &observe(&s, t(12, 40), servers()));
        assert_eq!(names(&d.drain), ["ev-bbb-2"], "{d:?}");
    }

    #[test]
    fn between_adding_and_draining_nothing_changes() {
        let s = settings(0, 6, 60, 120);
        let with = |a, b| {
            vec![
                rented("ev-bbb-1", State::Active, &[("ev-a", a)]),
                rented("ev-bbb-2", State::Active, &[("ev-b", b)]),
                rented("ev-bbb-3", State::Active, &[("ev-c", 80)]),
            ]
        };
        // 10:30, three rooms expected at 80. Three servers, the load wants
        // two (576 units) but keeping two needs 480 × 1.45 = 696 > 600.
        assert!(decide(&s, &observe(&s, t(10, 30), with(80, 80))).is_empty());
        // After the day: nothing expected, and room C still talking; the
        // two emptier servers go.
        let d = decide(&s, &observe(&s, t(17, 40), with(3, 0)));
        assert_eq!(names(&d.drain), ["ev-bbb-2", "ev-bbb-1"], "{d:?}");
        assert!(d.drain[0].reason.contains("keeps 1 active servers, 3 are"));
    }

    #[test]
    fn a_draining_server_is_taken_back_before_one_is_rented() {
        let s = settings(0, 6, 60, 120);
        let servers = vec![
            rented("ev-bbb-1", State::Active, &[("ev-a", 80)]),
            rented("ev-bbb-2", State::Draining, &[("ev-b", 80)]),
            rented("ev-bbb-3", State::Draining, &[]),
        ];
        let d = decide(&s, &observe(&s, t(10, 30), servers));
        // Two needed, one active: the busier draining one comes back, and
        // the empty one goes.
        assert_eq!(names(&d.undrain), ["ev-bbb-2"], "{d:?}");
        assert!(d.add.is_empty());
        assert_eq!(names(&d.release), ["ev-bbb-3"]);
    }

    #[test]
    fn only_a_drained_empty_rented_server_is_released() {
        let s = settings(0, 6, 60, 120);
        let mut unknown = rented("ev-bbb-3", State::Draining, &[]);
        unknown.meetings = None;
        let servers = vec![
            // A meeting nobody is in any more is still a meeting.
            rented("ev-bbb-1", State::Draining, &[("ev-a", 0)]),
            rented("ev-bbb-2", State::Draining, &[]),
            unknown,
            rented("ev-bbb-4", State::Active, &[]),
            BbbServer {
                name: "coop".into(),
                long_lived_units: Some(150),
                state: State::Active,
                meetings: Some(vec![]),
            },
        ];
        let d = decide(&s, &observe(&s, t(18, 0), servers));
        assert_eq!(names(&d.release), ["ev-bbb-2"], "{d:?}");
        assert_eq!(names(&d.drain), ["ev-bbb-4"], "the long-lived host stays");
    }

    #[test]
    fn bridges_follow_their_stress() {
        let s = settings(0, 6, 60, 120);
        let bridge = |name: &str, long_lived, stress| Bridge {
            name: name.into(),
            long_lived,
            state: State::Active,
            stress: Some(stress),
            conferences: Some(1),
        };
        let obs = |bridges| Observation {
            event_id: "ev".into(),
            bbb: vec![],
            bridges,
            expected: vec![],
        };
        // 0.3 + 0.2 = 500 thousandths + 20% = 600: the main host carries it.
        let d = decide(
            &s,
            &obs(vec![
                bridge("ev-jitsi-1", true, 0.3),
                bridge("ev-jvb-1", false, 0.2),
            ]),
        );
        assert_eq!(names(&d.drain), ["ev-jvb-1"], "{d:?}");
        // 0.75 + 0.7: 1450 + 20% = 1740, less 800: two rented bridges.
        let d = decide(
            &s,
            &obs(vec![
                bridge("ev-jitsi-1", true, 0.75),
                bridge("ev-jvb-1", false, 0.7),
            ]),
        );
        assert_eq!((d.add[0].role, d.add[0].count), (Role::Jvb, 1), "{d:?}");
        assert!(
            d.notes.iter().any(|n| n.starts_with("jvb: load 1450")),
            "{:?}",
            d.notes
        );
        // A drained bridge with no conference goes; one with a conference stays.
        let mut empty = bridge("ev-jvb-2", false, 0.0);
        empty.state = State::Draining;
        empty.conferences = Some(0);
        let mut busy = bridge("ev-jvb-3", false, 0.05);
        busy.state = State::Draining;
        let d = decide(&s, &obs(vec![bridge("ev-jitsi-1", true, 0.1), empty, busy]));
        assert_eq!(names(&d.release), ["ev-jvb-2"], "{d:?}");
    }

    #[test]
    fn expected_rooms_follow_the_schedule_and_the_day() {
        let e = event();
        let slugs = |now, horizon| -> Vec<(String, i64)> {
            expected_rooms(&e, now, Duration::minutes(horizon), None)
                .into_iter()
                .map(|x| (x.room, x.starts_in.num_minutes()))
                .collect()
        };
        assert!(slugs(t(7, 0), 60).is_empty());
        // The hack room opens with the day; the talks with their sessions.
        assert_eq!(slugs(t(8, 30), 60), [("hall".to_owned(), 30)]);
        assert_eq!(
            slugs(t(9, 30), 60),
            [
                ("hall".into(), 0),
                ("a".into(), 30),
                ("b".into(), 30),
                ("c".into(), 30)
            ]
        );
        // After 12:00 plus the 30 minutes' grace, until the lead before 14:00.
        assert_eq!(slugs(t(12, 45), 60).len(), 1);
        assert_eq!(slugs(t(12, 45), 120).len(), 4);
        // A measured peak is used as the plan would: after an hour's watch.
        let mut m = crate::plan::measured::Measured::default();
        let sample = |people| {
            [crate::plan::measured::Sample {
                room: "a".into(),
                people,
            }]
        };
        crate::plan::measured::merge(&mut m, &sample(30), t(8, 0));
        crate::plan::measured::merge(&mut m, &sample(10), t(9, 30));
        let a = expected_rooms(&e, t(10, 0), Duration::minutes(60), Some(&m));
        assert_eq!(a.iter().find(|x| x.room == "a").unwrap().people, 30);
    }

    #[test]
    fn settings_default_to_the_plan_and_the_measured_lead() {
        let e = event();
        let plan = crate::plan::plan(&e, &PriceTable::bundled()).unwrap();
        let s = Settings::new(&e.autopilot, &plan, Duration::minutes(25));
        // One per room: each is more than half a server (plan::media_servers).
        assert_eq!(s.bbb, Bounds { min: 0, max: 3 }, "the plan's BBB servers");
        assert_eq!((s.lead.num_minutes(), s.gap.num_minutes()), (25, 85));
        assert_eq!(s.lead_source, LeadSource::Measured);
        let mut a = e.autopilot.clone();
        a.lead = Some(Duration::minutes(90));
        a.bbb.min = 4;
        let s = Settings::new(&a, &plan, Duration::minutes(25));
        assert_eq!(s.bbb, Bounds { min: 4, max: 4 });
        assert_eq!((s.lead.num_minutes(), s.gap.num_minutes()), (90, 150));
    }

    #[test]
    fn get_meetings_counts_become_units() {
        let body = "<response><returncode>SUCCESS</returncode><meetings><meeting>\
            <meetingID>ev-a</meetingID><participantCount>10</participantCount>\
            <listenerCount>6</listenerCount><videoCount>3</videoCount></meeting></meetings></response>";
        let m: Vec<MeetingLoad> = crate::check::bbb::meetings(body)
            .iter()
            .map(MeetingLoad::from)
            .collect();
        assert_eq!((m[0].participants, m[0].listeners, m[0].video), (10, 6, 3));
        assert_eq!(m[0].units(), 10 * 2 + 3 * 2);
    }
}
