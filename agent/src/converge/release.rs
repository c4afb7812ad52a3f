//! Giving back: deletes servers of the event (and what goes with them) and
//! lists again until a fresh listing finds none of them. Never touches a
//! resource without the event's label: every list is filtered by the label
//! selector and checked again on our side before any delete. What to
//! delete is a [`Scope`]: everything (`venue down`), or some servers (the
//! autopilot's releases, each after its archive is verified).

use std::time::Duration;

use anyhow::{bail, Result};
use futures_util::StreamExt;
use reqwest::Method;
use serde::Serialize;

use crate::cloud::cost;
use crate::cloud::inventory::Inventory;
use crate::cloud::{actions, Client, CloudError};
use crate::model::state::StateDir;
use crate::plan::prices::PriceTable;

/// How long "list, delete what is left" may go on before giving up.
const LIMIT: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, Serialize)]
pub struct DownReport {
    pub event: String,
    pub deleted: Vec<String>,
    pub final_cost_micro_eur: u64,
    pub requests: u64,
    pub rounds: u32,
}

/// What a release deletes.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// Everything of the event but the servers named (their archive
    /// failed), their addresses, and (while any is kept) the firewall and
    /// SSH key they still use.
    AllBut(&'a [String]),
    /// Only these servers, and the event's addresses no server holds.
    Servers(&'a [String]),
}

pub fn describe(inv: &Inventory) -> String {
    let mut out = String::new();
    for s in &inv.servers {
        out.push_str(&format!(
            "  server      {} ({}, {})\n",
            s.name, s.server_type.name, s.status
        ));
    }
    for p in &inv.primary_ips {
        out.push_str(&format!(
            "  primary IP  {} {}{}\n",
            p.name,
            p.ip,
            if p.auto_delete && p.assignee_id.is_some() {
                " (goes with its server)"
            } else {
                ""
            }
        ));
    }
    for f in &inv.firewalls {
        out.push_str(&format!("  firewall    {}\n", f.name));
    }
    for k in &inv.ssh_keys {
        out.push_str(&format!("  SSH key     {}\n", k.name));
    }
    out
}

fn gone_ok(r: Result<serde_json::Value, CloudError>) -> Result<Option<u64>, CloudError> {
    match r {
        Ok(v) => Ok(v["action"]["id"].as_u64()),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Deletes everything of `event`, round after round, until a fresh listing
/// finds nothing. Servers first (their auto-delete addresses go with them),
/// then the addresses left, then the firewall (in use until its servers are
/// gone) and the SSH key.
pub async fn release(
    client: &Client,
    event: &str,
    prices: &PriceTable,
    state: Option<&StateDir>,
) -> Result<DownReport> {
    release_scoped(client, event, prices, state, Scope::AllBut(&[])).await
}

/// Like `release`, but leaves the servers named in `keep` (their archive
/// failed), with their addresses, and the firewall and SSH key they still use.
pub async fn release_keeping(
    client: &Client,
    event: &str,
    prices: &PriceTable,
    state: Option<&StateDir>,
    keep: &[String],
) -> Result<DownReport> {
    release_scoped(client, event, prices, state, Scope::AllBut(keep)).await
}

/// Deletes what `scope` names, round after round, until a fresh listing
/// finds none of it.
pub async fn release_scoped(
    client: &Client,
    event: &str,
    prices: &PriceTable,
    state: Option<&StateDir>,
    scope: Scope<'_>,
) -> Result<DownReport> {
    let sent_before = client.requests_sent();
    let mut deleted = Vec::new();
    let mut final_cost = 0;
    let mut counted: Vec<u64> = Vec::new();
    let note = |what: &str| {
        if let Some(s) = state {
            s.journal("down", what);
        }
    };
    let started = std::time::Instant::now();
    let mut interval = client.poll_start();
    let mut round = 0;
    let mut stuck = 0;
    while started.elapsed() < LIMIT {
        round += 1;
        let inv = scoped(Inventory::load(client, event).await?, scope);
        if inv.is_empty() {
            note(&format!("done: nothing left after {} rounds", round - 1));
            return Ok(DownReport {
                event: event.into(),
                deleted,
                final_cost_micro_eur: final_cost,
                requests: client.requests_sent() - sent_before,
                rounds: round,
            });
        }
        // Every server seen costs until now: count each once (also those a
        // previous, interrupted `down` left deleting).
        // The cloud's timestamps follow the venue's clock (a rehearsal's
        // accelerated one too).
        let now = conference::clock::Clock::from_env()
            .unwrap_or_default()
            .now();
        for s in &inv.servers {
            if !counted.contains(&s.id) {
                final_cost += cost::server_cost(s, prices, now).0;
                counted.push(s.id);
            }
        }
        let mut waits = Vec::new();
        let mut last_error: Option<CloudError> = None;
        let servers: Vec<(String, u64)> = inv
            .servers
            .iter()
            .filter(|s| s.status != "deleting")
            .map(|s| (s.name.clone(), s.id))
            .collect();
        let results: Vec<(String, u64, Result<Option<u64>, CloudError>)> =
            futures_util::stream::iter(servers)
                .map(|(name, id)| async move {
                    let r = gone_ok(
                        client
                            .request(Method::DELETE, &format!("/servers/{id}"), &[], None)
                            .await,
                    );
                    (name, id, r)
                })
                .buffer_unordered(5)
                .collect()
                .await;
        for (name, id, r) in results {
            match r {
                Ok(action) => {
                    if let Some(s) = state {
                        // A step: tests crash here (crate::archive::step).
                        crate::archive::step(
                            s,
                            "down",
                            &format!("deleting server {name} (id {id})"),
                        );
                    }
                    deleted.push(format!("server {name}"));
                    waits.extend(action);
                }
                Err(e) => last_error = Some(e),
            }
        }
        if !waits.is_empty() {
            let done =
                actions::wait_all(client, &waits, "deleting servers", Duration::from_secs(600))
                    .await?;
            if let Some(e) = actions::first_error(&done) {
                tracing::warn!(error = %e, "a server deletion failed; trying again");
            }
        }
        let server_ids: Vec<u64> = inv.servers.iter().map(|s| s.id).collect();
        for p in inv
            .primary_ips
            .iter()
            .filter(|p| crate::cloud::labels::belongs(&p.labels, event))
        {
            // Addresses still on one of our servers go with it (auto_delete)
            // or are freed when it goes; delete only unassigned ones.
            if p.assignee_id.is_some_and(|a| server_ids.contains(&a)) {
                continue;
            }
            match gone_ok(
                client
                    .request(Method::DELETE, &format!("/primary_ips/{}", p.id), &[], None)
                    .await,
            ) {
                Ok(_) => deleted.push(format!("primary IP {}", p.ip)),
                Err(e) => last_error = Some(e),
            }
        }
        if inv.servers.is_empty() {
            for f in &inv.firewalls {
                match gone_ok(
                    client
                        .request(Method::DELETE, &format!("/firewalls/{}", f.id), &[], None)
                        .await,
                ) {
                    Ok(_) => deleted.push(format!("firewall {}", f.name)),
                    Err(e) => last_error = Some(e),
                }
            }
            for k in &inv.ssh_keys {
                match gone_ok(
                    client
                        .request(Method::DELETE, &format!("/ssh_keys/{}", k.id), &[], None)
                        .await,
                ) {
                    Ok(_) => deleted.push(format!("SSH key {}", k.name)),
                    Err(e) => last_error = Some(e),
                }
            }
        }
        match &last_error {
            // An error that waiting does not cure (delete protection, a
            // forbidden token): say so instead of trying for minutes.
            Some(e) if !e.is_retryable() && !e.is("resource_in_use") => {
                stuck += 1;
                if stuck >= 3 {
                    let left = Inventory::load(client, event).await?;
                    bail!(
                        "{e}\n{} resources of {event} are still there:\n{}",
                        left.count(),
                        describe(&left)
                    );
                }
            }
            _ => stuck = 0,
        }
        if let Some(e) = &last_error {
            tracing::warn!(round, error = %e, "some deletions failed; listing again");
        }
        if waits.is_empty() {
            // Nothing to wait for, yet something was left (servers still
            // deleting, a firewall still in use): give the cloud a moment.
            tokio::time::sleep(interval).await;
            interval = (interval * 2).min(Duration::from_secs(2));
        }
    }
    let left = Inventory::load(client, event).await?;
    bail!(
        "after {} minutes and {round} rounds, {} resources of {event} are still there:\n{}",
        LIMIT.as_secs() / 60,
        left.count(),
        describe(&left)
    )
}

/// The part of the inventory that `scope` deletes.
fn scoped(mut inv: Inventory, scope: Scope) -> Inventory {
    let keep = match scope {
        Scope::AllBut([]) => return inv,
        Scope::AllBut(keep) => keep,
        Scope::Servers(names) => {
            inv.servers.retain(|s| names.contains(&s.name));
            let ours: Vec<u64> = inv.servers.iter().map(|s| s.id).collect();
            // Addresses of the servers going, and the event's addresses
            // that no server holds (they cost money and serve nothing).
            inv.primary_ips
                .retain(|p| p.assignee_id.is_none_or(|a| ours.contains(&a)));
            inv.firewalls.clear();
            inv.ssh_keys.clear();
            return inv;
        }
    };
    let kept: Vec<u64> = inv
        .servers
        .iter()
        .filter(|s| keep.contains(&s.name))
        .map(|s| s.id)
        .collect();
    inv.servers.retain(|s| !kept.contains(&s.id));
    inv.primary_ips
        .retain(|p| !p.assignee_id.is_some_and(|a| kept.contains(&a)));
    if !kept.is_empty() {
        inv.firewalls.clear();
        inv.ssh_keys.clear();
    }
    inv
}
