//! `venue autopilot EVENT.toml`: keep the venue at what the schedule needs
//! now (crate::autopilot). `--dry-run` prints the timeline it would follow
//! (each server's rent and release, and the cost), which is `venue plan`'s
//! windows and so its total.

use std::path::{Path, PathBuf};

use anyhow::Result;
use chrono::{Duration, SecondsFormat};
use conference::Event;
use serde_json::json;

use crate::autopilot::lead::{self, Lead};
use crate::autopilot::run;
use crate::autopilot::schedule::Timeline;
use crate::model::state::StateDir;
use crate::model::table::render;
use crate::plan::prices::eur_text;

pub struct AutopilotOptions {
    pub event: PathBuf,
    pub state: Option<PathBuf>,
    pub dry_run: bool,
    pub json: bool,
    /// Seconds of venue time between ticks.
    pub interval: u64,
}

pub fn run(opts: AutopilotOptions) -> Result<()> {
    if opts.dry_run {
        return dry_run(&opts);
    }
    run::run(&run::Options {
        event: opts.event,
        state: opts.state,
        interval: Duration::seconds(i64::try_from(opts.interval).unwrap_or(i64::MAX)),
        json: opts.json,
    })
}

/// The plan `venue plan` makes for this state directory: the rooms at
/// their measured peaks where measured.json has them (read, never created).
pub fn plan_of(
    event_file: &Path,
    event: &Event,
    state: Option<&Path>,
    prices: &crate::plan::prices::PriceTable,
) -> Result<crate::plan::Plan> {
    let dir = StateDir::locate(event_file, &event.id, state);
    let measured = crate::plan::measured::load(&dir, event)?;
    crate::plan::plan_measured(event, prices, measured.as_ref())
}

/// The lead from the state directory's journal, without creating the
/// directory (a dry run changes nothing).
pub fn lead_of(event_file: &Path, event: &Event, state: Option<&Path>) -> Lead {
    let dir = StateDir::locate(event_file, &event.id, state);
    lead::from_journal(&StateDir { dir })
}

fn dry_run(opts: &AutopilotOptions) -> Result<()> {
    let event = Event::load(&opts.event)?;
    // The prices `venue plan` uses: live with a token, else the bundled table.
    let (prices, warning) = crate::runtime::block_on(crate::cloud::pricing::live_or_bundled());
    if let Some(w) = warning {
        eprintln!("warning: {w}");
    }
    let plan = plan_of(&opts.event, &event, opts.state.as_deref(), &prices)?;
    let lead = lead_of(&opts.event, &event, opts.state.as_deref());
    let timeline = Timeline::of(&plan, event.cloud.warmup, lead.duration());
    if opts.json {
        let v = json!({
            "event": event.id,
            "lead": lead,
            "warmup_seconds": event.cloud.warmup.num_seconds(),
            "timeline": timeline,
            "steps": timeline.steps(),
            "total_eur": timeline.total_micro_eur as f64 / 1e6,
            "plan_total_eur": timeline.plan_total_micro_eur as f64 / 1e6,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", text(&timeline, &lead, event.cloud.warmup));
    }
    Ok(())
}

/// The timeline as a table, with the lead and the totals.
pub fn text(t: &Timeline, lead: &Lead, warmup: Duration) -> String {
    let time = |d: chrono::DateTime<chrono::Utc>| d.to_rfc3339_opts(SecondsFormat::Secs, true);
    let mut rows = vec![
        ["SERVER", "ROLE", "TYPE", "RENT", "RELEASE", "HOURS", "EUR"]
            .map(String::from)
            .to_vec(),
    ];
    for s in &t.stints {
        rows.push(vec![
            s.server.name.clone(),
            s.server.role.to_string(),
            s.server.server_type.clone(),
            time(s.rent),
            time(s.release),
            s.hours.to_string(),
            eur_text(s.cost_micro_eur),
        ]);
    }
    let mut out = format!(
        "autopilot timeline for {}: lead time {} min ({}), the plan's warm-up {} min{}\n",
        t.event,
        lead.seconds / 60,
        lead.source,
        warmup.num_minutes(),
        if t.early_seconds > 0 {
            format!(
                ": every server is rented {} min before its window",
                t.early_seconds / 60
            )
        } else {
            String::new()
        }
    );
    out.push_str(&render(&rows));
    if t.traffic_micro_eur > 0 {
        out.push_str(&format!(
            "stream traffic beyond what is included: {} EUR\n",
            eur_text(t.traffic_micro_eur)
        ));
    }
    out.push_str(&format!(
        "total: {} EUR (venue plan: {} EUR)\n",
        eur_text(t.total_micro_eur),
        eur_text(t.plan_total_micro_eur)
    ));
    if t.total_micro_eur != t.plan_total_micro_eur {
        out.push_str(&format!(
            "warning: servers take longer to be ready than the plan's warm-up: raise [cloud] warmup_minutes to {} so that `venue plan` prices what the autopilot rents\n",
            (lead.seconds + 59) / 60
        ));
    }
    out
}
