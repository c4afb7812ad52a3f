//! `venue down`: give everything back. Deletes every server, primary IP,
//! firewall and SSH key labelled for the event, then lists again until
//! nothing is left, and says what the event cost. It never touches a
//! resource without this event's label: every list is filtered by the
//! label selector and checked again on our side before any delete.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use chrono::Utc;
use conference::Event;
use reqwest::Method;
use serde::Serialize;

use super::cost;
use super::inventory::Inventory;
use crate::cloud::{actions, pricing, Client, CloudError};
use crate::model::state::StateDir;
use crate::plan::prices::{eur_text, PriceTable};

/// How long "list, delete what is left" may go on before giving up.
const LIMIT: Duration = Duration::from_secs(15 * 60);

pub struct DownOptions {
    pub event: PathBuf,
    pub state: Option<PathBuf>,
    pub dry_run: bool,
    pub yes: bool,
    pub json: bool,
    /// Delete without archiving recordings and the portal's database first.
    pub discard: bool,
}

#[derive(Debug, Serialize)]
pub struct DownReport {
    pub event: String,
    pub deleted: Vec<String>,
    pub final_cost_micro_eur: u64,
    pub requests: u64,
    pub rounds: u32,
}

pub fn run(opts: DownOptions) -> Result<()> {
    super::block_on(async {
        let event = Event::load(&opts.event)?;
        let client = Client::from_env()?;
        let inv = Inventory::load(&client, &event.id).await?;
        // --- DNS (issue 11): the event's record sets go too.
        // A DNS problem must not keep servers (which cost money) alive: say
        // so and go on; the records are tried again at the end.
        let dns_records = match crate::cloud::dns::publish::list(&event).await {
            Ok(rows) => rows.unwrap_or_default(),
            Err(e) => {
                eprintln!("warning: cannot list the event's DNS records: {e:#}");
                Vec::new()
            }
        };
        // ---
        if inv.is_empty() && dns_records.is_empty() {
            println!(
                "{}: nothing to delete (no resource labelled venue/event={})",
                event.id, event.id
            );
            return Ok(());
        }
        println!("{} holds {} resources:", event.id, inv.count());
        print!("{}", describe(&inv));
        // --- DNS (issue 11)
        for r in &dns_records {
            println!("  DNS record  {} {} {}", r.name, r.kind, r.values.join(" "));
        }
        // ---
        if opts.dry_run {
            println!("dry run: nothing deleted");
            return Ok(());
        }
        if opts.discard {
            eprintln!("--discard: the recordings and the portal's database on these servers are deleted WITHOUT an archive");
        }
        if !opts.yes {
            confirm(&event.id)?;
        }
        let prices = match pricing::live(&client).await {
            Ok(p) => p,
            Err(_) => PriceTable::bundled(),
        };
        let state = StateDir::open(StateDir::locate(
            &opts.event,
            &event.id,
            opts.state.as_deref(),
        ))?;
        let _lock = state.lock()?;
        // --- Archive (issue 13, crate::archive): first; a server whose
        // archive failed is kept, named, with the command to retry.
        let kept = if opts.discard {
            Vec::new()
        } else {
            tokio::task::block_in_place(|| {
                crate::archive::before_down(&event, &state, &inv.servers, opts.json)
            })?
        };
        let report = release_keeping(&client, &event.id, &prices, Some(&state), &kept).await?;
        if !kept.is_empty() {
            eprintln!("deleted {} resources", report.deleted.len());
            bail!(
                "kept {} server(s) whose archive is not complete: {}; the rest is deleted. Fix the cause above, then run: {}",
                kept.len(),
                kept.join(", "),
                crate::archive::retry_command(&opts.event, opts.state.as_deref(), opts.yes)
            );
        }
        // ---
        // --- DNS (issue 11): only after every server is gone (none kept).
        let dns_deleted = crate::cloud::dns::publish::unpublish(&event, Some(&state))
            .await
            .context("every server is deleted, but the event's DNS records are not (run `venue down` again)")?;
        // ---
        if opts.json {
            let mut v = serde_json::to_value(&report)?;
            v["dns_deleted"] = serde_json::to_value(&dns_deleted)?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        } else {
            if !dns_deleted.is_empty() {
                println!("deleted {} DNS record sets", dns_deleted.len());
            }
            println!(
                "deleted {} resources; nothing labelled venue/event={} is left. Final cost: {} EUR",
                report.deleted.len(),
                event.id,
                eur_text(report.final_cost_micro_eur)
            );
        }
        Ok(())
    })
}

fn describe(inv: &Inventory) -> String {
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

/// Asks for the event id on a terminal; without one, refuses.
fn confirm(event: &str) -> Result<()> {
    if !std::io::stdin().is_terminal() {
        bail!("refusing to delete without confirmation: no terminal to ask on; run `venue down --yes` to delete, or --dry-run to look");
    }
    eprint!("Delete all of this? Type the event id ({event}) to confirm: ");
    std::io::stderr().flush().ok();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the confirmation")?;
    if line.trim() != event {
        bail!("not confirmed: nothing deleted");
    }
    Ok(())
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
    release_keeping(client, event, prices, state, &[]).await
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
        let inv = without_kept(Inventory::load(client, event).await?, keep);
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
        let now = Utc::now();
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

/// The inventory without the servers to keep, their addresses, and (while
/// any is kept) the firewall and SSH key.
fn without_kept(mut inv: Inventory, keep: &[String]) -> Inventory {
    if keep.is_empty() {
        return inv;
    }
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

use futures_util::StreamExt;
