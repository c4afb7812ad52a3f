//! Which streamed rooms should be captured now: a room is live from its
//! session's start − margin to its end + margin (overlapping windows merge),
//! unless staff forced it on or off. An override holds until the schedule
//! next changes its mind (the first window edge after it was set), so a
//! forgotten "stop now" does not silence the next session, and a "start
//! now" before a session runs on into it.

use chrono::{DateTime, Duration, Utc};
use conference::{Event, Room};

use crate::store::CaptureOverride;

/// The rooms venue captures itself: streamed, and not to an external URL.
pub fn captured_rooms(event: &Event) -> impl Iterator<Item = &Room> {
    event
        .rooms
        .iter()
        .filter(|r| r.streamed() && r.stream.is_none())
}

/// The merged live windows `[from, to)` of `room`, in order.
pub fn windows(
    event: &Event,
    room: &Room,
    before: Duration,
    after: Duration,
) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    merge(
        event
            .sessions
            .iter()
            .filter(|s| s.room == room.name)
            .map(|s| (s.start, s.end)),
        before,
        after,
    )
}

/// Sessions `(start, end)` widened by the margins, sorted and merged.
pub fn merge(
    sessions: impl Iterator<Item = (DateTime<Utc>, DateTime<Utc>)>,
    before: Duration,
    after: Duration,
) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let mut w: Vec<_> = sessions.map(|(s, e)| (s - before, e + after)).collect();
    w.sort();
    let mut merged: Vec<(DateTime<Utc>, DateTime<Utc>)> = Vec::with_capacity(w.len());
    for (from, to) in w {
        match merged.last_mut() {
            Some(last) if from <= last.1 => last.1 = last.1.max(to),
            _ => merged.push((from, to)),
        }
    }
    merged
}

/// The first window edge strictly after `t`.
fn next_edge(
    windows: &[(DateTime<Utc>, DateTime<Utc>)],
    t: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    windows.iter().flat_map(|&(a, b)| [a, b]).find(|&e| e > t)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Why {
    /// The schedule decides.
    Schedule,
    /// Staff forced it, until the schedule next changes (None: never).
    Override {
        until: Option<DateTime<Utc>>,
        by_ticket: Option<i64>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub live: bool,
    pub why: Why,
    /// When the schedule alone would next switch the capture.
    pub next_change: Option<DateTime<Utc>>,
}

/// Whether a room with these `windows` should be live at `now`.
pub fn decide(
    windows: &[(DateTime<Utc>, DateTime<Utc>)],
    now: DateTime<Utc>,
    ovr: Option<&CaptureOverride>,
) -> Decision {
    let next_change = next_edge(windows, now);
    if let Some(o) = ovr {
        let until = next_edge(windows, o.set_at);
        if until.is_none_or(|u| now < u) {
            return Decision {
                live: o.live,
                why: Why::Override {
                    until,
                    by_ticket: o.by_ticket,
                },
                next_change,
            };
        }
    }
    Decision {
        live: windows.iter().any(|&(a, b)| a <= now && now < b),
        why: Why::Schedule,
        next_change,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(hm: &str) -> DateTime<Utc> {
        format!("2020-08-24T{hm}:00Z").parse().unwrap()
    }

    fn ovr(live: bool, at: &str) -> CaptureOverride {
        CaptureOverride {
            room: "hall".into(),
            live,
            set_at: t(at),
            by_ticket: Some(3),
        }
    }

    // Two talks 10:00–11:00 and 11:10–12:00 with margins 5/10 merge into
    // one window 09:55–12:10; a talk at 14:00–15:00 is 13:55–15:10.
    fn day() -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        vec![(t("09:55"), t("12:10")), (t("13:55"), t("15:10"))]
    }

    #[test]
    fn windows_apply_the_margins_and_merge() {
        let talks = [
            (t("14:00"), t("15:00")),
            (t("10:00"), t("11:00")),
            (t("11:10"), t("12:00")),
        ];
        assert_eq!(
            merge(
                talks.into_iter(),
                Duration::minutes(5),
                Duration::minutes(10)
            ),
            day()
        );
        // Margins that do not bridge the gap keep two windows.
        assert_eq!(
            merge(
                talks[1..].iter().copied(),
                Duration::zero(),
                Duration::minutes(5)
            )
            .len(),
            2
        );
    }

    #[test]
    fn the_schedule_decides_at_its_boundaries() {
        let w = day();
        for (at, live) in [
            ("09:54", false),
            ("09:55", true), // start − margin: live
            ("11:05", true), // between the merged talks
            ("12:09", true),
            ("12:10", false), // end + margin: off
            ("13:00", false),
            ("13:55", true),
            ("15:10", false),
        ] {
            let d = decide(&w, t(at), None);
            assert_eq!(d.live, live, "at {at}");
            assert_eq!(d.why, Why::Schedule);
        }
        assert_eq!(decide(&w, t("09:00"), None).next_change, Some(t("09:55")));
        assert_eq!(decide(&w, t("10:00"), None).next_change, Some(t("12:10")));
        assert_eq!(decide(&w, t("16:00"), None).next_change, None);
        assert!(
            !decide(&[], t("10:00"), None).live,
            "no sessions: never live"
        );
    }

    #[test]
    fn stop_now_holds_until_the_window_ends_then_the_schedule_resumes() {
        let w = day();
        let stop = ovr(false, "10:30");
        let d = decide(&w, t("11:00"), Some(&stop));
        assert!(!d.live);
        assert_eq!(
            d.why,
            Why::Override {
                until: Some(t("12:10")),
                by_ticket: Some(3)
            }
        );
        // Past the window's end the override is spent: the next talk streams.
        assert_eq!(decide(&w, t("12:30"), Some(&stop)).why, Why::Schedule);
        assert!(decide(&w, t("14:00"), Some(&stop)).live);
    }

    #[test]
    fn start_now_runs_into_the_next_session_and_ends_with_it() {
        let w = day();
        let start = ovr(true, "13:00");
        assert!(
            decide(&w, t("13:00"), Some(&start)).live,
            "forced on at once"
        );
        // At 13:55 the schedule agrees; the override is spent, the schedule keeps it live.
        assert!(decide(&w, t("13:30"), Some(&start)).live);
        let d = decide(&w, t("14:30"), Some(&start));
        assert!(d.live);
        assert_eq!(d.why, Why::Schedule);
        assert!(!decide(&w, t("15:10"), Some(&start)).live);
        // After the last session an override holds for good.
        let late = ovr(true, "16:00");
        let d = decide(&w, t("23:00"), Some(&late));
        assert!(d.live);
        assert_eq!(
            d.why,
            Why::Override {
                until: None,
                by_ticket: Some(3)
            }
        );
    }
}
