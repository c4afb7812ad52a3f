//! The install phase: rented servers that boot a stock image (Ubuntu) become
//! NixOS over the pinned SSH, between provisioning and deploying. These are
//! nixos-anywhere's steps, done here because nixos-anywhere turns host key
//! checking off: kexec into a NixOS installer, partition with disko, copy the
//! system into /mnt, the host's secrets, nixos-install, put the pinned host
//! key in place, reboot.
//! Every connection checks the pinned key; a host that presents another key
//! gets nothing more.
//!
//! The host's secrets and the event's certificate go to the new system's
//! disk before the reboot (as nixos-anywhere's `--extra-files`), so its
//! first boot starts the services that read them; `venue deploy` writes
//! the same files again.
//!
//! Resumable from what the host is (detect.rs): another OS → kexec; the
//! installer → partition and on; NixOS → done ("already", or "snapshot" for
//! a server booted from a venue image). The agent may be killed at any
//! moment, so each step marks the host as it starts (detect::mark): a run
//! that finds a host another run was kexecing or rebooting waits for it
//! (bounded, and shown: wait.rs) instead of starting over on a host that is
//! about to go away, and a disk that disko laid out in this installer boot
//! is not wiped again. A transient failure (a connection reset, sshd
//! refusing while a host boots) is tried again from what the host is then
//! (retry.rs).

pub mod artifacts;
pub mod detect;
pub mod disk;
pub mod kexec;
pub mod report;
pub mod retry;
pub mod wait;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use indicatif::ProgressBar;
use serde::Serialize;

use crate::deploy::secrets::Secrets;
use crate::deploy::ssh::{ConnectError, PinnedKey, Ssh};
use crate::deploy::Host;
use crate::model::state::StateDir;
use detect::Found;

/// One server to install.
#[derive(Clone)]
pub struct Target {
    pub host: Host,
    /// The pinned host key's private half (`venue up` generated it and gave
    /// it to the server in user_data): written to the installed system, so
    /// the key stays the same across the install. Never printed.
    pub host_key_private: String,
    /// Root's authorized key on the installed system (the deploy key).
    pub authorized_key: String,
    /// The system toplevel to install (the one deploy activates).
    pub system: PathBuf,
    /// The server was created from a venue snapshot.
    pub from_snapshot: bool,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("host", &self.host.name)
            .field("system", &self.system)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    pub user: String,
    pub identity: PathBuf,
    /// Where per-host known_hosts files go (the event's state dir).
    pub work_dir: PathBuf,
    pub concurrency: usize,
    /// How long a booting server (or installer, or installed system) may
    /// take to answer SSH.
    pub boot_wait: Duration,
    /// How long the old system may go on answering after kexec/run (or the
    /// installer after its reboot) before the switch counts as failed
    /// (nixos-images kexecs after 6 s).
    pub kexec_wait: Duration,
    /// Reboot into the installed system and check it. Off only for
    /// `venue machine install --no-reboot` (the VM test boots the disk itself).
    pub reboot: bool,
}

/// What the install phase leaves on the new system beside its host key,
/// and where it journals. Empty for `venue machine install` and the image
/// build (no event's secrets).
#[derive(Clone, Copy, Default)]
pub struct FirstBoot<'a> {
    /// The event's secrets: each host's (the files deploy would upload,
    /// `Secrets::files_for`) are written to the new system's secrets
    /// directory before the reboot, as nixos-anywhere's `--extra-files`
    /// does, so that its first boot starts the services that read them.
    pub secrets: Option<&'a Secrets>,
    /// The event's state directory: its journal records each host that is
    /// given a system (`StateDir::record_system`).
    pub state: Option<&'a StateDir>,
}

/// Where the new system's secrets go: deploy's directory, on the disk
/// mounted at /mnt.
pub const MNT_SECRETS_DIR: &str = "/mnt/var/lib/venue/secrets";

/// How a host got NixOS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum How {
    /// This run installed it.
    Installed,
    /// Booted from a venue snapshot: nothing to install.
    Snapshot,
    /// It ran NixOS already (a re-run, or an installed server).
    Already,
    /// Not installed: see the message.
    Failed,
    /// A host key other than the pinned one answered: nothing was sent.
    Refused,
}

#[derive(Debug, Clone, Serialize)]
pub struct HostReport {
    pub host: String,
    pub install: How,
    /// Where the host answers now (a recreated server has a new address).
    pub address: String,
    /// The system it runs after the phase, from /run/current-system.
    pub system: Option<String>,
    /// Times the server was deleted and created again (kexec never took).
    pub recreated: u32,
    /// Times the install was taken up again after a transient failure.
    pub resumed: u32,
    /// (phase, seconds), in order.
    pub phases: Vec<(String, f64)>,
    pub seconds: f64,
    pub message: String,
}

/// Deletes the server `name` and creates it again under the same name,
/// labels, user_data and keys; returns its new address. From `venue up`'s
/// cloud code.
pub type Recreate<'a> = &'a (dyn Fn(&str) -> Result<String> + Sync);

/// Kexec attempts on one server before it is recreated.
const KEXEC_TRIES: u32 = 2;
/// Servers made again for one host before giving up.
const RECREATE_MAX: u32 = 1;
/// Looks at what a host is, in one try of its install (kexecs and waits
/// between them).
const ROUNDS: u32 = 6;

/// Installs every target, `opts.concurrency` at a time, one progress line each.
pub fn install(
    targets: &[Target],
    artifacts: &artifacts::Lazy,
    opts: &Options,
    recreate: Option<Recreate<'_>>,
) -> Vec<HostReport> {
    install_with(targets, artifacts, opts, recreate, FirstBoot::default())
}

/// [`install`], leaving `first_boot`'s files on each new system.
pub fn install_with(
    targets: &[Target],
    artifacts: &artifacts::Lazy,
    opts: &Options,
    recreate: Option<Recreate<'_>>,
    first_boot: FirstBoot<'_>,
) -> Vec<HostReport> {
    let mut reports = crate::parallel::per_host(
        targets,
        opts.concurrency,
        crate::parallel::SPINNER,
        ProgressBar::new_spinner,
        |t| t.host.name.clone(),
        |target, bar| {
            let report = install_one_with(target, artifacts, opts, recreate, first_boot, bar);
            bar.finish_with_message(format!("{:?}: {}", report.install, report.message));
            report
        },
    );
    reports.sort_by(|a, b| a.host.cmp(&b.host));
    reports
}

/// The phase for one server; never panics, always reports.
pub fn install_one(
    target: &Target,
    artifacts: &artifacts::Lazy,
    opts: &Options,
    recreate: Option<Recreate<'_>>,
    bar: &ProgressBar,
) -> HostReport {
    install_one_with(target, artifacts, opts, recreate, FirstBoot::default(), bar)
}

fn install_one_with(
    target: &Target,
    artifacts: &artifacts::Lazy,
    opts: &Options,
    recreate: Option<Recreate<'_>>,
    first_boot: FirstBoot<'_>,
    bar: &ProgressBar,
) -> HostReport {
    let span = tracing::info_span!("install", host = %target.host.name);
    let _entered = span.enter();
    let started = Instant::now();
    let mut run = Run {
        host: target.host.clone(),
        phases: Vec::new(),
        recreated: 0,
        bar,
    };
    let mut resumed = 0;
    let result = loop {
        match run.steps(target, artifacts, opts, recreate, first_boot) {
            Err(e) if resumed < retry::RESUMES && !retry::is_final(&e) => {
                resumed += 1;
                let delay = retry::backoff(resumed);
                let error = format!("{e:#}");
                tracing::warn!(
                    resume = resumed,
                    of = retry::RESUMES,
                    ?delay,
                    error = %error,
                    "install step failed: taking it up again from what the host is"
                );
                bar.set_message(format!(
                    "failed ({}): again in {}s ({resumed} of {})",
                    error.lines().next().unwrap_or_default(),
                    delay.as_secs(),
                    retry::RESUMES
                ));
                std::thread::sleep(delay);
            }
            other => break other,
        }
    };
    let (install, system, message) = match result {
        Ok((how, system)) => {
            let message = match how {
                How::Installed => "installed".to_owned(),
                How::Snapshot => "booted from a venue image".to_owned(),
                _ => "runs NixOS already".to_owned(),
            };
            (how, system, message)
        }
        Err(e) => {
            let refused = e.chain().any(|c| {
                c.downcast_ref::<ConnectError>()
                    .is_some_and(|c| matches!(c, ConnectError::WrongHostKey { .. }))
            });
            let message = format!("{e:#}");
            tracing::error!(error = %message, "install failed");
            (
                if refused { How::Refused } else { How::Failed },
                None,
                message,
            )
        }
    };
    HostReport {
        host: target.host.name.clone(),
        install,
        address: run.host.address.clone(),
        system,
        recreated: run.recreated,
        resumed,
        phases: run.phases,
        seconds: round(started.elapsed().as_secs_f64()),
        message,
    }
}

/// One server's install as it goes: where it is, and the phases' times.
struct Run<'a> {
    host: Host,
    phases: Vec<(String, f64)>,
    recreated: u32,
    bar: &'a ProgressBar,
}

impl Run<'_> {
    /// Times `f` as phase `name`.
    fn phase<T>(&mut self, name: &str, f: impl FnOnce(&Self) -> Result<T>) -> Result<T> {
        self.bar.set_message(name.to_owned());
        let t = Instant::now();
        let out = f(self);
        let secs = t.elapsed().as_secs_f64();
        tracing::debug!(phase = name, secs, ok = out.is_ok(), "install phase");
        match self.phases.iter_mut().find(|(n, _)| n == name) {
            Some((_, s)) => *s = round(*s + secs),
            None => self.phases.push((name.to_owned(), round(secs))),
        }
        out
    }

    fn pinned(&self) -> Result<PinnedKey> {
        PinnedKey::parse(&self.host.host_key)
            .with_context(|| format!("the pinned host key of {}", self.host.name))
    }

    fn connect(&self, opts: &Options, wait: Duration) -> Result<Ssh> {
        Ok(Ssh::connect(
            &self.host.address,
            self.host.port,
            &self.pinned()?,
            &opts.user,
            &opts.identity,
            wait,
        )?)
    }

    /// Connects, waiting up to `opts.boot_wait` for a host that boots (or
    /// `what` it is doing), and showing the wait on the host's line.
    fn connect_waiting(&self, opts: &Options, what: &str) -> Result<Ssh> {
        let pinned = self.pinned()?;
        let mut wait = wait::Wait::new(
            self.bar,
            format!("{what}: waiting for SSH"),
            opts.boot_wait,
            Duration::ZERO,
        );
        loop {
            let window = wait.left().min(Duration::from_secs(5));
            match Ssh::connect(
                &self.host.address,
                self.host.port,
                &pinned,
                &opts.user,
                &opts.identity,
                window,
            ) {
                Ok(ssh) => return Ok(ssh),
                Err(ConnectError::Unreachable { last, .. }) if !wait.expired() => wait.tick(&last),
                Err(ConnectError::Unreachable { host, last, .. }) => {
                    return Err(ConnectError::Unreachable {
                        host,
                        waited: wait.elapsed(),
                        last,
                    })
                    .with_context(|| format!("{}: {what}", self.host.name))
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn steps(
        &mut self,
        target: &Target,
        artifacts: &artifacts::Lazy,
        opts: &Options,
        recreate: Option<Recreate<'_>>,
        first_boot: FirstBoot<'_>,
    ) -> Result<(How, Option<String>)> {
        // Each round ends with the host one step further (or waited for);
        // a host that keeps changing what it runs is given up on.
        for _ in 0..ROUNDS {
            let (ssh, found) = self.phase("connect", |r| {
                let ssh = r.connect_waiting(opts, "connect")?;
                let found = detect::found(&ssh)?;
                Ok((ssh, found))
            })?;
            match found {
                Found::Nixos { system } => {
                    let how = if target.from_snapshot {
                        How::Snapshot
                    } else {
                        How::Already
                    };
                    return Ok((how, system));
                }
                Found::Gone => anyhow::bail!(
                    "{}: the connection broke while reading /etc/os-release",
                    self.host.name
                ),
                Found::Other { id, kexec_started } => {
                    drop(ssh);
                    if let Some(age) = kexec_started.filter(|a| secs(*a) < opts.kexec_wait) {
                        // An earlier run started kexec/run here: the
                        // installer is on its way, or the kexec failed.
                        tracing::info!(os = %id, age, "kexec started {age}s ago by an earlier run");
                        if self.phase("kexec", |r| kexec::wait_for_installer(r, opts, secs(age)))?
                            == kexec::Kexec::Installer
                        {
                            continue;
                        }
                    }
                    self.kexec(&id, artifacts, opts, recreate)?;
                    // The installer answers with the pinned key: look again.
                    continue;
                }
                Found::Installer(marks) => {
                    if let Some(age) = marks.reboot_started {
                        if secs(age) < opts.kexec_wait {
                            // An earlier run asked for the reboot: wait
                            // for it, never partition a disk about to boot.
                            drop(ssh);
                            tracing::info!(age, "reboot asked for {age}s ago by an earlier run");
                            self.phase("reboot", |r| disk::wait_for_system(r, opts, secs(age)))?;
                            let system = self.phase("check", |r| {
                                let ssh = r.connect_waiting(opts, "check")?;
                                disk::check_system(&ssh, target)
                            })?;
                            return Ok((How::Installed, Some(system)));
                        }
                        tracing::warn!(
                            age,
                            "the installer still runs {age}s after the reboot was asked for: installing on"
                        );
                    }
                    return self.install(ssh, &marks, target, artifacts, opts, first_boot);
                }
            }
        }
        anyhow::bail!(
            "{}: after {ROUNDS} rounds of kexec and waits it still is not the installer",
            self.host.name
        )
    }

    /// From another OS into the installer: kexec, tried again and, when it
    /// never takes, on a server made again.
    fn kexec(
        &mut self,
        os: &str,
        artifacts: &artifacts::Lazy,
        opts: &Options,
        recreate: Option<Recreate<'_>>,
    ) -> Result<()> {
        let kexec = self.phase("build installer", |_| built(artifacts))?.kexec;
        tracing::info!(os, "not NixOS: kexec into the installer");
        for attempt in 1..=KEXEC_TRIES {
            match self.phase("kexec", |r| kexec::kexec(r, &kexec, opts))? {
                kexec::Kexec::Installer => return Ok(()),
                kexec::Kexec::OldSystem => {
                    tracing::warn!(attempt, "the old system still answers after kexec")
                }
            }
        }
        let Some(recreate) = recreate.filter(|_| self.recreated < RECREATE_MAX) else {
            return Err(retry::Final(format!(
                "kexec into the installer failed {KEXEC_TRIES} times (the old system kept answering){}",
                if recreate.is_some() { " on a recreated server too" } else { "" }
            ))
            .into());
        };
        let name = self.host.name.clone();
        let address = self.phase("recreate", |_| {
            recreate(&name).map_err(|e| {
                retry::Final(format!(
                    "recreating {name} after {KEXEC_TRIES} failed kexecs: {e:#}"
                ))
                .into()
            })
        })?;
        self.recreated += 1;
        self.host.address = address;
        Ok(())
    }

    /// In the installer, with the pinned key: disko (unless this boot laid
    /// the disk out already), the system into /mnt, the secrets,
    /// nixos-install, reboot, check. Each step is safe to run again.
    fn install(
        &mut self,
        ssh: Ssh,
        marks: &detect::Marks,
        target: &Target,
        artifacts: &artifacts::Lazy,
        opts: &Options,
        first_boot: FirstBoot<'_>,
    ) -> Result<(How, Option<String>)> {
        let disko = self
            .phase("build installer", |_| built(artifacts))?
            .disko
            .get(&self.host.name)
            .cloned()
            .ok_or_else(|| {
                retry::Final(format!(
                    "the installer has no disko script for {}",
                    self.host.name
                ))
            })?;
        if let Some(state) = first_boot.state {
            state.record_system("install", &self.host.name, &self.host.address);
        }
        self.phase("partition", |r| {
            disk::partition(r, &ssh, &disko, opts, marks.partitioned.as_deref())
        })?;
        self.phase("copy system", |r| disk::copy_system(r, target, opts))?;
        if let Some(secrets) = first_boot.secrets {
            // Before nixos-install, where nixos-anywhere copies its
            // extra files: the system's first activation finds them.
            self.phase("secrets", |_| {
                secrets
                    .upload_to(&ssh, &target.host.roles, MNT_SECRETS_DIR)
                    .context("writing the host's secrets to the new system")
            })?;
        }
        self.phase("nixos-install", |_| disk::nixos_install(&ssh, target, opts))?;
        if !opts.reboot {
            return Ok((How::Installed, None));
        }
        self.phase("reboot", |r| disk::reboot(r, ssh, opts))?;
        let system = self.phase("check", |r| {
            let ssh = r.connect_waiting(opts, "check")?;
            disk::check_system(&ssh, target)
        })?;
        Ok((How::Installed, Some(system)))
    }
}

/// The installer's artifacts; a failed build is final.
fn built(artifacts: &artifacts::Lazy) -> Result<artifacts::Artifacts> {
    artifacts
        .get()
        .map_err(|e| retry::Final(format!("{e:#}")).into())
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn round(secs: f64) -> f64 {
    (secs * 10.0).round() / 10.0
}

/// `VENUE_BOOT_WAIT_MS`: how long `venue up` waits for a server to answer
/// SSH (booting, kexecing, rebooting); ten minutes unless set.
pub fn boot_wait_from_env() -> Duration {
    std::env::var("VENUE_BOOT_WAIT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis)
        .unwrap_or(Duration::from_secs(10 * 60))
}

/// `VENUE_KEXEC_WAIT_MS`: the testbed's toy kexec takes a second, a real
/// one six; tests of a kexec that never happens shorten the wait.
pub fn kexec_wait_from_env() -> Duration {
    std::env::var("VENUE_KEXEC_WAIT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis)
        .unwrap_or(Duration::from_secs(90))
}

/// `venue up`'s install phase: every rented server of the fleet (static
/// hosts are their owners' business) whose system was built. Builds the
/// kexec tarball and the disko scripts first.
pub fn for_fleet(
    event: &conference::Event,
    state: &crate::model::state::StateDir,
    fleet: &crate::model::fleet::Fleet,
    prepared: &crate::deploy::command::Prepared,
    from_snapshot: &[String],
    recreate: Option<Recreate<'_>>,
) -> Result<Vec<HostReport>> {
    use crate::model::keys;
    let rented: Vec<&Host> = prepared
        .hosts
        .iter()
        .filter(|h| {
            fleet
                .servers
                .iter()
                .any(|s| s.name == h.name && !s.is_static)
                && prepared.systems.contains_key(&h.name)
        })
        .collect();
    if rented.is_empty() {
        return Ok(Vec::new());
    }
    let names: Vec<String> = rented.iter().map(|h| h.name.clone()).collect();
    let fleet_json = state.path("fleet.json");
    // Shown on each waiting host's line as its "build installer" phase.
    let built = artifacts::Lazy::new(|| {
        let flake = crate::deploy::command::find_flake(&event.file);
        artifacts::build(event, &fleet_json, flake.as_deref(), &names)
    });
    let deploy_key = keys::deploy_key(state, &event.id)?;
    // Made here if `venue up` has not yet: the certificate is already in
    // the state directory (up gets it before the install phase).
    let secrets = Secrets::load_or_create(state)?;
    let mut targets = Vec::new();
    for h in rented {
        targets.push(Target {
            host: h.clone(),
            host_key_private: keys::host_key(state, &h.name)?.private,
            authorized_key: deploy_key.public.clone(),
            system: prepared.systems[&h.name].clone(),
            from_snapshot: from_snapshot.contains(&h.name),
        });
    }
    let opts = Options {
        user: "root".into(),
        identity: state.path("deploy_ed25519"),
        work_dir: state.dir.clone(),
        concurrency: event.deploy.concurrency as usize,
        boot_wait: boot_wait_from_env(),
        kexec_wait: kexec_wait_from_env(),
        reboot: true,
    };
    let first_boot = FirstBoot {
        secrets: Some(&secrets),
        state: Some(state),
    };
    let reports = install_with(&targets, &built, &opts, recreate, first_boot);
    for r in &reports {
        // A step: tests stop `venue up` here, between install and deploy.
        state.step(
            "install",
            &format!(
                "{}: {:?} in {:.1}s {}",
                r.host, r.install, r.seconds, r.message
            ),
        );
    }
    Ok(reports)
}

/// Deploy reports for the hosts whose install failed or was refused: they
/// are not deployed.
pub fn not_installed(reports: &[HostReport], hosts: &[Host]) -> Vec<crate::deploy::Report> {
    use crate::deploy::Outcome;
    reports
        .iter()
        .filter(|r| matches!(r.install, How::Failed | How::Refused))
        .map(|r| crate::deploy::Report {
            host: r.host.clone(),
            roles: hosts
                .iter()
                .find(|h| h.name == r.host)
                .map(|h| h.roles.clone())
                .unwrap_or_default(),
            address: r.address.clone(),
            outcome: if r.install == How::Refused {
                Outcome::Refused
            } else {
                Outcome::Failed
            },
            system: None,
            copied_paths: 0,
            copied_bytes: 0,
            secrets: 0,
            seconds: 0.0,
            message: format!("install: {}", r.message),
        })
        .collect()
}
