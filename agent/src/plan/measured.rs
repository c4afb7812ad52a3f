//! Measured load: `<state>/measured.json`, the most people `venue autopilot`
//! saw at once in each room's meeting, kept across its runs for the event.
//! `venue plan` sizes a room by its measured peak instead of the declared one
//! once the room was watched long enough to mean something.
//!
//! ```json
//! {"event": "lpc-2020",
//!  "rooms": {"refereed-track": {"peak": 87, "peak_at": "2020-08-24T15:10:00Z",
//!            "first_seen": "2020-08-24T14:00:00Z", "last_seen": "2020-08-24T18:00:00Z"}}}
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Duration, Utc};
use conference::Event;
use serde::{Deserialize, Serialize};

use crate::model::state::StateDir;

/// In the state directory.
pub const FILE: &str = "measured.json";

/// A room watched for less than this says too little about its audience
/// (a test run, a first session that started late): the plan keeps the
/// declared peak.
pub const MIN_OBSERVED: Duration = Duration::hours(1);

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Measured {
    pub event: String,
    /// By room slug (the meeting is `<event>-<slug>`).
    pub rooms: BTreeMap<String, RoomPeak>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoomPeak {
    /// The most people at once in the room's meeting.
    pub peak: u32,
    pub peak_at: DateTime<Utc>,
    /// The first and the last time the room was looked at.
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
}

impl RoomPeak {
    /// Watched long enough for the plan to use it.
    pub fn observed_enough(&self) -> bool {
        self.last_seen - self.first_seen >= MIN_OBSERVED
    }
}

/// One look at a room: the people in its meeting now (0 when it has none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub room: String,
    pub people: u32,
}

/// Reads `<dir>/measured.json`; None when there is none. The directory is
/// not created: `venue plan` only reads.
pub fn load(dir: &Path, event: &Event) -> Result<Option<Measured>> {
    let path = dir.join(FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let measured: Measured = serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{}: line {}, column {}: {}",
            path.display(),
            e.line(),
            e.column(),
            e.to_string().split(" at line ").next().unwrap_or_default()
        )
    })?;
    if measured.event != event.id {
        bail!(
            "{} holds measurements of event `{}`, not `{}`: is --state the right directory?",
            path.display(),
            measured.event,
            event.id
        );
    }
    Ok(Some(measured))
}

/// Adds `samples` taken at `now` to the state directory's measured.json
/// (peaks only grow; a room's watch extends to `now`), written atomically.
/// The autopilot calls it after each look at the load.
pub fn record(
    state: &StateDir,
    event: &Event,
    samples: &[Sample],
    now: DateTime<Utc>,
) -> Result<Measured> {
    let mut measured = load(&state.dir, event)?.unwrap_or_else(|| Measured {
        event: event.id.clone(),
        rooms: BTreeMap::new(),
    });
    merge(&mut measured, samples, now);
    state.write(
        FILE,
        serde_json::to_string_pretty(&measured)?.as_bytes(),
        0o600,
    )?;
    Ok(measured)
}

/// The pure half of [`record`].
pub fn merge(measured: &mut Measured, samples: &[Sample], now: DateTime<Utc>) {
    for s in samples {
        let r = measured
            .rooms
            .entry(s.room.clone())
            .or_insert_with(|| RoomPeak {
                peak: s.people,
                peak_at: now,
                first_seen: now,
                last_seen: now,
            });
        if s.people > r.peak {
            r.peak = s.people;
            r.peak_at = now;
        }
        r.first_seen = r.first_seen.min(now);
        r.last_seen = r.last_seen.max(now);
    }
}

/// Where a room's people in the plan come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Declared,
    Measured,
}

/// One room's people as the plan sized it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeakUsed {
    pub room: String,
    /// `peak` in event.toml.
    pub declared: u32,
    /// The measured peak, when there is one.
    pub measured: Option<u32>,
    /// What the plan used.
    pub used: u32,
    pub source: Source,
    /// Why a measurement was not used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The event with each room's peak replaced by its measured peak where that
/// is usable, and what was used per room. A streamed room's meeting is its
/// stage, whose people say nothing about its audience: it keeps its peak.
pub fn apply(event: &Event, measured: Option<&Measured>) -> (Event, Vec<PeakUsed>) {
    let mut event = event.clone();
    let mut used = Vec::new();
    for room in &mut event.rooms {
        let declared = room.peak;
        let m = measured.and_then(|m| m.rooms.get(&room.slug));
        let (source, note) = match m {
            None => (Source::Declared, None),
            Some(_) if room.streamed() => (
                Source::Declared,
                Some("streamed: its meeting is the stage, the audience is not measured".into()),
            ),
            Some(p) if !p.observed_enough() => (
                Source::Declared,
                Some(format!(
                    "watched for {} minutes, less than {}",
                    (p.last_seen - p.first_seen).num_minutes(),
                    MIN_OBSERVED.num_minutes()
                )),
            ),
            Some(_) => (Source::Measured, None),
        };
        if source == Source::Measured {
            room.peak = m.map_or(declared, |p| p.peak);
        }
        used.push(PeakUsed {
            room: room.name.clone(),
            declared,
            measured: m.map(|p| p.peak),
            used: room.peak,
            source,
            note,
        });
    }
    (event, used)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(h: u32, m: u32) -> DateTime<Utc> {
        format!("2026-05-01T{h:02}:{m:02}:00Z").parse().unwrap()
    }

    #[test]
    fn merging_keeps_the_highest_peak_and_the_whole_watch() {
        let mut m = Measured::default();
        let s = |room: &str, people| Sample {
            room: room.into(),
            people,
        };
        merge(&mut m, &[s("main", 40), s("hall", 3)], t(10, 0));
        merge(&mut m, &[s("main", 70)], t(10, 30));
        merge(&mut m, &[s("main", 20)], t(11, 15));
        let main = &m.rooms["main"];
        assert_eq!((main.peak, main.peak_at), (70, t(10, 30)));
        assert_eq!((main.first_seen, main.last_seen), (t(10, 0), t(11, 15)));
        assert!(main.observed_enough());
        assert!(!m.rooms["hall"].observed_enough(), "seen once");
        // An older sample (a clock set back) keeps the span.
        merge(&mut m, &[s("main", 1)], t(9, 0));
        assert_eq!(m.rooms["main"].first_seen, t(9, 0));
        assert_eq!(m.rooms["main"].peak, 70);
    }
}
