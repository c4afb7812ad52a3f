//! The BigBlueButton servers as the portal sees them: one background task
//! calls `getMeetings` on every server once per poll interval and caches
//! the answers, so no page view ever calls BigBlueButton. A server is down
//! after two missed polls in a row and up again after one answer. New
//! meetings go to the least-loaded server that is up and not draining.
//!
//! The pool is the static `[[bbb]]` servers plus those of the pool file
//! (crate::pool), which the same task re-reads when it changes: servers
//! join, drain and leave without a restart.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use conference::protocol::bbb;

use crate::config::BbbServer;
use crate::pool::file::{Change, Pool, PoolSource, Watcher};

/// A meeting younger than this counts at least [`NEW_MEETING_WEIGHT`]
/// people: people are still arriving.
pub const NEW_MEETING_AGE: Duration = Duration::from_secs(15 * 60);
pub const NEW_MEETING_WEIGHT: u64 = 15;
/// Missed polls in a row after which a server is down.
pub const MISSES_DOWN: u32 = 2;

#[derive(Debug, Clone, Default)]
pub struct Attendee {
    pub user_id: String,
    pub name: String,
    pub moderator: bool,
    pub listen_only: bool,
    pub voice: bool,
    pub video: bool,
}

/// A meeting as the last `getMeetings` described it.
#[derive(Debug, Clone, Default)]
pub struct Meeting {
    pub id: String,
    pub name: String,
    /// Milliseconds since the epoch (BBB's `createTime`).
    pub create_time: i64,
    pub running: bool,
    pub participants: u64,
    pub listeners: u64,
    pub voice: u64,
    pub video: u64,
    pub moderators: u64,
    pub attendees: Vec<Attendee>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Not polled yet.
    Unknown,
    Up,
    Down,
}

#[derive(Debug, Clone)]
pub struct ServerState {
    pub name: String,
    pub health: Health,
    /// Missed polls in a row.
    pub misses: u32,
    pub last_answer: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub meetings: Vec<Meeting>,
    /// Gets no new meeting; its running meetings stay until they end.
    pub draining: bool,
    /// Since when (wall clock), for the status page and the pool API.
    pub draining_since: Option<DateTime<Utc>>,
    /// The same moment on the monotonic clock.
    draining_at: Option<Instant>,
    /// Came from the pool file, not from the static configuration.
    pub pooled: bool,
    /// When the last answered poll was sent: a meeting placed before it
    /// and not in its answer is not (or no longer) on this server.
    last_answered_poll: Option<Instant>,
    /// Tells apart a server that left the pool from a new one of that name.
    uid: u64,
    server: Arc<BbbServer>,
}

impl ServerState {
    fn new(server: BbbServer, uid: u64, pooled: bool) -> ServerState {
        ServerState {
            name: server.name.clone(),
            health: Health::Unknown,
            misses: 0,
            last_answer: None,
            last_error: None,
            meetings: Vec::new(),
            draining: false,
            draining_since: None,
            draining_at: None,
            pooled,
            last_answered_poll: None,
            uid,
            server: Arc::new(server),
        }
    }

    pub fn participants(&self) -> u64 {
        self.meetings.iter().map(|m| m.participants).sum()
    }

    /// Whether a poll sent after `t` was answered.
    fn polled_since(&self, t: Instant) -> bool {
        self.last_answered_poll.is_some_and(|p| p >= t)
    }

    fn target(&self) -> Target {
        Target {
            name: self.name.clone(),
            uid: self.uid,
            server: Arc::clone(&self.server),
        }
    }
}

/// A server chosen for a meeting. It stays valid while the pool changes:
/// a server that left the pool is simply not found any more.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    uid: u64,
    server: Arc<BbbServer>,
}

/// Where the portal put (or last opened) a meeting that a poll may not have
/// seen yet.
#[derive(Debug, Clone, Copy)]
struct Placement {
    server: u64,
    at: Instant,
}

/// The pool file's side of the cluster: where it is, and what the last look
/// at it found.
#[derive(Debug, Clone, Default)]
pub struct PoolStatus {
    /// The pool file, if one is configured.
    pub path: Option<std::path::PathBuf>,
    /// `updated` of the file in force.
    pub updated: Option<DateTime<Utc>>,
    /// When the file in force was applied.
    pub applied_at: Option<DateTime<Utc>>,
    /// Why the latest version of the file was refused (cleared by a good one).
    pub error: Option<String>,
}

pub struct Cluster {
    states: RwLock<Vec<ServerState>>,
    placements: Mutex<HashMap<String, Placement>>,
    client: reqwest::Client,
    polls: AtomicU64,
    next_uid: AtomicU64,
    pool: Mutex<Option<Watcher>>,
    pool_status: RwLock<PoolStatus>,
}

impl Cluster {
    /// A cluster of the static servers only.
    pub fn new(servers: Vec<BbbServer>, timeout: Duration) -> Arc<Cluster> {
        Self::with_pool(servers, None, timeout)
    }

    /// The static servers and, with `pool`, the servers of the pool file
    /// (read once here, then at every poll tick).
    pub fn with_pool(
        servers: Vec<BbbServer>,
        pool: Option<PoolSource>,
        timeout: Duration,
    ) -> Arc<Cluster> {
        let states = servers
            .into_iter()
            .enumerate()
            .map(|(i, s)| ServerState::new(s, i as u64, false))
            .collect::<Vec<_>>();
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("venue-portal/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("an HTTP client");
        let cluster = Arc::new(Cluster {
            next_uid: AtomicU64::new(states.len() as u64),
            states: RwLock::new(states),
            placements: Mutex::new(HashMap::new()),
            client,
            polls: AtomicU64::new(0),
            pool_status: RwLock::new(PoolStatus {
                path: pool.as_ref().map(|p| p.path.clone()),
                ..PoolStatus::default()
            }),
            pool: Mutex::new(pool.map(Watcher::new)),
        });
        cluster.reload_pool();
        cluster
    }

    /// Whether any server is configured or may come (a pool file).
    pub fn configured(&self) -> bool {
        // One lock at a time: never hold two of the cluster's locks at once
        // except states → placements.
        let pool = self.pool_status().path.is_some();
        pool || !self.is_empty()
    }

    /// How many servers are in the pool now (static ones included).
    pub fn len(&self) -> usize {
        self.with_states(|s| s.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many `getMeetings` calls the portal made since it started.
    pub fn polls(&self) -> u64 {
        self.polls.load(Ordering::Relaxed)
    }

    /// A copy of the cached states.
    pub fn states(&self) -> Vec<ServerState> {
        self.states
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Runs `f` on the cached states without copying them.
    pub fn with_states<T>(&self, f: impl FnOnce(&[ServerState]) -> T) -> T {
        f(&self.states.read().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn pool_status(&self) -> PoolStatus {
        self.pool_status
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Meetings the portal placed on the server of `state` (or opened there)
    /// that no answered poll has listed yet: they may exist there.
    pub fn unconfirmed(&self, state: &ServerState) -> usize {
        let placements = self.placements.lock().unwrap_or_else(|e| e.into_inner());
        placements
            .iter()
            .filter(|(id, p)| {
                p.server == state.uid
                    && !state.polled_since(p.at)
                    && !state.meetings.iter().any(|m| &m.id == *id)
            })
            .count()
    }

    /// Whether a draining server is empty for sure: up, and a poll sent
    /// after the drain began lists no meeting, and no meeting the portal
    /// opened there may be missing from that answer.
    pub fn drained(&self, state: &ServerState) -> bool {
        state.draining
            && state.health == Health::Up
            && state.draining_at.is_some_and(|t| state.polled_since(t))
            && state.meetings.is_empty()
            && self.unconfirmed(state) == 0
    }

    /// One task: at every tick, look at the pool file, then poll every
    /// server of the pool at once.
    pub fn spawn_pollers(self: &Arc<Self>, interval: Duration) {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                me.reload_pool();
                me.poll_all().await;
            }
        });
    }

    /// Polls every server in the pool concurrently and waits for all (each
    /// call is bounded by the client's timeout).
    pub async fn poll_all(self: &Arc<Self>) {
        let targets: Vec<Target> = self.with_states(|s| s.iter().map(|s| s.target()).collect());
        let mut set = tokio::task::JoinSet::new();
        for t in targets {
            let me = Arc::clone(self);
            set.spawn(async move { me.poll_target(&t).await });
        }
        while set.join_next().await.is_some() {}
    }

    /// One `getMeetings` call to the server at position `i` of the pool.
    pub async fn poll_once(&self, i: usize) {
        let Some(t) = self.with_states(|s| s.get(i).map(|s| s.target())) else {
            return;
        };
        self.poll_target(&t).await;
    }

    /// One `getMeetings` call, and the state change it implies (dropped if
    /// the server left the pool meanwhile).
    async fn poll_target(&self, t: &Target) {
        self.polls.fetch_add(1, Ordering::Relaxed);
        let sent = Instant::now();
        let result = self
            .call(&t.server, "getMeetings", &[])
            .await
            .and_then(|xml| parse_meetings(&xml));
        let mut states = self.states.write().unwrap_or_else(|e| e.into_inner());
        let Some(st) = states.iter_mut().find(|s| s.uid == t.uid) else {
            return;
        };
        match result {
            Ok(meetings) => {
                if st.health != Health::Up {
                    tracing::info!(server = %st.name, meetings = meetings.len(), "BBB server is up");
                }
                st.health = Health::Up;
                st.misses = 0;
                st.last_answer = Some(Utc::now());
                st.last_answered_poll = Some(st.last_answered_poll.map_or(sent, |p| p.max(sent)));
                st.last_error = None;
                st.meetings = meetings;
            }
            Err(e) => {
                st.misses += 1;
                tracing::warn!(server = %st.name, misses = st.misses, error = %e, "BBB poll failed");
                st.last_error = Some(e);
                if st.misses >= MISSES_DOWN && st.health != Health::Down {
                    tracing::warn!(server = %st.name, "BBB server is down");
                    st.health = Health::Down;
                    st.meetings.clear();
                }
            }
        }
    }

    /// Looks at the pool file and applies it if it changed and reads well.
    pub fn reload_pool(&self) {
        let change = {
            let mut w = self.pool.lock().unwrap_or_else(|e| e.into_inner());
            match w.as_mut() {
                Some(w) => w.check(),
                None => return,
            }
        };
        match change {
            None => {}
            Some(Change::Refused(e)) => {
                tracing::error!(error = %e, "pool file refused; the BBB pool stays as it was");
                self.pool_status
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .error = Some(e);
            }
            Some(Change::Load(pool)) => {
                self.apply_pool(&pool);
                let mut st = self.pool_status.write().unwrap_or_else(|e| e.into_inner());
                st.updated = pool.updated;
                st.applied_at = Some(Utc::now());
                st.error = None;
            }
        }
    }

    /// Makes the pool the static servers plus `pool`'s, in one step.
    pub fn apply_pool(&self, pool: &Pool) {
        let mut states = self.states.write().unwrap_or_else(|e| e.into_inner());
        let now = Utc::now();
        let set_draining = |st: &mut ServerState, draining: bool| {
            if st.draining != draining {
                tracing::info!(server = %st.name, draining, "BBB server draining changed");
                st.draining = draining;
                st.draining_since = draining.then_some(now);
                st.draining_at = draining.then(Instant::now);
            }
        };
        let mut next: Vec<ServerState> = Vec::with_capacity(states.len());
        // Static servers stay; the pool only sets their draining flag.
        for st in states.iter().filter(|s| !s.pooled) {
            let mut st = st.clone();
            let entry = pool.entries.iter().find(|e| e.server.name == st.name);
            if let Some(e) = entry {
                if e.server.url != st.server.url {
                    tracing::warn!(server = %st.name, "the pool file names a static BBB server with another url; the static configuration wins");
                }
            }
            set_draining(&mut st, entry.is_some_and(|e| e.draining));
            next.push(st);
        }
        for e in &pool.entries {
            if next.iter().any(|s| s.name == e.server.name) {
                continue;
            }
            let same = |s: &&ServerState| {
                s.pooled
                    && s.name == e.server.name
                    && s.server.url == e.server.url
                    && s.server.secret == e.server.secret
                    && s.server.checksum == e.server.checksum
            };
            let mut st = match states.iter().find(same) {
                Some(old) => old.clone(),
                None => {
                    let uid = self.next_uid.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(server = %e.server.name, url = %e.server.url, draining = e.draining, "BBB server joins the pool");
                    ServerState::new(e.server.clone(), uid, true)
                }
            };
            set_draining(&mut st, e.draining);
            next.push(st);
        }
        for gone in states
            .iter()
            .filter(|s| !next.iter().any(|n| n.uid == s.uid))
        {
            tracing::info!(server = %gone.name, meetings = gone.meetings.len(), "BBB server leaves the pool");
        }
        *states = next;
    }

    /// Calls the API and returns the XML body of a `SUCCESS` answer.
    async fn call(
        &self,
        server: &BbbServer,
        call: &str,
        params: &[(&str, &str)],
    ) -> Result<String, String> {
        let url = bbb::url(&server.url, call, params, &server.secret, server.checksum);
        let resp = self
            .client
            .get(&url)
            .send()
            .await
            .map_err(|e| format!("{call}: {}", without_url(&e)))?;
        let status = resp.status();
        let body = resp
            .text()
            .await
            .map_err(|e| format!("{call}: {}", without_url(&e)))?;
        if !status.is_success() {
            return Err(format!("{call}: HTTP {status}"));
        }
        let doc = roxmltree::Document::parse(&body).map_err(|e| format!("{call}: bad XML: {e}"))?;
        let root = doc.root_element();
        if text(root, "returncode").as_deref() != Some("SUCCESS") {
            return Err(format!(
                "{call}: {} ({})",
                text(root, "message").unwrap_or_default(),
                text(root, "messageKey").unwrap_or_default()
            ));
        }
        Ok(body)
    }

    /// The server for meeting `id`: where a poll saw it (draining or not:
    /// a running meeting is never cut off), else where the portal put it
    /// (unless that server is down, left the pool, or drains and a poll
    /// since showed the meeting is not there), else the least-loaded server
    /// that is up and not draining (recorded).
    pub fn place(&self, id: &str) -> Option<Target> {
        let states = self.states.read().unwrap_or_else(|e| e.into_inner());
        let mut placements = self.placements.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = states
            .iter()
            .find(|s| s.health == Health::Up && s.meetings.iter().any(|m| m.id == id))
        {
            return Some(s.target());
        }
        if let Some(p) = placements.get(id) {
            if let Some(s) = states.iter().find(|s| s.uid == p.server) {
                if s.health != Health::Down && (!s.draining || !s.polled_since(p.at)) {
                    return Some(s.target());
                }
            }
        }
        let now_ms = Utc::now().timestamp_millis();
        let load = |s: &ServerState| -> u64 {
            let polled: u64 = s
                .meetings
                .iter()
                .map(|m| {
                    let young = now_ms - m.create_time < NEW_MEETING_AGE.as_millis() as i64;
                    if young {
                        m.participants.max(NEW_MEETING_WEIGHT)
                    } else {
                        m.participants
                    }
                })
                .sum();
            let unpolled = placements
                .iter()
                .filter(|(mid, p)| {
                    p.server == s.uid
                        && p.at.elapsed() < NEW_MEETING_AGE
                        && !s.meetings.iter().any(|m| &m.id == *mid)
                })
                .count() as u64;
            polled + unpolled * NEW_MEETING_WEIGHT
        };
        // Prefer servers known to be up; before the first poll, unknown ones.
        // A draining server gets no new meeting, even when nothing else is left.
        let open = |s: &&ServerState| !s.draining;
        let candidates: Vec<(usize, &ServerState)> = {
            let up: Vec<(usize, &ServerState)> = states
                .iter()
                .enumerate()
                .filter(|(_, s)| open(s) && s.health == Health::Up)
                .collect();
            if up.is_empty() {
                states
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| open(s) && s.health != Health::Down)
                    .collect()
            } else {
                up
            }
        };
        let (_, best) = candidates.into_iter().min_by_key(|&(i, s)| (load(s), i))?;
        placements.insert(
            id.to_owned(),
            Placement {
                server: best.uid,
                at: Instant::now(),
            },
        );
        Some(best.target())
    }

    /// Whether the last poll saw meeting `id` on `server` with people in it.
    pub fn has_people(&self, server: &Target, id: &str) -> bool {
        self.with_states(|s| {
            s.iter()
                .filter(|s| s.uid == server.uid)
                .any(|s| s.meetings.iter().any(|m| m.id == id && m.participants > 0))
        })
    }

    /// The meeting `id` wherever a poll saw it.
    pub fn meeting(&self, id: &str) -> Option<(String, Meeting)> {
        self.with_states(|states| {
            states.iter().find_map(|s| {
                s.meetings
                    .iter()
                    .find(|m| m.id == id)
                    .map(|m| (s.name.clone(), m.clone()))
            })
        })
    }

    /// People in meeting `id` wherever a poll saw it (no copy of the meeting).
    pub fn people(&self, id: &str) -> Option<u64> {
        self.with_states(|states| {
            states
                .iter()
                .find_map(|s| s.meetings.iter().find(|m| m.id == id))
                .map(|m| m.participants)
        })
    }

    /// Idempotent `create` of meeting `id` on `server`. The meeting now
    /// exists there even if no poll lists it yet: a draining server keeps it.
    pub async fn create(
        &self,
        server: &Target,
        id: &str,
        params: &[(&str, &str)],
    ) -> Result<(), String> {
        self.call(&server.server, "create", params).await?;
        self.placements
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                id.to_owned(),
                Placement {
                    server: server.uid,
                    at: Instant::now(),
                },
            );
        Ok(())
    }

    /// A signed `join` URL on `server`.
    pub fn join_url(&self, server: &Target, params: &[(&str, &str)]) -> String {
        let s = &server.server;
        bbb::url(&s.url, "join", params, &s.secret, s.checksum)
    }
}

/// reqwest's errors print the URL, which holds the checksum.
fn without_url(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    if let Some(u) = e.url() {
        msg = msg.replace(u.as_str(), &bbb::redact(u.as_str()));
    }
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "cannot connect".into()
    } else {
        msg
    }
}

fn text(node: roxmltree::Node, tag: &str) -> Option<String> {
    node.children()
        .find(|c| c.has_tag_name(tag))
        .map(|c| c.text().unwrap_or("").trim().to_owned())
}

fn number(node: roxmltree::Node, tag: &str) -> u64 {
    text(node, tag).and_then(|t| t.parse().ok()).unwrap_or(0)
}

fn flag(node: roxmltree::Node, tag: &str) -> bool {
    text(node, tag).as_deref() == Some("true")
}

/// Parses a `getMeetings` answer (BigBlueButton's API reference, "Monitoring").
pub fn parse_meetings(xml: &str) -> Result<Vec<Meeting>, String> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| format!("getMeetings: bad XML: {e}"))?;
    let root = doc.root_element();
    let Some(list) = root.children().find(|c| c.has_tag_name("meetings")) else {
        return Ok(Vec::new());
    };
    Ok(list
        .children()
        .filter(|c| c.has_tag_name("meeting"))
        .map(|m| Meeting {
            id: text(m, "meetingID").unwrap_or_default(),
            name: text(m, "meetingName").unwrap_or_default(),
            create_time: text(m, "createTime")
                .and_then(|t| t.parse().ok())
                .unwrap_or(0),
            running: flag(m, "running"),
            participants: number(m, "participantCount"),
            listeners: number(m, "listenerCount"),
            voice: number(m, "voiceParticipantCount"),
            video: number(m, "videoCount"),
            moderators: number(m, "moderatorCount"),
            attendees: m
                .children()
                .find(|c| c.has_tag_name("attendees"))
                .map(|a| {
                    a.children()
                        .filter(|c| c.has_tag_name("attendee"))
                        .map(|a| Attendee {
                            user_id: text(a, "userID").unwrap_or_default(),
                            name: text(a, "fullName").unwrap_or_default(),
                            moderator: text(a, "role").as_deref() == Some("MODERATOR"),
                            listen_only: flag(a, "isListeningOnly"),
                            voice: flag(a, "hasJoinedVoice"),
                            video: flag(a, "hasVideo"),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_answer() {
        let xml = r#"<response><returncode>SUCCESS</returncode><meetings><meeting>
<meetingName>Demo Meeting</meetingName><meetingID>Demo Meeting</meetingID>
<createTime>1531240585189</createTime><running>true</running>
<participantCount>2</participantCount><listenerCount>1</listenerCount>
<voiceParticipantCount>1</voiceParticipantCount><videoCount>1</videoCount>
<moderatorCount>1</moderatorCount><attendees><attendee><userID>w_1</userID>
<fullName>Ada</fullName><role>MODERATOR</role><isListeningOnly>false</isListeningOnly>
<hasJoinedVoice>true</hasJoinedVoice><hasVideo>true</hasVideo></attendee></attendees>
</meeting></meetings></response>"#;
        let m = parse_meetings(xml).unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(
            (
                m[0].participants,
                m[0].listeners,
                m[0].voice,
                m[0].video,
                m[0].moderators
            ),
            (2, 1, 1, 1, 1)
        );
        assert!(m[0].attendees[0].moderator && m[0].attendees[0].video);
        let none = "<response><returncode>SUCCESS</returncode><meetings/><messageKey>noMeetings</messageKey></response>";
        assert!(parse_meetings(none).unwrap().is_empty());
    }
}
