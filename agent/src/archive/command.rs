//! `venue archive EVENT.toml [--host NAME]`: archive every host of the
//! event's fleet (fleet.json, rented and static hosts) without deleting
//! anything. Run it as often as you like: it sends only what is new.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use conference::Event;

use super::{archive, table, Options, Outcome};
use crate::model::fleet::Fleet;
use crate::model::state::StateDir;

pub fn run(file: &Path, only: Option<&str>, state: Option<&Path>, json: bool) -> Result<()> {
    let event = Event::load(file)?;
    let state = StateDir::open(StateDir::locate(file, &event.id, state))?;
    let _lock = state.lock()?;
    let fleet_file = state.path("fleet.json");
    let fleet: Fleet = serde_json::from_str(
        &std::fs::read_to_string(&fleet_file)
            .with_context(|| format!("read {} (run `venue up` first)", fleet_file.display()))?,
    )
    .with_context(|| format!("{} is not a fleet file", fleet_file.display()))?;
    let mut hosts = crate::deploy::command::hosts(&event, &state, &fleet)?;
    if let Some(only) = only {
        let names: Vec<String> = hosts.iter().map(|h| h.name.clone()).collect();
        hosts.retain(|h| h.name == only);
        if hosts.is_empty() {
            bail!(
                "no host named {only} in this event (hosts: {})",
                names.join(", ")
            );
        }
    }
    let opts = Options::new(
        &state,
        Duration::from_secs(30),
        event.deploy.concurrency as usize,
    );
    let reports = archive(&hosts, &state, &opts)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        print!("{}", table(&reports));
        println!(
            "archive: {}",
            state.path("archive").join("manifest.json").display()
        );
    }
    let failed: Vec<&str> = reports
        .iter()
        .filter(|r| r.outcome == Outcome::Failed)
        .map(|r| r.host.as_str())
        .collect();
    if !failed.is_empty() {
        bail!(
            "the archive of {} is not complete; fix the cause above and run `venue archive` again",
            failed.join(", ")
        );
    }
    Ok(())
}
