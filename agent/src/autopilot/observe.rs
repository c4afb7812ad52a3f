//! What the BigBlueButton servers hold now, for the load decision: from the
//! portal's pool API (`GET /pool/api/servers`, the pollers' cache: the
//! portal already asks every server, so the agent does not ask again) when
//! the portal answers; else each server's `getMeetings` directly, signed
//! with the event's secret as `venue check` signs it. A server that neither
//! answers is unknown (`meetings: None`): the decision never drains or
//! releases on a guess.
//!
//! Public interface (the core loop uses these):
//! ```text
//! pub enum Source { Portal, Direct }
//! pub struct Seen { meetings: Option<Vec<MeetingLoad>>, up: bool, draining: bool, drained: bool }
//! pub struct Observed { source: Option<Source>, servers: BTreeMap<String, Seen>, why: Vec<String> }
//!     fn Observed::samples(&self, event_id: &str) -> Vec<plan::measured::Sample>
//! pub fn bbb(event_file: &Path, state: &Path, names: &[String]) -> Observed
//! pub fn from_pool(status: &PoolStatus, names: &[String]) -> BTreeMap<String, Seen>
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use conference::Role;

use super::load::MeetingLoad;
use super::pool::{PoolStatus, ServerStatus};
use crate::check::{self, Check};
use crate::plan::measured::Sample;

/// Where the meetings came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The portal's pool API.
    Portal,
    /// Each server's getMeetings.
    Direct,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Portal => "the portal's pool API",
            Source::Direct => "getMeetings",
        }
    }
}

/// One BigBlueButton server as seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    /// Its meetings; None: unknown (down, not polled yet, not in the pool).
    pub meetings: Option<Vec<MeetingLoad>>,
    /// Up by the portal's polls, or it answered getMeetings.
    pub up: bool,
    /// The portal gives it no new meeting (only known from the portal).
    pub draining: bool,
    /// The portal's word that it may be released: draining, up, and a
    /// poll since the drain began found nothing on it.
    pub drained: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// None: nothing answered.
    pub source: Option<Source>,
    pub servers: BTreeMap<String, Seen>,
    /// Why a source was not used (for the journal).
    pub why: Vec<String>,
}

impl Observed {
    /// People per room (`<event>-<slug>` meetings), for measured.json.
    pub fn samples(&self, event_id: &str) -> Vec<Sample> {
        let prefix = format!("{event_id}-");
        let mut by_room: BTreeMap<String, u32> = BTreeMap::new();
        for m in self
            .servers
            .values()
            .filter_map(|s| s.meetings.as_ref())
            .flatten()
        {
            let Some(slug) = m.id.strip_prefix(&prefix) else {
                continue;
            };
            if slug.is_empty() {
                continue;
            }
            let people = u32::try_from(m.participants).unwrap_or(u32::MAX);
            *by_room.entry(slug.to_owned()).or_default() += people;
        }
        by_room
            .into_iter()
            .map(|(room, people)| Sample { room, people })
            .collect()
    }
}

/// The servers `names` as the portal's answer has them. A portal older
/// than the per-meeting list (`rooms`) gives counts only: its meetings are
/// then anonymous, the participants all on the first.
pub fn from_pool(status: &PoolStatus, names: &[String]) -> BTreeMap<String, Seen> {
    names
        .iter()
        .map(|name| {
            let seen = match status.server(name) {
                Some(s) => seen_in_pool(s),
                // Not in the portal's pool (yet): nothing is known.
                None => Seen::default(),
            };
            (name.clone(), seen)
        })
        .collect()
}

fn seen_in_pool(s: &ServerStatus) -> Seen {
    let meetings = s.up.then(|| {
        if !s.rooms.is_empty() || s.meetings == 0 {
            s.rooms
                .iter()
                .map(|r| MeetingLoad {
                    id: r.id.clone(),
                    participants: r.participants,
                    video: r.video,
                    listeners: r.listeners,
                })
                .collect()
        } else {
            (0..s.meetings)
                .map(|i| MeetingLoad {
                    id: String::new(),
                    participants: if i == 0 { s.participants } else { 0 },
                    ..MeetingLoad::default()
                })
                .collect()
        }
    });
    Seen {
        meetings,
        up: s.up,
        draining: s.draining,
        drained: s.drained && s.up,
    }
}

/// Reads the meetings of the BigBlueButton servers `names` of the event
/// (its state directory `state`): from the portal when it answers, else
/// from each server.
pub fn bbb(event_file: &Path, state: &Path, names: &[String]) -> Observed {
    let mut out = Observed::default();
    let check = match check::setup::load(&check::setup::Options {
        event: event_file,
        state: Some(state),
        resolver: None,
    }) {
        Ok(c) => c,
        Err(e) => {
            out.why.push(format!("{e:#}"));
            return out;
        }
    };
    let capture = capture_secret(state);
    crate::runtime::block_on(async {
        match portal(&check, &capture).await {
            Ok(status) => {
                out.source = Some(Source::Portal);
                out.servers = from_pool(&status, names);
            }
            Err(e) => {
                out.why.push(format!("{e:#}"));
                out.servers = direct(&check, names).await;
                if out.servers.values().any(|s| s.meetings.is_some()) {
                    out.source = Some(Source::Direct);
                }
            }
        }
    });
    out
}

/// The pool API's bearer secret: the event's capture-secret.
fn capture_secret(state: &Path) -> Result<String> {
    let file = state.join("secrets.json");
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("no secrets in {}", file.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a JSON object of secrets", file.display()))?;
    v["capture-secret"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("{} holds no capture-secret", file.display()))
}

async fn portal(check: &Check, secret: &Result<String>) -> Result<PoolStatus> {
    let secret = secret.as_ref().map_err(|e| anyhow::anyhow!("{e:#}"))?;
    let target = check
        .targets
        .iter()
        .find(|t| t.role == Role::Portal)
        .context("no portal host in fleet.json")?;
    let (client, base) =
        check::http::client(check, target, &target.service_name).map_err(|e| anyhow::anyhow!(e))?;
    super::pool::servers(&client, &base, secret).await
}

/// getMeetings on each of `names` that fleet.json holds, at once.
async fn direct(check: &Check, names: &[String]) -> BTreeMap<String, Seen> {
    let asks = names.iter().map(|name| async move {
        let target = check
            .targets
            .iter()
            .find(|t| t.role == Role::Bbb && &t.name == name);
        let seen = match target {
            Some(t) => match check::bbb::call(check, t, "getMeetings", &[]).await {
                Ok(body) => Seen {
                    meetings: Some(
                        check::bbb::meetings(&body)
                            .iter()
                            .map(MeetingLoad::from)
                            .collect(),
                    ),
                    up: true,
                    ..Seen::default()
                },
                Err(_) => Seen::default(),
            },
            None => Seen::default(),
        };
        (name.clone(), seen)
    });
    futures_util::future::join_all(asks)
        .await
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(body: &str) -> PoolStatus {
        PoolStatus::parse(body).unwrap()
    }

    #[test]
    fn the_portals_answer_gives_each_servers_meetings() {
        let s = status(
            r#"{"updated": null, "error": null, "servers": [
            {"name": "ev-bbb-1", "source": "static", "state": "up", "up": true, "draining": false,
             "meetings": 2, "participants": 131, "unconfirmed": 0, "drained": false,
             "rooms": [{"id": "ev-main", "participants": 130, "listeners": 100, "video": 3},
                       {"id": "ev-side", "participants": 1, "listeners": 0, "video": 0}]},
            {"name": "ev-bbb-2", "source": "pool", "state": "up", "up": true, "draining": true,
             "meetings": 0, "participants": 0, "unconfirmed": 0, "drained": true, "rooms": []},
            {"name": "ev-bbb-3", "source": "pool", "state": "unknown", "up": false, "draining": false,
             "meetings": 0, "participants": 0, "unconfirmed": 0, "drained": false}]}"#,
        );
        let names: Vec<String> = ["ev-bbb-1", "ev-bbb-2", "ev-bbb-3", "ev-bbb-4"]
            .map(String::from)
            .to_vec();
        let seen = from_pool(&s, &names);
        let one = seen["ev-bbb-1"].meetings.as_ref().unwrap();
        assert_eq!(one.len(), 2);
        assert_eq!((one[0].participants, one[0].video), (130, 3));
        assert_eq!(one[0].units(), 130 * 2 + 3 * 2);
        let two = &seen["ev-bbb-2"];
        assert!(two.drained && two.draining && two.meetings == Some(vec![]));
        // Not polled yet, and not in the pool at all: unknown.
        assert_eq!(seen["ev-bbb-3"].meetings, None);
        assert_eq!(seen["ev-bbb-4"], Seen::default());
        let obs = Observed {
            source: Some(Source::Portal),
            servers: seen,
            why: vec![],
        };
        let samples = obs.samples("ev");
        let got: Vec<(&str, u32)> = samples
            .iter()
            .map(|s| (s.room.as_str(), s.people))
            .collect();
        assert_eq!(got, [("main", 130), ("side", 1)]);
    }

    #[test]
    fn counts_without_meetings_are_anonymous_load() {
        let s = status(
            r#"{"updated": null, "error": null, "servers": [
            {"name": "ev-bbb-1", "source": "static", "state": "up", "up": true, "draining": true,
             "meetings": 2, "participants": 40, "unconfirmed": 0, "drained": true}]}"#,
        );
        let seen = from_pool(&s, &["ev-bbb-1".to_owned()]);
        let m = seen["ev-bbb-1"].meetings.clone().unwrap();
        assert_eq!(m.len(), 2, "two meetings: not empty");
        assert_eq!(m.iter().map(|m| m.participants).sum::<u64>(), 40);
        let obs = Observed {
            source: Some(Source::Portal),
            servers: seen,
            why: vec![],
        };
        assert!(obs.samples("ev").is_empty(), "no room known");
    }
}
