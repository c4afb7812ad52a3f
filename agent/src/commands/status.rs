//! `venue status`: everything the event holds in the cloud, its state, age
//! and cost so far (live prices with a token, which `status` needs anyway).

use std::path::PathBuf;

use anyhow::Result;
use chrono::{DateTime, Utc};
use conference::Event;
use serde::Serialize;

use super::cost;
use super::fleet::render;
use super::inventory::Inventory;
use crate::cloud::{pricing, Client};
use crate::plan::prices::{eur_text, PriceTable};

pub struct StatusOptions {
    pub event: PathBuf,
    pub json: bool,
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
}

pub fn run(opts: StatusOptions) -> Result<()> {
    super::block_on(async {
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
        let mut report = report(&event.id, &inv, &prices, Utc::now());
        report.warnings.extend(warning);
        if opts.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{}", text(&report));
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
    }
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
    out
}
