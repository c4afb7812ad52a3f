//! `venue plan` output: a table for people, JSON for programs.

use std::fmt::Write as _;

use conference::Event;
use serde_json::{json, Value};

use super::measured::Source;
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
        "streams": plan.streams.as_ref().map(|st| json!({
            "bitrate_kbit": st.bitrate_kbit,
            "viewers_per_server": st.viewers_per_server,
            "viewers": st.viewers,
            "bandwidth_mbit": st.bandwidth_mbit,
            "edges": st.edges,
            "traffic_bytes": st.traffic_bytes,
            "included_bytes": st.included_bytes,
            "overage_tb": st.overage_tb,
            "traffic_eur": eur(st.traffic_micro_eur),
            "rooms": st.rooms,
        })),
        "total_eur": eur(plan.total_micro_eur),
        "prices": { "source": plan.price_source, "date": plan.price_date, "currency": "EUR", "vat": "excluded" },
        "warnings": plan.warnings,
        "peaks": plan.peaks,
    })
}

/// Which rooms' people are declared and which measured, and why a
/// measurement was left aside.
fn peaks(out: &mut String, plan: &Plan) {
    let measured = plan
        .peaks
        .iter()
        .filter(|p| p.source == Source::Measured)
        .count();
    let _ = writeln!(
        out,
        "\npeople: {} room(s) as declared in event.toml, {measured} as measured by the autopilot",
        plan.peaks.len() - measured
    );
    for p in plan.peaks.iter().filter(|p| p.measured.is_some()) {
        let _ = match (&p.source, &p.note) {
            (Source::Measured, _) => writeln!(
                out,
                "  {}: {} measured (declared {})",
                p.room, p.used, p.declared
            ),
            (Source::Declared, note) => writeln!(
                out,
                "  {}: {} declared (measured {} not used: {})",
                p.room,
                p.used,
                p.measured.unwrap_or_default(),
                note.as_deref().unwrap_or("")
            ),
        };
    }
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
    if let Some(st) = &plan.streams {
        if st.traffic_micro_eur > 0 {
            let _ = writeln!(
                out,
                "{:<8} {:<12} {:<9} {:>5} {:>6} {:>9} {:>10}",
                "traffic",
                format!("{} TB over", st.overage_tb),
                "",
                "",
                "",
                "",
                eur_text(st.traffic_micro_eur)
            );
        }
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
    if let Some(st) = &plan.streams {
        let _ = writeln!(
            out,
            "\nstreams: {} viewers × {} kbit/s = {} Mbit/s; {} viewers per server link; {} edge(s); {:.2} TB sent, {:.2} TB included",
            st.viewers,
            st.bitrate_kbit,
            st.bandwidth_mbit,
            st.viewers_per_server,
            st.edges,
            st.traffic_bytes as f64 / (1u64 << 40) as f64,
            st.included_bytes as f64 / (1u64 << 40) as f64
        );
        for r in &st.rooms {
            let _ = writeln!(
                out,
                "  {}: stage of {}, {} watching ({}), {:.1} h",
                r.room, r.stage, r.viewers, r.served_by, r.hours
            );
        }
    }
    peaks(&mut out, plan);
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
