//! When servers exist. Hetzner bills every started hour for as long as a
//! server exists, running or not, so a plan counts existence, not use.

use chrono::{DateTime, Duration, Utc};
use conference::event::{Overnight, RoomKind};
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

/// Each day's windows: from the earlier of opening and the first session,
/// less the warm-up, to the later of closing and the last session, plus
/// grace; split where the sessions pause for longer than the gap, so rooms
/// without sessions do not keep a server. A hack room is open all day: an
/// event with one keeps each day whole.
pub fn day_windows(event: &Event) -> Vec<Window> {
    let gap = pause_gap(event);
    let whole_days = event.rooms.iter().any(|r| r.kind == RoomKind::Hack);
    let mut windows: Vec<Window> = Vec::new();
    for day in &event.days {
        let mut sessions: Vec<(DateTime<Utc>, DateTime<Utc>)> = event
            .sessions
            .iter()
            .filter(|s| event_day(s.start, event.timezone) == day.date)
            .map(|s| (s.start, s.end))
            .collect();
        sessions.sort();
        // Blocks of sessions whose pauses are no longer than the gap.
        let mut blocks: Vec<(DateTime<Utc>, DateTime<Utc>)> = Vec::new();
        for (start, end) in sessions {
            match blocks.last_mut() {
                Some(b) if whole_days || start - b.1 <= gap => b.1 = b.1.max(end),
                _ => blocks.push((start, end)),
            }
        }
        // The day's hours widen its first and last block.
        match blocks.first_mut() {
            Some(first) => first.0 = first.0.min(day.open),
            None => blocks.push((day.open, day.close)),
        }
        if let Some(last) = blocks.last_mut() {
            last.1 = last.1.max(day.close);
        }
        windows.extend(blocks.into_iter().map(|(start, end)| Window {
            start: start - event.cloud.warmup,
            end: end + event.cloud.grace,
        }));
    }
    windows.sort_by_key(|w| w.start);
    merge(windows)
}

/// A pause between sessions longer than this releases the media servers:
/// `[autopilot] gap_minutes`, else the warm-up + grace + an hour (Hetzner
/// bills every started hour, and servers released at the end of a block,
/// after the grace, are back a warm-up before the next: a shorter pause
/// saves nothing).
pub fn pause_gap(event: &Event) -> Duration {
    event
        .autopilot
        .gap
        .unwrap_or(event.cloud.warmup + event.cloud.grace + Duration::hours(1))
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
    use chrono::TimeZone;

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

    fn t(h: u32, m: u32) -> DateTime<Utc> {
        format!("2026-05-01T{h:02}:{m:02}:00Z").parse().unwrap()
    }

    /// One day open 09:00-18:00 UTC, warm-up 60 and grace 30 minutes, a
    /// session room with talks 09:00-11:00 and 15:00-17:00 (a four-hour
    /// pause), and `extra` appended to event.toml.
    fn event(extra: &str) -> Event {
        let text = format!(
            "id = \"ev\"\nname = \"Ev\"\ntimezone = \"UTC\"\ndomain = \"ev.example.org\"\nattendees = 100\n\
             [cloud]\nwarmup_minutes = 60\ngrace_minutes = 30\n\
             [[day]]\ndate = \"2026-05-01\"\nopen = \"09:00\"\nclose = \"18:00\"\n\
             [[room]]\nname = \"A\"\nkind = \"session\"\npeak = 80\n{extra}"
        );
        let mut e = Event::parse(std::path::Path::new("event.toml"), &text).unwrap();
        for (start, end) in [(t(9, 0), t(11, 0)), (t(15, 0), t(17, 0))] {
            e.sessions.push(crate::plan::test_session("A", start, end));
        }
        e
    }

    fn spans(windows: &[Window]) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        windows.iter().map(|w| (w.start, w.end)).collect()
    }

    #[test]
    fn a_pause_longer_than_the_gap_releases_the_servers_in_it() {
        // Default gap: 60 + 30 + 60 minutes, below the four-hour pause. The
        // day's close still extends the second block.
        let e = event("");
        assert_eq!(pause_gap(&e), Duration::minutes(150));
        assert_eq!(
            spans(&day_windows(&e)),
            [(t(8, 0), t(11, 30)), (t(14, 0), t(18, 30))]
        );
        assert_eq!(
            day_windows(&e)
                .iter()
                .map(Window::started_hours)
                .sum::<u32>(),
            9
        );
    }

    #[test]
    fn a_pause_within_the_gap_keeps_the_day_whole() {
        let e = event("[autopilot]\ngap_minutes = 240\n");
        assert_eq!(spans(&day_windows(&e)), [(t(8, 0), t(18, 30))]);
        let e = event("[autopilot]\ngap_minutes = 239\n");
        assert_eq!(day_windows(&e).len(), 2);
    }

    #[test]
    fn a_hack_room_keeps_the_day_whole() {
        let e = event("[[room]]\nname = \"Hall\"\nkind = \"hack\"\npeak = 10\n");
        assert_eq!(spans(&day_windows(&e)), [(t(8, 0), t(18, 30))]);
    }

    #[test]
    fn keeping_overnight_spans_the_pauses_too() {
        let mut e = event("");
        e.cloud.overnight = Overnight::Keep;
        assert_eq!(spans(&media_windows(&e)), [(t(8, 0), t(18, 30))]);
        e.cloud.overnight = Overnight::Release;
        assert_eq!(media_windows(&e).len(), 2);
        // The portal and TURN stay through the pause.
        assert_eq!(portal_windows(&e).len(), 1);
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
