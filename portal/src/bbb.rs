//! The BigBlueButton servers as the portal sees them: one background task
//! per server calls `getMeetings` once per poll interval and caches the
//! answer, so no page view ever calls BigBlueButton. A server is down after
//! two missed polls in a row and up again after one answer. New meetings go
//! to the least-loaded server that is up.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use conference::protocol::bbb;

use crate::config::BbbServer;

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
}

impl ServerState {
    pub fn participants(&self) -> u64 {
        self.meetings.iter().map(|m| m.participants).sum()
    }
}

/// Where the portal put a meeting that a poll may not have seen yet.
#[derive(Debug, Clone, Copy)]
struct Placement {
    server: usize,
    at: Instant,
}

pub struct Cluster {
    pub servers: Vec<BbbServer>,
    states: RwLock<Vec<ServerState>>,
    placements: Mutex<HashMap<String, Placement>>,
    client: reqwest::Client,
    polls: AtomicU64,
}

impl Cluster {
    pub fn new(servers: Vec<BbbServer>, timeout: Duration) -> Arc<Cluster> {
        let states = servers
            .iter()
            .map(|s| ServerState {
                name: s.name.clone(),
                health: Health::Unknown,
                misses: 0,
                last_answer: None,
                last_error: None,
                meetings: Vec::new(),
            })
            .collect();
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("venue-portal/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("an HTTP client");
        Arc::new(Cluster {
            servers,
            states: RwLock::new(states),
            placements: Mutex::new(HashMap::new()),
            client,
            polls: AtomicU64::new(0),
        })
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

    /// Starts one poll task per server.
    pub fn spawn_pollers(self: &Arc<Self>, interval: Duration) {
        for i in 0..self.servers.len() {
            let me = Arc::clone(self);
            tokio::spawn(async move {
                let mut ticker = tokio::time::interval(interval);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticker.tick().await;
                    me.poll_once(i).await;
                }
            });
        }
    }

    /// One `getMeetings` call to server `i`, and the state change it implies.
    pub async fn poll_once(&self, i: usize) {
        let server = &self.servers[i];
        self.polls.fetch_add(1, Ordering::Relaxed);
        let result = self
            .call(server, "getMeetings", &[])
            .await
            .and_then(|xml| parse_meetings(&xml));
        let mut states = self.states.write().unwrap_or_else(|e| e.into_inner());
        let st = &mut states[i];
        match result {
            Ok(meetings) => {
                if st.health != Health::Up {
                    tracing::info!(server = %server.name, meetings = meetings.len(), "BBB server is up");
                }
                st.health = Health::Up;
                st.misses = 0;
                st.last_answer = Some(Utc::now());
                st.last_error = None;
                st.meetings = meetings;
            }
            Err(e) => {
                st.misses += 1;
                tracing::warn!(server = %server.name, misses = st.misses, error = %e, "BBB poll failed");
                st.last_error = Some(e);
                if st.misses >= MISSES_DOWN && st.health != Health::Down {
                    tracing::warn!(server = %server.name, "BBB server is down");
                    st.health = Health::Down;
                    st.meetings.clear();
                }
            }
        }
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

    /// The server for meeting `id`: where a poll saw it, else where the
    /// portal put it, else the least-loaded server that is up (recorded).
    pub fn place(&self, id: &str) -> Option<usize> {
        let states = self.states.read().unwrap_or_else(|e| e.into_inner());
        let mut placements = self.placements.lock().unwrap_or_else(|e| e.into_inner());
        let usable = |i: usize| states[i].health != Health::Down;
        if let Some(i) = states
            .iter()
            .position(|s| s.health == Health::Up && s.meetings.iter().any(|m| m.id == id))
        {
            return Some(i);
        }
        if let Some(p) = placements.get(id) {
            if usable(p.server) {
                return Some(p.server);
            }
        }
        let now_ms = Utc::now().timestamp_millis();
        let load = |i: usize| -> u64 {
            let polled: u64 = states[i]
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
                    p.server == i
                        && p.at.elapsed() < NEW_MEETING_AGE
                        && !states[i].meetings.iter().any(|m| &m.id == *mid)
                })
                .count() as u64;
            polled + unpolled * NEW_MEETING_WEIGHT
        };
        // Prefer servers known to be up; before the first poll, unknown ones.
        let candidates: Vec<usize> = {
            let up: Vec<usize> = (0..states.len())
                .filter(|&i| states[i].health == Health::Up)
                .collect();
            if up.is_empty() {
                (0..states.len()).filter(|&i| usable(i)).collect()
            } else {
                up
            }
        };
        let best = candidates.into_iter().min_by_key(|&i| (load(i), i))?;
        placements.insert(
            id.to_owned(),
            Placement {
                server: best,
                at: Instant::now(),
            },
        );
        Some(best)
    }

    /// Whether the last poll saw meeting `id` on server `i` with people in it.
    pub fn has_people(&self, i: usize, id: &str) -> bool {
        self.with_states(|s| {
            s[i].meetings
                .iter()
                .any(|m| m.id == id && m.participants > 0)
        })
    }

    /// The meeting `id` wherever a poll saw it.
    pub fn meeting(&self, id: &str) -> Option<(usize, Meeting)> {
        self.with_states(|states| {
            states.iter().enumerate().find_map(|(i, s)| {
                s.meetings
                    .iter()
                    .find(|m| m.id == id)
                    .map(|m| (i, m.clone()))
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

    /// Idempotent `create` on server `i`.
    pub async fn create(&self, i: usize, params: &[(&str, &str)]) -> Result<(), String> {
        self.call(&self.servers[i], "create", params)
            .await
            .map(|_| ())
    }

    /// A signed `join` URL on server `i`.
    pub fn join_url(&self, i: usize, params: &[(&str, &str)]) -> String {
        let s = &self.servers[i];
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
