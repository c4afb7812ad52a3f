//! The lead time: how long a server takes from being rented to answering
//! its health check, measured from this event's previous runs (`venue up`
//! and the autopilot journal each new server's, in venue time; see
//! `crate::converge::READY`), with a margin. Without a measurement, a
//! default.

use chrono::Duration;
use serde::Serialize;

use crate::converge::READY;
use crate::model::state::StateDir;

/// Without a measurement: a Hetzner server boots in about a minute; the
/// kexec install and the deploy take minutes more.
pub const DEFAULT_MINUTES: i64 = 30;
/// The slowest of the recent measurements, times this.
pub const MARGIN: f64 = 1.5;
/// How many of the latest measurements count.
const RECENT: usize = 20;

#[derive(Debug, Clone, Serialize)]
pub struct Lead {
    /// With the margin, whole minutes.
    pub seconds: i64,
    /// "measured" or "default".
    pub source: &'static str,
    /// The measurements it comes from: server, seconds (latest last).
    pub measured: Vec<(String, i64)>,
}

impl Lead {
    pub fn duration(&self) -> Duration {
        Duration::seconds(self.seconds)
    }
}

/// The lead from the journal's lines `ready <server>: <N> s from rent to healthy`.
pub fn from_journal(state: &StateDir) -> Lead {
    let text = state.read("journal.jsonl").unwrap_or_default();
    let mut measured: Vec<(String, i64)> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| parse(v["what"].as_str()?))
        .collect();
    let skip = measured.len().saturating_sub(RECENT);
    measured.drain(..skip);
    match measured.iter().map(|m| m.1).max() {
        Some(max) => {
            let with_margin = (max as f64 * MARGIN).ceil() as i64;
            Lead {
                // Up to the next whole minute.
                seconds: (with_margin + 59) / 60 * 60,
                source: "measured",
                measured,
            }
        }
        None => Lead {
            seconds: DEFAULT_MINUTES * 60,
            source: "default",
            measured,
        },
    }
}

fn parse(what: &str) -> Option<(String, i64)> {
    let rest = what.strip_prefix(READY)?;
    let (server, rest) = rest.split_once(": ")?;
    let secs = rest.strip_suffix(" s from rent to healthy")?.parse().ok()?;
    Some((server.to_owned(), secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slowest_recent_server_with_a_margin_else_the_default() {
        let dir = std::env::temp_dir().join(format!("venue-lead-{}", std::process::id()));
        let state = StateDir::open(dir.clone()).unwrap();
        let none = from_journal(&state);
        assert_eq!(
            (none.seconds, none.source),
            (DEFAULT_MINUTES * 60, "default")
        );
        state.journal("converge", "ready ev-bbb-1: 400 s from rent to healthy");
        state.journal("up", "created server ev-bbb-1 (id 3)");
        state.journal("converge", "ready ev-portal-1: 1010 s from rent to healthy");
        state.journal("converge", "ready ev-bbb-2: soon s from rent to healthy");
        let lead = from_journal(&state);
        assert_eq!(lead.source, "measured");
        assert_eq!(lead.measured.len(), 2);
        // 1010 × 1.5 = 1515 s, up to 26 whole minutes.
        assert_eq!(lead.seconds, 1560);
        std::fs::remove_dir_all(dir).ok();
    }
}
