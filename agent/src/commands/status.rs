//! `venue status`: everything the event holds in the cloud, its state, age
//! and cost so far (live prices with a token, which `status` needs anyway).

use std::path::PathBuf;

use anyhow::Result;
use chrono::{DateTime, Utc};
use conference::Event;
use serde::Serialize;

use crate::cloud::cost;
use crate::cloud::inventory::Inventory;
use crate::cloud::{pricing, Client};
use crate::model::table::render;
use crate::plan::prices::{eur_text, PriceTable};

pub struct StatusOptions {
    pub event: PathBuf,
    pub json: bool,
    /// State directory (default: .venue/<event id>/ beside the event file).
    pub state: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
pub struct Row {
    pub kind: &'static str,
    pub name: String,
    pub id: u64,
    pub role: Option<String>,
    pub state: String,
    pub detail: String,
    pub created: DateTime<Utc>,
    pub age_hours: f64,
    pub cost_micro_eur: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct StatusReport {
    pub event: String,
    pub resources: Vec<Row>,
    pub servers: usize,
    /// Servers only: every started hour, at the price of their type and location.
    pub cost_so_far_micro_eur: u64,
    pub price_source: String,
    pub price_date: String,
    pub warnings: Vec<String>,
    /// Per server: what is not archived yet (crate::archive).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archive: Option<Vec<crate::archive::Pending>>,
    /// The event's DNS record sets (event.toml `[dns]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns: Option<Vec<crate::cloud::dns::publish::DnsRow>>,
    /// The project's venue images: no event's, but billed per
    /// GB-month while they exist, so shown with what they cost.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub images: Option<Vec<super::image::Row>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub images_monthly_micro_eur: Option<u64>,
    /// What `venue autopilot` does next and when, and what it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub autopilot: Option<AutopilotStatus>,
}

/// The autopilot's next steps (from the plan's windows and the venue's
/// clock) and its latest journal lines.
#[derive(Debug, Serialize)]
pub struct AutopilotStatus {
    pub now: DateTime<Utc>,
    pub lead: crate::autopilot::lead::Lead,
    pub next: Vec<crate::autopilot::schedule::Step>,
    /// Its latest journal lines (venue time first), oldest first.
    pub done: Vec<String>,
}

/// How many steps ahead and lines back `status` shows.
const AUTOPILOT_LINES: usize = 8;

fn autopilot_status(
    opts: &StatusOptions,
    event: &Event,
    prices: &PriceTable,
) -> Result<AutopilotStatus> {
    let clock = conference::clock::Clock::from_env()?;
    let now = clock.now();
    let plan = super::autopilot::plan_of(&opts.event, event, opts.state.as_deref(), prices)?;
    let lead = super::autopilot::lead_of(&opts.event, event, opts.state.as_deref());
    let timeline =
        crate::autopilot::schedule::Timeline::of(&plan, event.cloud.warmup, lead.duration());
    let dir = crate::model::state::StateDir::locate(&opts.event, &event.id, opts.state.as_deref());
    let journal = std::fs::read_to_string(dir.join("journal.jsonl")).unwrap_or_default();
    let mut done: Vec<String> = journal
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["command"] == crate::autopilot::run::JOURNAL)
        .filter_map(|v| v["what"].as_str().map(str::to_owned))
        .collect();
    let skip = done.len().saturating_sub(AUTOPILOT_LINES);
    done.drain(..skip);
    Ok(AutopilotStatus {
        now,
        next: timeline.upcoming(now, AUTOPILOT_LINES),
        lead,
        done,
    })
}

fn autopilot_text(a: &AutopilotStatus) -> String {
    let mut out = format!(
        "\nautopilot (venue time {}, lead time {} min, {}):\n",
        a.now.format("%Y-%m-%d %H:%M"),
        a.lead.seconds / 60,
        a.lead.source
    );
    if a.next.is_empty() {
        out.push_str("  next: nothing (the event is over)\n");
    }
    for s in &a.next {
        out.push_str(&format!(
            "  next: {} {} {}\n",
            s.time.format("%Y-%m-%d %H:%M"),
            s.action,
            s.server
        ));
    }
    for d in &a.done {
        out.push_str(&format!("  did:  {d}\n"));
    }
    out
}

pub fn run(opts: StatusOptions) -> Result<()> {
    crate::runtime::block_on(async {
        let event = Event::load(&opts.event)?;
        let client = Client::from_env()?;
        let (prices, warning) = match pricing::live(&client).await {
            Ok(p) => (p, None),
            Err(e) if e.is_unauthorized() => return Err(e.into()),
            Err(e) => (
                PriceTable::bundled(),
                Some(format!(
                    "live prices unavailable ({e}); using the bundled table"
                )),
            ),
        };
        let inv = Inventory::load(&client, &event.id).await?;
        // The cloud's timestamps follow the venue's clock (a rehearsal's too).
        let now = conference::clock::Clock::from_env()?.now();
        let mut report = report(&event.id, &inv, &prices, now);
        report.warnings.extend(warning);
        match autopilot_status(&opts, &event, &prices) {
            Ok(a) => report.autopilot = Some(a),
            Err(e) => report
                .warnings
                .push(format!("autopilot timeline unavailable: {e:#}")),
        }
        report.archive = tokio::task::block_in_place(|| archive_pending(&opts, &event, &inv));
        // --- DNS: the event's record sets.
        match crate::cloud::dns::publish::list(&event).await {
            Ok(rows) => report.dns = rows,
            Err(e) => report
                .warnings
                .push(format!("DNS records unavailable: {e:#}")),
        }
        // ---
        // --- Images: snapshots and their monthly cost.
        match images(&client).await {
            Ok((rows, monthly)) => {
                report.images = Some(rows);
                report.images_monthly_micro_eur = monthly;
            }
            Err(e) => report
                .warnings
                .push(format!("venue images unavailable: {e:#}")),
        }
        // ---
        if opts.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{}", text(&report));
            // --- DNS
            if let Some(rows) = report.dns.as_ref().filter(|r| !r.is_empty()) {
                print!(
                    "\nDNS records labelled venue/event={}:\n{}",
                    event.id,
                    crate::cloud::dns::publish::text(rows)
                );
            }
            // ---
            if let Some(a) = &report.autopilot {
                print!("{}", autopilot_text(a));
            }
            // --- Images
            if let Some(rows) = report.images.as_ref().filter(|r| !r.is_empty()) {
                print!(
                    "\nvenue images (no event's; `venue down` keeps them):\n{}",
                    super::image::table(rows)
                );
            }
            // ---
        }
        Ok(())
    })
}

pub fn report(
    event: &str,
    inv: &Inventory,
    prices: &PriceTable,
    now: DateTime<Utc>,
) -> StatusReport {
    let age =
        |c: DateTime<Utc>| ((now - c).num_seconds().max(0) as f64 / 3600.0 * 10.0).round() / 10.0;
    let mut rows = Vec::new();
    let mut total = 0;
    let mut warnings = Vec::new();
    for s in &inv.servers {
        let (c, known) = cost::server_cost(s, prices, now);
        if !known {
            warnings.push(format!(
                "no price for {} in {} ({}): not counted",
                s.server_type.name, s.location.name, s.name
            ));
        }
        total += c;
        rows.push(Row {
            kind: "server",
            name: s.name.clone(),
            id: s.id,
            role: s.labels.get(crate::cloud::labels::ROLE).cloned(),
            state: s.status.clone(),
            detail: format!(
                "{} {} {}",
                s.server_type.name,
                s.location.name,
                s.ipv4().unwrap_or_default()
            ),
            created: s.created,
            age_hours: age(s.created),
            cost_micro_eur: known.then_some(c),
        });
    }
    for p in &inv.primary_ips {
        let state = if p.assignee_id.is_some() {
            "assigned"
        } else {
            "unassigned"
        };
        let detail = format!(
            "{} {}{}",
            p.kind,
            p.ip,
            if p.auto_delete {
                " (deleted with its server)"
            } else {
                ""
            }
        );
        rows.push(Row {
            kind: "primary_ip",
            name: p.name.clone(),
            id: p.id,
            role: p.labels.get(crate::cloud::labels::ROLE).cloned(),
            state: state.into(),
            detail,
            created: p.created,
            age_hours: age(p.created),
            cost_micro_eur: None,
        });
    }
    for f in &inv.firewalls {
        rows.push(Row {
            kind: "firewall",
            name: f.name.clone(),
            id: f.id,
            role: None,
            state: "exists".into(),
            detail: String::new(),
            created: f.created,
            age_hours: age(f.created),
            cost_micro_eur: None,
        });
    }
    for k in &inv.ssh_keys {
        rows.push(Row {
            kind: "ssh_key",
            name: k.name.clone(),
            id: k.id,
            role: None,
            state: "exists".into(),
            detail: k.fingerprint.clone(),
            created: k.created,
            age_hours: age(k.created),
            cost_micro_eur: None,
        });
    }
    StatusReport {
        event: event.to_owned(),
        servers: inv.servers.len(),
        resources: rows,
        cost_so_far_micro_eur: total,
        price_source: prices.source.clone(),
        price_date: prices.date.clone(),
        warnings,
        archive: None,
        dns: None,
        images: None,
        images_monthly_micro_eur: None,
        autopilot: None,
    }
}

/// Every venue image with its monthly cost, and their sum (None without a
/// snapshot price in `/pricing`).
async fn images(client: &Client) -> Result<(Vec<super::image::Row>, Option<u64>)> {
    let all = crate::images::snapshots::list(client).await?;
    let per_gb = crate::images::snapshots::price_per_gb_month(client).await?;
    let rows = super::image::rows(&all, per_gb);
    let total = per_gb.map(|_| rows.iter().filter_map(|r| r.monthly_micro_eur).sum());
    Ok((rows, total))
}

/// What the servers hold that is not archived yet; None without a state
/// directory (no pinned keys to log in with) or without servers.
fn archive_pending(
    opts: &StatusOptions,
    event: &Event,
    inv: &Inventory,
) -> Option<Vec<crate::archive::Pending>> {
    let dir = crate::model::state::StateDir::locate(&opts.event, &event.id, opts.state.as_deref());
    if inv.servers.is_empty() || !dir.is_dir() {
        return None;
    }
    let state = crate::model::state::StateDir { dir };
    let servers: Vec<_> = inv
        .servers
        .iter()
        .filter(|s| s.status != "deleting")
        .cloned()
        .collect();
    let (hosts, failed) = crate::archive::hosts_of_servers(&servers, &state);
    let options = crate::archive::Options::new(
        &state,
        std::time::Duration::from_secs(5),
        event.deploy.concurrency as usize,
    );
    let mut pending = match crate::archive::pending(&hosts, &state, &options) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "cannot tell what is archived");
            return None;
        }
    };
    pending.extend(failed.into_iter().map(|f| crate::archive::Pending {
        host: f.host,
        files: 0,
        bytes: 0,
        dumps: 0,
        error: Some(f.message),
    }));
    pending.sort_by(|a, b| a.host.cmp(&b.host));
    Some(pending)
}

pub fn text(r: &StatusReport) -> String {
    if r.resources.is_empty() {
        return format!(
            "{}: nothing in the cloud (no resource labelled venue/event={})\n",
            r.event, r.event
        );
    }
    let mut rows = vec![
        ["KIND", "NAME", "ROLE", "STATE", "AGE", "COST EUR", "DETAIL"]
            .map(String::from)
            .to_vec(),
    ];
    for x in &r.resources {
        rows.push(vec![
            x.kind.into(),
            x.name.clone(),
            x.role.clone().unwrap_or_else(|| "-".into()),
            x.state.clone(),
            format!("{:.1}h", x.age_hours),
            x.cost_micro_eur.map(eur_text).unwrap_or_else(|| "-".into()),
            x.detail.clone(),
        ]);
    }
    let mut out = render(&rows);
    out.push_str(&format!(
        "\n{} resources, {} servers; cost so far {} EUR (every started server hour; prices: {} {})\n",
        r.resources.len(),
        r.servers,
        eur_text(r.cost_so_far_micro_eur),
        r.price_source,
        r.price_date
    ));
    for w in &r.warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    if let Some(p) = &r.archive {
        out.push('\n');
        out.push_str(&crate::archive::pending_text(p));
    }
    out
}
