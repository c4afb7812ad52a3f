//! What `up`, `status` and `down` do with DNS: check the zone and the names
//! before renting, write the A/AAAA record sets of the fleet, list them,
//! and remove them. Only record sets labelled `venue/event=<id>` whose name
//! is the event's domain or below it are ever changed or deleted.

use anyhow::{bail, Result};
use conference::Event;
use futures_util::StreamExt;
use serde::Serialize;

use super::names::{self, Wanted};
use super::{DnsApi, RrSet};
use crate::cloud::labels;
use crate::model::fleet::Fleet;
use crate::model::state::StateDir;

/// One record set as `status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct DnsRow {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub ttl: Option<u32>,
    pub values: Vec<String>,
}

impl DnsRow {
    fn of(api: &DnsApi, r: &RrSet) -> DnsRow {
        DnsRow {
            name: api.fqdn(&r.name),
            kind: r.kind.clone(),
            ttl: r.ttl,
            values: r.values(),
        }
    }
}

/// Before anything is rented: the zone is visible to its token, the
/// domain is in it, and no name the plan will use already has address
/// records that are not the event's. None when event.toml has no `[dns]`.
pub async fn preflight<'a>(
    event: &'a Event,
    hosts: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<Option<DnsApi>> {
    let Some(dns) = &event.dns else {
        return Ok(None);
    };
    let api = DnsApi::open(dns).await?;
    if api.relative(&event.domain).is_none() {
        bail!(
            "the event's domain {} is not in the DNS zone {}",
            event.domain,
            api.zone.name
        );
    }
    let static_hosts = event
        .static_hosts
        .iter()
        .flat_map(|h| h.roles.iter().map(move |r| (h.name.as_str(), r.as_str())));
    let all: Vec<(&str, &str)> = hosts.into_iter().chain(static_hosts).collect();
    let mut foreign = Vec::new();
    for fqdn in names::names(&event.domain, all) {
        let Some(rel) = api.relative(&fqdn) else {
            continue;
        };
        for kind in ["A", "AAAA"] {
            if let Some(r) = api.get(&rel, kind).await? {
                if !labels::belongs(&r.labels, &event.id) {
                    foreign.push(format!("{fqdn} {kind} ({})", r.values().join(", ")));
                }
            }
        }
    }
    if !foreign.is_empty() {
        bail!(
            "these names of the event already have records that venue did not make (no label {}={}): {}; \
             venue does not overwrite them: delete them or change the event's domain. Nothing was rented",
            labels::EVENT,
            event.id,
            foreign.join("; ")
        );
    }
    Ok(Some(api))
}

/// Writes the fleet's record sets and removes the event's address records
/// that the fleet no longer has (a host given back). Returns what is there.
pub async fn publish(
    api: &DnsApi,
    event: &Event,
    fleet: &Fleet,
    state: &StateDir,
) -> Result<Vec<DnsRow>> {
    let wanted: Vec<Wanted> = names::wanted(&api.zone.name, fleet);
    let bar = indicatif::ProgressBar::new(wanted.len() as u64).with_style(
        indicatif::ProgressStyle::with_template("{spinner} DNS records {pos}/{len} {wide_msg}")
            .expect("valid template"),
    );
    // A few at a time: each waits for its action.
    let results: Vec<Result<()>> = futures_util::stream::iter(&wanted)
        .map(|w| {
            let bar = &bar;
            async move {
                if api.put(&event.id, &w.rel, w.kind, &w.values).await? {
                    state.journal(
                        "up",
                        &format!("dns: {} {} = {}", w.fqdn, w.kind, w.values.join(" ")),
                    );
                }
                bar.set_message(format!("{} {}", w.fqdn, w.kind));
                bar.inc(1);
                Ok(())
            }
        })
        .buffer_unordered(5)
        .collect()
        .await;
    bar.finish_and_clear();
    results.into_iter().collect::<Result<Vec<()>>>()?;
    let mut rows = Vec::new();
    for r in api.event_rrsets(&event.id).await? {
        let stale = matches!(r.kind.as_str(), "A" | "AAAA")
            && !wanted.iter().any(|w| w.rel == r.name && w.kind == r.kind)
            && names::in_domain(&event.domain, &api.fqdn(&r.name));
        if stale {
            state.journal(
                "up",
                &format!(
                    "dns: removing {} {} (no such host now)",
                    api.fqdn(&r.name),
                    r.kind
                ),
            );
            api.delete(&event.id, &r).await?;
        } else {
            rows.push(DnsRow::of(api, &r));
        }
    }
    Ok(rows)
}

/// The event's record sets, for `status` (None without `[dns]`).
pub async fn list(event: &Event) -> Result<Option<Vec<DnsRow>>> {
    let Some(dns) = &event.dns else {
        return Ok(None);
    };
    let api = DnsApi::open(dns).await?;
    let rows = api
        .event_rrsets(&event.id)
        .await?
        .iter()
        .map(|r| DnsRow::of(&api, r))
        .collect();
    Ok(Some(rows))
}

/// Deletes every record set of the event: labelled for it (by the API's
/// selector, and checked here) and named in the event's domain. Returns
/// what was deleted; a labelled record outside the domain is reported, not
/// touched.
pub async fn unpublish(event: &Event, state: Option<&StateDir>) -> Result<Vec<DnsRow>> {
    let Some(dns) = &event.dns else {
        return Ok(Vec::new());
    };
    let api = DnsApi::open(dns).await?;
    let mut deleted = Vec::new();
    for r in api.event_rrsets(&event.id).await? {
        let fqdn = api.fqdn(&r.name);
        if !names::in_domain(&event.domain, &fqdn) {
            tracing::warn!(name = %fqdn, kind = %r.kind, "labelled for the event but outside its domain: left alone");
            continue;
        }
        api.delete(&event.id, &r).await?;
        if let Some(s) = state {
            s.journal("down", &format!("dns: deleted {fqdn} {}", r.kind));
        }
        deleted.push(DnsRow::of(&api, &r));
    }
    Ok(deleted)
}

/// Rows as text, for `status` and `down`.
pub fn text(rows: &[DnsRow]) -> String {
    let mut table = vec![["NAME", "TYPE", "TTL", "VALUES"].map(String::from).to_vec()];
    for r in rows {
        table.push(vec![
            r.name.clone(),
            r.kind.clone(),
            r.ttl.map(|t| t.to_string()).unwrap_or_else(|| "-".into()),
            r.values.join(" "),
        ]);
    }
    crate::model::table::render(&table)
}
