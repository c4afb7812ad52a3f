//! The autopilot's timeline: when each server of the plan is rented and
//! released. It is the plan's windows (the plan is the one source of which
//! server exists when), so its cost is the plan's total by construction.
//!
//! A window already starts a warm-up before the doors open: that warm-up is
//! the time the plan gives a server to boot and be deployed. When this
//! event's measured lead time (rent to healthy, see [`super::lead`]) is
//! longer, every server is rented that much earlier than its window, and
//! the timeline costs more than the plan, which it then says.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::plan::hours::Window;
use crate::plan::{Plan, PlannedServer};

/// One stretch of one server's existence.
#[derive(Debug, Clone, Serialize)]
pub struct Stint {
    #[serde(flatten)]
    pub server: PlannedServer,
    pub rent: DateTime<Utc>,
    pub release: DateTime<Utc>,
    /// Every started hour from rent to release.
    pub hours: u32,
    pub cost_micro_eur: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Timeline {
    pub event: String,
    /// Sorted by rent time, then name.
    pub stints: Vec<Stint>,
    /// Rent to healthy, with the margin (seconds of venue time).
    pub lead_seconds: i64,
    /// How much earlier than its plan window each server is rented: the
    /// lead beyond the plan's warm-up (0 when the warm-up covers it).
    pub early_seconds: i64,
    /// The streams' traffic beyond what the stream servers include (the plan's).
    pub traffic_micro_eur: u64,
    pub total_micro_eur: u64,
    pub plan_total_micro_eur: u64,
}

/// A rent or a release, for `venue status` and the dry run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    pub time: DateTime<Utc>,
    pub action: &'static str,
    pub server: String,
}

impl Timeline {
    /// The plan's windows, each server rented `lead - warmup` early when the
    /// lead is longer than the plan's warm-up.
    pub fn of(plan: &Plan, warmup: Duration, lead: Duration) -> Timeline {
        let early = (lead - warmup).max(Duration::zero());
        let fleet = plan.fleet();
        let mut stints = Vec::new();
        for group in &plan.servers {
            // One group per role: its servers are the fleet's of that role.
            for server in fleet.iter().filter(|p| p.role == group.role) {
                // Moved earlier, consecutive windows may meet: one stint.
                let mut windows: Vec<Window> = Vec::new();
                for w in &group.windows {
                    let w = Window {
                        start: w.start - early,
                        end: w.end,
                    };
                    match windows.last_mut() {
                        Some(last) if w.start <= last.end => last.end = last.end.max(w.end),
                        _ => windows.push(w),
                    }
                }
                for w in windows {
                    let hours = w.started_hours();
                    stints.push(Stint {
                        server: server.clone(),
                        rent: w.start,
                        release: w.end,
                        hours,
                        cost_micro_eur: u64::from(hours) * group.price.hourly_micro_eur,
                    });
                }
            }
        }
        stints.sort_by(|a, b| (a.rent, &a.server.name).cmp(&(b.rent, &b.server.name)));
        let traffic = plan.streams.as_ref().map_or(0, |s| s.traffic_micro_eur);
        Timeline {
            event: plan.event.clone(),
            total_micro_eur: stints.iter().map(|s| s.cost_micro_eur).sum::<u64>() + traffic,
            stints,
            lead_seconds: lead.num_seconds(),
            early_seconds: early.num_seconds(),
            traffic_micro_eur: traffic,
            plan_total_micro_eur: plan.total_micro_eur,
        }
    }

    /// The servers that exist at `t`, in the plan's order.
    pub fn wanted(&self, t: DateTime<Utc>) -> Vec<PlannedServer> {
        let mut by_name: BTreeMap<&str, &PlannedServer> = BTreeMap::new();
        for s in &self.stints {
            if s.rent <= t && t < s.release {
                by_name.insert(&s.server.name, &s.server);
            }
        }
        by_name.into_values().cloned().collect()
    }

    /// The first rent or release after `t`.
    pub fn next_change(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.stints
            .iter()
            .flat_map(|s| [s.rent, s.release])
            .filter(|x| *x > t)
            .min()
    }

    /// When the last server is released: the event is over for the cloud.
    pub fn end(&self) -> Option<DateTime<Utc>> {
        self.stints.iter().map(|s| s.release).max()
    }

    /// Every rent and release, in time order.
    pub fn steps(&self) -> Vec<Step> {
        let mut steps: Vec<Step> = self
            .stints
            .iter()
            .flat_map(|s| {
                [
                    Step {
                        time: s.rent,
                        action: "rent",
                        server: s.server.name.clone(),
                    },
                    Step {
                        time: s.release,
                        action: "release",
                        server: s.server.name.clone(),
                    },
                ]
            })
            .collect();
        // At one moment, releases before rents: a server is never both.
        steps.sort_by(|a, b| {
            (a.time, a.action != "release", &a.server).cmp(&(
                b.time,
                b.action != "release",
                &b.server,
            ))
        });
        steps
    }

    /// The steps after `t` (at most `n`).
    pub fn upcoming(&self, t: DateTime<Utc>, n: usize) -> Vec<Step> {
        self.steps()
            .into_iter()
            .filter(|s| s.time > t)
            .take(n)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::prices::PriceTable;
    use conference::Event;

    fn event(overnight: &str) -> Event {
        let dir =
            std::env::temp_dir().join(format!("venue-schedule-{overnight}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("event.toml");
        std::fs::write(
            &file,
            format!(
                r#"id = "sched"
name = "Schedule"
timezone = "UTC"
domain = "sched.example.org"
attendees = 100
[cloud]
location = "fsn1"
overnight = "{overnight}"
warmup_minutes = 60
grace_minutes = 30
portal_early_hours = 2
[[day]]
date = "2026-12-01"
open = "10:00"
close = "12:00"
[[day]]
date = "2026-12-03"
open = "10:00"
close = "11:10"
[[room]]
name = "Main"
kind = "session"
backend = "bbb"
peak = 50
"#
            ),
        )
        .unwrap();
        Event::load(&file).unwrap()
    }

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn release_overnight_rents_per_day_and_costs_the_plan() {
        let e = event("release");
        let plan = crate::plan::plan(&e, &PriceTable::bundled()).unwrap();
        let tl = Timeline::of(&plan, e.cloud.warmup, Duration::minutes(20));
        assert_eq!(tl.early_seconds, 0);
        assert_eq!(tl.total_micro_eur, plan.total_micro_eur);
        let bbb: Vec<&Stint> = tl
            .stints
            .iter()
            .filter(|s| s.server.name == "sched-bbb-1")
            .collect();
        assert_eq!(bbb.len(), 2, "{bbb:?}");
        assert_eq!(bbb[0].rent, t("2026-12-01T09:00:00Z"));
        assert_eq!(bbb[0].release, t("2026-12-01T12:30:00Z"));
        assert_eq!(bbb[1].hours, 3, "09:00 to 11:40: three started hours");
        // Overnight: the portal and TURN only; in the day, all three.
        let names = |v: Vec<PlannedServer>| v.into_iter().map(|p| p.name).collect::<Vec<_>>();
        assert_eq!(
            names(tl.wanted(t("2026-12-02T10:00:00Z"))),
            ["sched-coturn-1", "sched-portal-1"]
        );
        assert_eq!(tl.wanted(t("2026-12-03T10:00:00Z")).len(), 3);
        assert!(tl.wanted(t("2026-12-01T06:59:59Z")).is_empty());
        assert_eq!(tl.wanted(t("2026-12-01T07:00:00Z")).len(), 2);
        assert!(tl.wanted(t("2026-12-03T11:40:00Z")).is_empty());
        assert_eq!(
            tl.next_change(t("2026-12-01T12:30:00Z")),
            Some(t("2026-12-03T09:00:00Z"))
        );
        assert_eq!(tl.end(), Some(t("2026-12-03T11:40:00Z")));
        let next = tl.upcoming(t("2026-12-01T12:00:00Z"), 1);
        assert_eq!(next[0].action, "release");
        assert_eq!(next[0].server, "sched-bbb-1");
    }

    #[test]
    fn a_lead_beyond_the_warmup_rents_earlier_and_says_what_it_costs() {
        let e = event("release");
        let plan = crate::plan::plan(&e, &PriceTable::bundled()).unwrap();
        let tl = Timeline::of(&plan, e.cloud.warmup, Duration::minutes(150));
        assert_eq!(tl.early_seconds, 90 * 60);
        let first = tl
            .stints
            .iter()
            .find(|s| s.server.name == "sched-bbb-1")
            .unwrap();
        assert_eq!(first.rent, t("2026-12-01T07:30:00Z"));
        assert!(tl.total_micro_eur > plan.total_micro_eur);
    }

    #[test]
    fn keep_overnight_is_one_stint_per_server() {
        let e = event("keep");
        let plan = crate::plan::plan(&e, &PriceTable::bundled()).unwrap();
        let tl = Timeline::of(&plan, e.cloud.warmup, Duration::minutes(20));
        assert_eq!(tl.stints.len(), 3);
        assert_eq!(tl.total_micro_eur, plan.total_micro_eur);
        assert_eq!(tl.wanted(t("2026-12-02T10:00:00Z")).len(), 3);
    }
}
