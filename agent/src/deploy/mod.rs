//! Deploy: turn hosts into a running venue. For each host: connect over SSH
//! with its pinned key, copy what its store lacks of the system closure,
//! upload the role's secrets, activate, check health, roll back on failure.
//! Hosts deploy in parallel, a bounded number at a time; one host's failure
//! does not stop the others.

pub mod activate;
pub mod closure;
pub mod command;
pub mod secrets;
pub mod ssh;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use conference::Role;
use indicatif::ProgressBar;
use serde::Serialize;

use activate::{Activation, HealthCheck};
use secrets::Secrets;
use ssh::{ConnectError, PinnedKey, Ssh};

/// A host to deploy to.
#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    /// A static host may hold several roles; a rented server holds one.
    pub roles: Vec<Role>,
    pub address: String,
    pub port: u16,
    /// Its SSH host key, `ssh-ed25519 AAAA…`: the only key we accept.
    pub host_key: String,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub user: String,
    /// The deploy identity (private key file).
    pub identity: PathBuf,
    pub concurrency: usize,
    /// How long to wait for a booting host to accept SSH.
    pub connect_wait: Duration,
    pub health: HealthCheck,
    /// Let hosts fetch from their binary caches before we send anything.
    pub substitute: bool,
    /// ssh compression for `nix copy`.
    pub compress: bool,
    /// Where per-host known_hosts files go (the event's state dir).
    pub work_dir: PathBuf,
    /// The event's state directory, whose journal records every host that
    /// is given a system (`venue down` archives those first); None: no record.
    pub journal: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Switched to the new system, which answers its health check.
    Healthy,
    /// Already ran this system, which answers: nothing copied or switched.
    Unchanged,
    /// The new system failed; the host runs its previous generation again.
    RolledBack,
    /// Something failed before or during activation with nothing to roll back to.
    Failed,
    /// The host presented a host key other than the pinned one; nothing was sent.
    Refused,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub host: String,
    pub roles: Vec<Role>,
    pub address: String,
    pub outcome: Outcome,
    pub system: Option<String>,
    pub copied_paths: usize,
    pub copied_bytes: u64,
    pub secrets: usize,
    pub seconds: f64,
    pub message: String,
}

/// Deploys every host that has a system in `systems`.
pub fn deploy(
    hosts: &[Host],
    systems: &BTreeMap<String, PathBuf>,
    secrets: &Secrets,
    opts: &Options,
) -> Vec<Report> {
    let mut reports = crate::parallel::per_host(
        hosts,
        opts.concurrency,
        crate::parallel::SPINNER,
        ProgressBar::new_spinner,
        |h| h.name.clone(),
        |host, bar| {
            let report = deploy_one(host, systems.get(&host.name), secrets, opts, bar);
            bar.finish_with_message(format!("{:?}: {}", report.outcome, report.message));
            report
        },
    );
    reports.sort_by(|a, b| a.host.cmp(&b.host));
    reports
}

fn deploy_one(
    host: &Host,
    system: Option<&PathBuf>,
    secrets: &Secrets,
    opts: &Options,
    bar: &ProgressBar,
) -> Report {
    let started = Instant::now();
    let mut report = Report {
        host: host.name.clone(),
        roles: host.roles.clone(),
        address: host.address.clone(),
        outcome: Outcome::Failed,
        system: system.map(|p| p.display().to_string()),
        copied_paths: 0,
        copied_bytes: 0,
        secrets: 0,
        seconds: 0.0,
        message: String::new(),
    };
    let result = match system {
        None => Err(anyhow::anyhow!("no system was built for this host")),
        Some(system) => run_steps(host, system, secrets, opts, bar, &mut report),
    };
    match result {
        Ok(()) => {}
        Err(e) => {
            report.outcome = if e
                .downcast_ref::<ConnectError>()
                .is_some_and(|c| matches!(c, ConnectError::WrongHostKey { .. }))
            {
                Outcome::Refused
            } else {
                Outcome::Failed
            };
            report.message = format!("{e:#}");
            tracing::error!(host = %host.name, error = %report.message, "deploy failed");
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    report
}

fn run_steps(
    host: &Host,
    system: &Path,
    secrets: &Secrets,
    opts: &Options,
    bar: &ProgressBar,
    report: &mut Report,
) -> Result<()> {
    let pinned = PinnedKey::parse(&host.host_key)
        .with_context(|| format!("the pinned host key of {}", host.name))?;
    let t = Instant::now();
    let step = |name: &str| {
        let ms = t.elapsed().as_millis() as u64;
        tracing::debug!(host = %host.name, step = name, ms, "deploy step done");
    };
    bar.set_message(format!("connecting to {}", host.address));
    let ssh = Ssh::connect(
        &host.address,
        host.port,
        &pinned,
        &opts.user,
        &opts.identity,
        opts.connect_wait,
    )?;
    step("connect");
    if let Some(dir) = &opts.journal {
        crate::model::state::StateDir { dir: dir.clone() }.record_system(
            "deploy",
            &host.name,
            &host.address,
        );
    }

    bar.set_message("comparing stores");
    let closure = closure::closure(system)?;
    let missing = closure::missing_on(&ssh, &closure)?;
    step("compare stores");
    if !missing.is_empty() {
        let sizes = closure::nar_sizes(&missing)?;
        let bytes: u64 = missing.iter().filter_map(|p| sizes.get(p)).sum();
        bar.set_message(format!(
            "copying {} of {} paths ({})",
            missing.len(),
            closure.len(),
            human_bytes(bytes)
        ));
        let known_hosts = known_hosts_file(&opts.work_dir, host, &pinned)?;
        let target = closure::CopyTarget {
            address: &host.address,
            port: host.port,
            user: &opts.user,
            known_hosts: &known_hosts,
            identity: &opts.identity,
        };
        step("size");
        closure::copy(&target, &missing, opts.substitute, opts.compress)?;
        step("copy");
        report.copied_paths = missing.len();
        report.copied_bytes = bytes;
    }

    bar.set_message("uploading secrets");
    activate::hold_secrets_watch(&ssh);
    report.secrets = secrets.upload(&ssh, &host.roles)?;
    step("secrets");

    bar.set_message("activating");
    let system_text = system.display().to_string();
    let activation = activate::activate(&ssh, &host.address, &system_text, &opts.health)?;
    step("activate");
    match activation {
        Activation::Switched => {
            report.outcome = Outcome::Healthy;
            report.message = "switched; healthy".into();
        }
        Activation::AlreadyActive => {
            report.outcome = if report.copied_paths == 0 {
                Outcome::Unchanged
            } else {
                Outcome::Healthy
            };
            report.message = "already running this system; healthy".into();
        }
        Activation::RolledBack { reason } => {
            report.outcome = Outcome::RolledBack;
            report.message = format!("rolled back to the previous generation: {reason}");
        }
    }
    Ok(())
}

/// A known_hosts file holding only this host's pinned key, for `nix copy`'s ssh.
pub(crate) fn known_hosts_file(dir: &Path, host: &Host, pinned: &PinnedKey) -> Result<PathBuf> {
    let dir = dir.join("known_hosts.d");
    std::fs::create_dir_all(&dir)?;
    let file = dir.join(&host.name);
    let pattern = if host.port == 22 {
        host.address.clone()
    } else {
        format!("[{}]:{}", host.address, host.port)
    };
    std::fs::write(&file, format!("{pattern} {}\n", pinned.openssh()))?;
    Ok(file)
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}
