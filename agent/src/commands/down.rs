//! `venue down`: converge to nothing (crate::converge): archive every
//! server, delete those whose archive is verified and everything else
//! labelled for the event (primary IPs, firewall, SSH key), list again
//! until nothing is left, remove the event's DNS records, and say what the
//! event cost. It never touches a resource without this event's label.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use conference::Event;

use crate::cloud::inventory::Inventory;
use crate::cloud::{pricing, Client};
use crate::converge;
use crate::model::state::StateDir;
use crate::plan::prices::{eur_text, PriceTable};

pub use crate::converge::release::{describe, release, release_keeping, DownReport};

pub struct DownOptions {
    pub event: PathBuf,
    pub state: Option<PathBuf>,
    pub dry_run: bool,
    pub yes: bool,
    pub json: bool,
    /// Delete without archiving recordings and the portal's database first.
    pub discard: bool,
}

pub fn run(opts: DownOptions) -> Result<()> {
    crate::runtime::block_on(async {
        let event = Event::load(&opts.event)?;
        let client = Client::from_env()?;
        let inv = Inventory::load(&client, &event.id).await?;
        // --- DNS: the event's record sets go too.
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
        // --- DNS
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
        // Archive first (crate::archive): a server whose archive failed is
        // kept, named, with the command to retry.
        let down = converge::to_nothing(
            &client,
            &event,
            &state,
            &prices,
            &inv,
            opts.discard,
            opts.json,
        )
        .await?;
        let (report, kept) = (down.released.report, down.released.kept);
        if !kept.is_empty() {
            eprintln!("deleted {} resources", report.deleted.len());
            bail!(
                "kept {} server(s) whose archive is not complete: {}; the rest is deleted. Fix the cause above, then run: {}",
                kept.len(),
                kept.join(", "),
                crate::archive::retry_command(&opts.event, opts.state.as_deref(), opts.yes)
            );
        }
        let dns_deleted = down.dns_deleted;
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
