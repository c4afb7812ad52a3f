//! `venue up`: converge to everything in the plan (crate::converge): rent
//! what is missing, install NixOS where it is not, deploy every host.
//! Idempotent and resumable: killing it at any moment and running it again
//! adopts what exists and creates only what is missing. Servers of the
//! event that the plan does not name are left alone (`venue down` or the
//! autopilot releases them).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use conference::clock::Clock;
use conference::Event;
use serde_json::json;

use crate::converge;
use crate::model::fleet;
use crate::model::state::StateDir;
use crate::plan;

pub use crate::converge::provision::{provision, UpReport};

pub struct UpOptions {
    pub event: PathBuf,
    pub state: Option<PathBuf>,
    pub json: bool,
    pub no_deploy: bool,
}

/// The command: load, plan with live prices, provision, then (unless
/// `--no-deploy`) deploy every host, and print.
pub fn run(opts: UpOptions) -> Result<()> {
    let event = Event::load(&opts.event)?;
    if !opts.no_deploy {
        crate::deploy::command::preflight(&event)?;
    }
    let state = StateDir::open(StateDir::locate(
        &opts.event,
        &event.id,
        opts.state.as_deref(),
    ))?;
    let _lock = state.lock()?;
    let clock = Clock::from_env()?;
    let (target, mut rented) = crate::runtime::block_on(async {
        let client = crate::cloud::Client::from_env()?;
        // The first request: a wrong token stops us here, before anything exists.
        let prices = crate::cloud::pricing::live(&client)
            .await
            .context("reading live prices")?;
        // The plan `venue plan` makes for this state directory.
        let measured = plan::measured::load(&state.dir, &event)?;
        let target = plan::plan_measured(&event, &prices, measured.as_ref())?.fleet();
        let rented = converge::rent(&client, &event, &state, &target, &clock).await?;
        anyhow::Ok((target, rented))
    })?;
    let report = &rented.report;
    if !opts.json {
        print!("{}", fleet::table(&report.fleet));
        print!("{}", crate::tls::text(&rented.names));
        println!(
            "\n{} created, {} already there; fleet written to {}",
            report.created.len(),
            report.adopted.len(),
            report.fleet_file.display()
        );
        for name in &report.extra {
            println!(
                "note: {name} is labelled for {} but not in the plan; `venue down` removes it",
                event.id
            );
        }
    }
    if opts.no_deploy {
        if opts.json {
            let mut v = serde_json::to_value(report)?;
            v["names"] = serde_json::to_value(&rented.names)?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        return Ok(());
    }
    let ready = converge::ready(&event, &state, &target, &mut rented, &clock)?;
    let seconds = &rented.seconds;
    if opts.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "provision": rented.report, "names": rented.names, "install": ready.installed,
                "deploy": ready.deployed, "seconds": seconds,
            }))?
        );
    } else {
        if !ready.installed.is_empty() {
            print!("\n{}", crate::install::report::table(&ready.installed));
        }
        print!("\n{}", crate::deploy::command::table(&ready.deployed));
        println!(
            "\nseconds: provision {:.1}, names {:.1}, build {:.1}, install {:.1}, deploy {:.1}",
            seconds.provision, seconds.names, seconds.build, seconds.install, seconds.deploy
        );
    }
    if !ready.healthy() {
        bail!("not every host is healthy: see the table above (`venue deploy --host NAME` retries one)");
    }
    Ok(())
}
