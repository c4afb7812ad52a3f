//! The convergence that `venue up`, `venue autopilot` and `venue down`
//! share: make the cloud hold a target set of servers. What is missing is
//! rented ([`rent`]: servers, SSH key, firewall, labelled addresses,
//! fleet.json, DNS records and the certificate), then made a venue
//! ([`ready`]: NixOS installed where it is not, every host deployed and
//! health-checked); what is no longer wanted is archived, its archive
//! verified, and only then deleted ([`archive_and_release`]). `up` targets
//! everything in the plan, the autopilot what the schedule needs now,
//! `down` nothing ([`to_nothing`], which also removes the firewall, the SSH
//! key and the DNS records).
//!
//! The cloud's labels are the truth for what exists: each step lists it
//! first, so a run killed at any moment and started again converges, with
//! no duplicate server (names are unique; a repeated create is adopted) and
//! no unarchived release (a server is deleted only after its verified
//! archive, in the same run).

pub mod provision;
pub mod release;

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use conference::clock::Clock;
use conference::Event;
use serde::Serialize;

use crate::cloud::inventory::Inventory;
use crate::cloud::types::Server;
use crate::cloud::Client;
use crate::model::state::StateDir;
use crate::plan::prices::PriceTable;
use crate::plan::PlannedServer;
use crate::tls::NamesReport;
pub use provision::UpReport;
pub use release::{DownReport, Scope};

/// Journal lines that measure a server's lead time (rent to healthy, in the
/// venue's time) start with this; the autopilot reads them back.
pub const READY: &str = "ready ";

/// Seconds of each phase of a convergence.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Seconds {
    pub provision: f64,
    pub names: f64,
    pub build: f64,
    pub install: f64,
    pub deploy: f64,
}

fn secs(since: Instant) -> f64 {
    (since.elapsed().as_secs_f64() * 10.0).round() / 10.0
}

/// What [`rent`] did.
pub struct Rented {
    pub report: UpReport,
    pub names: NamesReport,
    /// When renting began, by the venue's clock: a new server's lead time
    /// counts from here.
    pub started: DateTime<Utc>,
    pub seconds: Seconds,
}

/// Rents what is missing of `target` (the zone and the names are checked
/// before anything is rented), writes fleet.json with the target's servers,
/// then the DNS records (those of servers no longer in it are removed) and
/// the certificate.
pub async fn rent(
    client: &Client,
    event: &Event,
    state: &StateDir,
    target: &[PlannedServer],
    clock: &Clock,
) -> Result<Rented> {
    let started = clock.now();
    let mut seconds = Seconds::default();
    let dns = crate::cloud::dns::publish::preflight(
        event,
        target.iter().map(|p| (p.name.as_str(), p.role.as_str())),
    )
    .await?;
    let t = Instant::now();
    let report = provision::provision_servers(client, event, target, state).await?;
    seconds.provision = secs(t);
    let t = Instant::now();
    let names = crate::tls::publish_and_certify(dns.as_ref(), event, &report.fleet, state).await?;
    seconds.names = secs(t);
    Ok(Rented {
        report,
        names,
        started,
        seconds,
    })
}

/// What [`ready`] did.
#[derive(Debug, Serialize)]
pub struct Ready {
    pub installed: Vec<crate::install::HostReport>,
    pub deployed: Vec<crate::deploy::Report>,
}

impl Ready {
    pub fn healthy(&self) -> bool {
        crate::deploy::command::all_healthy(&self.deployed)
    }
}

/// Makes the rented fleet a venue: installs NixOS on the servers that do
/// not run it (one whose kexec never takes is created again, within
/// `target`), then deploys every host of fleet.json. Journals each new
/// server's lead time (rent to healthy, venue time) for the autopilot.
pub fn ready(
    event: &Event,
    state: &StateDir,
    target: &[PlannedServer],
    rented: &mut Rented,
    clock: &Clock,
) -> Result<Ready> {
    let args = crate::deploy::command::DeployArgs {
        event,
        state,
        only: None,
        // A new server boots, runs cloud-init and starts sshd: give it time.
        connect_wait: Duration::from_secs(10 * 60),
    };
    let t = Instant::now();
    let mut prepared = crate::deploy::command::prepare(&args)?;
    rented.seconds.build = secs(t);
    let t = Instant::now();
    let recreating = std::sync::Mutex::new(());
    let recreate = |name: &str| -> Result<String> {
        // One at a time: each re-runs provisioning for the whole target.
        let _one = recreating.lock().unwrap_or_else(|e| e.into_inner());
        provision::recreate_server(event, state, target, name)
    };
    let installed = crate::install::for_fleet(
        event,
        state,
        &rented.report.fleet,
        &prepared,
        &rented.report.from_snapshot,
        Some(&recreate),
    )?;
    rented.seconds.install = secs(t);
    if installed.iter().any(|r| r.recreated > 0) {
        // New servers, new addresses: the names and the systems follow.
        rented.names = crate::runtime::block_on(provision::republish_names(event, state))?;
        prepared = crate::deploy::command::prepare(&args)?;
    }
    let not_installed = crate::install::not_installed(&installed, &prepared.hosts);
    let skip: Vec<String> = not_installed.iter().map(|r| r.host.clone()).collect();
    let t = Instant::now();
    let mut deployed = crate::deploy::command::finish(&args, prepared, &skip)?;
    rented.seconds.deploy = secs(t);
    deployed.extend(not_installed);
    deployed.sort_by(|a, b| a.host.cmp(&b.host));
    let now = clock.now();
    for r in &deployed {
        let healthy = matches!(
            r.outcome,
            crate::deploy::Outcome::Healthy | crate::deploy::Outcome::Unchanged
        );
        if healthy && rented.report.created.contains(&r.host) {
            let lead = (now - rented.started).num_seconds().max(0);
            state.journal(
                "converge",
                &format!("{READY}{}: {lead} s from rent to healthy", r.host),
            );
        }
    }
    Ok(Ready {
        installed,
        deployed,
    })
}

/// What [`archive_and_release`] did.
pub struct Released {
    pub report: DownReport,
    /// Servers whose archive failed: still there, with their addresses.
    pub kept: Vec<String>,
}

/// How [`archive_and_release`] goes about it.
#[derive(Debug, Clone, Copy, Default)]
pub struct How {
    /// Delete everything else of the event too (`venue down`); else only
    /// the servers given and addresses no server holds.
    pub everything: bool,
    /// Delete without archiving.
    pub discard: bool,
    /// Keep stdout for a JSON report (the archive's table goes to stderr).
    pub json: bool,
}

/// Archives `servers` (unless `discard`) and deletes every one whose
/// archive is verified.
pub async fn archive_and_release(
    client: &Client,
    event: &Event,
    state: &StateDir,
    prices: &PriceTable,
    servers: &[Server],
    how: How,
) -> Result<Released> {
    let How {
        everything,
        discard,
        json,
    } = how;
    let kept = if discard {
        Vec::new()
    } else {
        tokio::task::block_in_place(|| crate::archive::before_down(event, state, servers, json))?
    };
    let going: Vec<String> = servers
        .iter()
        .map(|s| s.name.clone())
        .filter(|n| !kept.contains(n))
        .collect();
    let scope = if everything {
        Scope::AllBut(&kept)
    } else {
        Scope::Servers(&going)
    };
    let report = release::release_scoped(client, &event.id, prices, Some(state), scope).await?;
    Ok(Released { report, kept })
}

/// What [`to_nothing`] did.
pub struct Down {
    pub released: Released,
    /// The event's DNS record sets deleted (none while a server is kept).
    pub dns_deleted: Vec<crate::cloud::dns::publish::DnsRow>,
}

/// Converges to nothing: archives every server, deletes those whose
/// archive is verified and everything else labelled for the event; once no
/// server is kept, the event's DNS records go too.
pub async fn to_nothing(
    client: &Client,
    event: &Event,
    state: &StateDir,
    prices: &PriceTable,
    inv: &Inventory,
    discard: bool,
    json: bool,
) -> Result<Down> {
    let how = How {
        everything: true,
        discard,
        json,
    };
    let released = archive_and_release(client, event, state, prices, &inv.servers, how).await?;
    if !released.kept.is_empty() {
        return Ok(Down {
            released,
            dns_deleted: Vec::new(),
        });
    }
    // Only after every server is gone.
    let dns_deleted = crate::cloud::dns::publish::unpublish(event, Some(state))
        .await
        .context(
            "every server is deleted, but the event's DNS records are not (run `venue down` again)",
        )?;
    Ok(Down {
        released,
        dns_deleted,
    })
}
