//! `venue plan` output: a table for people, JSON for programs.

use std::fmt::Write as _;

use conference::Event;
use serde_json::{json, Value};

use super::prices::{eur, eur_text};
use super::Plan;

pub fn json(plan: &Plan) -> Value {
    json!({
        "event": plan.event,
        "servers": plan.servers.iter().map(|g| json!({
            "role": g.role,
            "server_type": g.server_type,
            "location": g.location,
            "count": g.count,
            "hours": g.hours,
            "price_hourly_eur": eur(g.price.hourly_micro_eur),
            "cost_eur": eur(g.cost_micro_eur),
            "windows": g.windows,
        })).collect::<Vec<_>>(),
        "total_eur": eur(plan.total_micro_eur),
        "prices": { "source": plan.price_source, "date": plan.price_date, "currency": "EUR", "vat": "excluded" },
        "warnings": plan.warnings,
    })
}

pub fn table(plan: &Plan, event: &Event) -> String {
    let mut out = String::new();
    let (first, last) = event.span();
    let _ = writeln!(
        out,
        "{} ({}): {} day(s), {} – {}, {} room(s), {} session(s)\n",
        event.name,
        event.id,
        event.days.len(),
        first.format("%Y-%m-%d %H:%M UTC"),
        last.format("%Y-%m-%d %H:%M UTC"),
        event.rooms.len(),
        event.sessions.len()
    );
    let _ = writeln!(
        out,
        "{:<8} {:<12} {:<9} {:>5} {:>6} {:>9} {:>10}",
        "role", "server type", "location", "count", "hours", "EUR/hour", "EUR"
    );
    for g in &plan.servers {
        let _ = writeln!(
            out,
            "{:<8} {:<12} {:<9} {:>5} {:>6} {:>9.4} {:>10}",
            g.role.as_str(),
            g.server_type,
            g.location,
            g.count,
            g.hours,
            eur(g.price.hourly_micro_eur),
            eur_text(g.cost_micro_eur)
        );
    }
    let _ = writeln!(
        out,
        "{:<8} {:<12} {:<9} {:>5} {:>6} {:>9} {:>10}",
        "total",
        "",
        "",
        plan.server_count(),
        "",
        "",
        eur_text(plan.total_micro_eur)
    );
    let _ = writeln!(
        out,
        "\nprices: {} table of {}, EUR net of VAT",
        plan.price_source, plan.price_date
    );
    if !plan.warnings.is_empty() {
        let _ = writeln!(out, "\nwarnings:");
        for w in &plan.warnings {
            let _ = writeln!(out, "  - {w}");
        }
    }
    out
}
