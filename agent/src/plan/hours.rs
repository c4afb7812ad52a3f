//! When servers exist. Hetzner bills every started hour for as long as a
//! server exists, running or not, so a plan counts existence, not use.

use chrono::{DateTime, Utc};
use conference::event::Overnight;
use conference::schedule::event_day;
use conference::Event;
use serde::Serialize;

/// One stretch of time during which a server exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Window {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Window {
    /// Billed hours: every started hour counts.
    pub fn started_hours(&self) -> u32 {
        let seconds = (self.end - self.start).num_seconds().max(0);
        u32::try_from((seconds + 3599) / 3600).unwrap_or(u32::MAX)
    }
}

/// Each day's window: from the earlier of opening and the first session,
/// less the warm-up, to the later of closing and the last session, plus grace.
pub fn day_windows(event: &Event) -> Vec<Window> {
    let mut windows: Vec<Window> = event
        .days
        .iter()
        .map(|day| {
            let sessions = event
                .sessions
                .iter()
                .filter(|s| event_day(s.start, event.timezone) == day.date);
            let (mut start, mut end) = (day.open, day.close);
            for s in sessions {
                start = start.min(s.start);
                end = end.max(s.end);
            }
            Window {
                start: start - event.cloud.warmup,
                end: end + event.cloud.grace,
            }
        })
        .collect();
    windows.sort_by_key(|w| w.start);
    merge(windows)
}

/// Media servers: every day's window, or one window over the whole event.
pub fn media_windows(event: &Event) -> Vec<Window> {
    let days = day_windows(event);
    match event.cloud.overnight {
        Overnight::Release => days,
        Overnight::Keep => vec![span(&days)],
    }
}

/// The portal and TURN are up the whole event and open early, so attendees
/// can log in and try their microphone before the first day.
pub fn portal_windows(event: &Event) -> Vec<Window> {
    let whole = span(&day_windows(event));
    vec![Window {
        start: whole.start - event.cloud.portal_early,
        end: whole.end,
    }]
}

fn span(windows: &[Window]) -> Window {
    Window {
        start: windows
            .iter()
            .map(|w| w.start)
            .min()
            .expect("an event has days"),
        end: windows
            .iter()
            .map(|w| w.end)
            .max()
            .expect("an event has days"),
    }
}

/// Overlapping or touching windows become one: a server is not deleted and
/// rented again within the same stretch.
fn merge(sorted: Vec<Window>) -> Vec<Window> {
    let mut out: Vec<Window> = Vec::with_capacity(sorted.len());
    for w in sorted {
        match out.last_mut() {
            Some(last) if w.start <= last.end => last.end = last.end.max(w.end),
            _ => out.push(w),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    #[test]
    fn every_started_hour_is_billed() {
        let t = Utc.with_ymd_and_hms(2024, 1, 1, 10, 0, 0).unwrap();
        let w = |mins| Window {
            start: t,
            end: t + Duration::minutes(mins),
        };
        assert_eq!(w(0).started_hours(), 0);
        assert_eq!(w(1).started_hours(), 1);
        assert_eq!(w(60).started_hours(), 1);
        assert_eq!(w(61).started_hours(), 2);
    }

    #[test]
    fn touching_windows_merge() {
        let t = Utc.with_ymd_and_hms(2024, 1, 1, 10, 0, 0).unwrap();
        let h = Duration::hours;
        let merged = merge(vec![
            Window {
                start: t,
                end: t + h(2),
            },
            Window {
                start: t + h(2),
                end: t + h(3),
            },
            Window {
                start: t + h(5),
                end: t + h(6),
            },
        ]);
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0].end, t + h(3));
    }
}
