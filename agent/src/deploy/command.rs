//! `venue deploy EVENT.toml [--host NAME]`: deploy the event's fleet (as
//! recorded in fleet.json by `venue up`) and its static hosts. `venue up`
//! calls the same after provisioning.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use conference::{Event, Role};

use super::activate::HealthCheck;
use super::secrets::Secrets;
use super::{closure, deploy, Host, Options, Outcome, Report};
use crate::model::fleet::Fleet;
use crate::model::keys;
use crate::model::state::StateDir;
use crate::model::table::render;

pub struct DeployArgs<'a> {
    pub event: &'a Event,
    pub state: &'a StateDir,
    /// Only this host (its name in fleet.json or event.toml).
    pub only: Option<&'a str>,
    /// How long a fresh host may take to accept SSH.
    pub connect_wait: Duration,
}

/// NixOS hosts from this flake that get no certificate from venue (no
/// `[dns]`, no `[tls] certificate`) get one each through nixpkgs'
/// security.acme, which refuses to evaluate without a contact address: say
/// so before anything is rented or built. (`[deploy] systems` brings its own.)
pub fn preflight(event: &Event) -> Result<()> {
    if event.deploy.systems.is_none()
        && !crate::tls::supplied_by_venue(event)
        && event.tls.email.is_none()
    {
        bail!(
            "{}: the hosts need an ACME contact address for their own certificates: set `[tls] email = \"noc@{}\"` (or a `contact = \"mailto:…\"`), or `[dns]` for one certificate from venue",
            event.file.display(),
            event.domain
        );
    }
    Ok(())
}

/// Deploys and returns one report per host; the caller prints them.
pub fn run(args: &DeployArgs) -> Result<Vec<Report>> {
    let prepared = prepare(args)?;
    finish(args, prepared, &[])
}

/// The hosts to deploy and their built systems: what `venue up`'s install
/// phase needs too (it installs the same systems).
pub struct Prepared {
    pub hosts: Vec<Host>,
    /// Host name → system toplevel.
    pub systems: BTreeMap<String, PathBuf>,
    /// Host name → why its system did not build.
    pub unbuilt: BTreeMap<String, String>,
}

/// Reads fleet.json and builds every host's system.
pub fn prepare(args: &DeployArgs) -> Result<Prepared> {
    preflight(args.event)?;
    let fleet_file = args.state.path("fleet.json");
    let fleet: Fleet = serde_json::from_str(
        &std::fs::read_to_string(&fleet_file)
            .with_context(|| format!("read {} (run `venue up` first)", fleet_file.display()))?,
    )
    .with_context(|| format!("{} is not a fleet file", fleet_file.display()))?;
    let mut hosts = hosts(args.event, args.state, &fleet)?;
    if args.event.deploy.systems.is_none() {
        // The flake builds a static host only from its own configuration;
        // without one, its owner deploys it (nixos-rebuild) and we leave it be.
        hosts.retain(|h| {
            let owner_deployed = args
                .event
                .static_hosts
                .iter()
                .any(|s| s.name == h.name && s.configuration.is_none());
            if owner_deployed {
                eprintln!("note: static host {} has no `configuration` in event.toml: its owner deploys it", h.name);
            }
            !owner_deployed
        });
    }
    if let Some(only) = args.only {
        let names: Vec<String> = hosts.iter().map(|h| h.name.clone()).collect();
        hosts.retain(|h| h.name == only);
        if hosts.is_empty() {
            bail!(
                "no host named {only} in this event (hosts: {})",
                names.join(", ")
            );
        }
    }

    let systems_file = systems_file(args.event, args.state)?;
    let names: Vec<String> = hosts.iter().map(|h| h.name.clone()).collect();
    let spinner = indicatif::ProgressBar::new_spinner()
        .with_message(format!("building {} system(s)", names.len()));
    spinner.enable_steady_tick(Duration::from_millis(120));
    // All hosts in one build; when that fails, one build per host, so that a
    // host without a system fails alone and names its own error.
    let mut systems: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut unbuilt: BTreeMap<String, String> = BTreeMap::new();
    match closure::build(&systems_file, &fleet_file, &names) {
        Ok(all) => systems = all,
        Err(_) => {
            for name in &names {
                match closure::build(&systems_file, &fleet_file, std::slice::from_ref(name)) {
                    Ok(one) => systems.extend(one),
                    Err(e) => {
                        unbuilt.insert(name.clone(), format!("{e:#}"));
                    }
                }
            }
        }
    }
    spinner.finish_and_clear();
    Ok(Prepared {
        hosts,
        systems,
        unbuilt,
    })
}

/// Deploys what [`prepare`] found, except `skip` (hosts the caller already
/// reported on, such as those whose install failed).
pub fn finish(args: &DeployArgs, prepared: Prepared, skip: &[String]) -> Result<Vec<Report>> {
    let Prepared {
        mut hosts,
        systems,
        mut unbuilt,
    } = prepared;
    hosts.retain(|h| !skip.contains(&h.name));
    let secrets = Secrets::load_or_create(args.state)?;
    let identity = args.state.path("deploy_ed25519");
    keys::deploy_key(args.state, &args.event.id)?;
    let opts = Options {
        user: "root".into(),
        identity,
        concurrency: args.event.deploy.concurrency as usize,
        connect_wait: args.connect_wait,
        health: HealthCheck {
            port: 80,
            path: "/healthz".into(),
            timeout: args
                .event
                .deploy
                .health_timeout
                .to_std()
                .unwrap_or(Duration::from_secs(120)),
        },
        substitute: true,
        compress: args.event.deploy.compress,
        work_dir: args.state.dir.clone(),
        journal: Some(args.state.dir.clone()),
    };
    let mut reports = deploy(&hosts, &systems, &secrets, &opts);
    for r in &mut reports {
        if let Some(e) = unbuilt.remove(&r.host) {
            r.message = e;
        }
    }
    for r in &reports {
        args.state.journal(
            "deploy",
            &format!(
                "{}: {:?} ({} paths copied)",
                r.host, r.outcome, r.copied_paths
            ),
        );
    }
    Ok(reports)
}

/// True when every host runs its new (or unchanged) system.
pub fn all_healthy(reports: &[Report]) -> bool {
    reports
        .iter()
        .all(|r| matches!(r.outcome, Outcome::Healthy | Outcome::Unchanged))
}

/// The hosts of fleet.json, one per name (a static host may hold several
/// roles), with the host key to pin: the one venue generated for a rented
/// server, the one event.toml gives for a static host.
pub fn hosts(event: &Event, state: &StateDir, fleet: &Fleet) -> Result<Vec<Host>> {
    let mut hosts: Vec<Host> = Vec::new();
    for s in &fleet.servers {
        let role: Role = serde_json::from_value(serde_json::Value::String(s.role.clone()))
            .with_context(|| format!("fleet.json: {} has unknown role {}", s.name, s.role))?;
        if let Some(h) = hosts.iter_mut().find(|h| h.name == s.name) {
            h.roles.push(role);
            continue;
        }
        let (address, port, host_key) = if s.is_static {
            let st = event
                .static_hosts
                .iter()
                .find(|h| h.name == s.name)
                .with_context(|| {
                    format!(
                        "fleet.json names static host {}, which event.toml does not have",
                        s.name
                    )
                })?;
            (st.address.clone(), st.ssh_port, st.host_key.clone())
        } else {
            let key_file = format!("hosts/{}/ssh_host_ed25519_key.pub", s.name);
            let key = state.read(&key_file).with_context(|| {
                format!(
                    "no pinned host key for {} ({} is missing)",
                    s.name,
                    state.path(&key_file).display()
                )
            })?;
            let address = s
                .ipv4
                .clone()
                .or_else(|| s.ipv6.clone())
                .with_context(|| format!("fleet.json: {} has no address", s.name))?;
            (address, 22, key.trim().to_owned())
        };
        hosts.push(Host {
            name: s.name.clone(),
            roles: vec![role],
            address,
            port,
            host_key,
        });
    }
    Ok(hosts)
}

/// The Nix file that maps fleet.json to systems: event.toml's
/// `deploy.systems`, else this flake's `lib.mkFleet`.
fn systems_file(event: &Event, state: &StateDir) -> Result<PathBuf> {
    if let Some(file) = &event.deploy.systems {
        return Ok(file.clone());
    }
    let flake = find_flake(&event.file)
        .context("no deploy.systems in event.toml and no flake.nix above it")?;
    let expr = closure::flake_systems_expr(&flake, &event.file)?;
    state.write("flake-systems.nix", format!("{expr}\n").as_bytes(), 0o644)
}

pub(crate) fn find_flake(event_file: &Path) -> Option<PathBuf> {
    let start = event_file.canonicalize().ok()?;
    start
        .ancestors()
        .skip(1)
        .find(|d| d.join("flake.nix").is_file())
        .map(Path::to_path_buf)
}

/// The summary table.
pub fn table(reports: &[Report]) -> String {
    let mut rows = vec![[
        "HOST", "ROLES", "ADDRESS", "OUTCOME", "PATHS", "SENT", "SECONDS", "MESSAGE",
    ]
    .map(String::from)
    .to_vec()];
    for r in reports {
        rows.push(vec![
            r.host.clone(),
            r.roles
                .iter()
                .map(|x| x.as_str())
                .collect::<Vec<_>>()
                .join(","),
            r.address.clone(),
            serde_json::to_value(r.outcome)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            r.copied_paths.to_string(),
            super::human_bytes(r.copied_bytes),
            format!("{:.1}", r.seconds),
            r.message.clone(),
        ]);
    }
    render(&rows)
}
