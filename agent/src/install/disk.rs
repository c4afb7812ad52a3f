//! From the installer to the installed system: disko (destroy, format,
//! mount at /mnt), the system closure into /mnt's store, nixos-install,
//! the pinned host key and root's key under /mnt, reboot, and the check
//! that the installed system is the one that runs.
//!
//! The installer's tools are called by absolute path
//! (/run/current-system/sw/bin/…): the installer's, never whatever else a
//! PATH might find (in the testbed, the machine's own `reboot`).
//!
//! Every step may run again (a killed agent, a retry): disko only when this
//! installer boot has not laid the disk out yet (its mark), under a lock that
//! a disko or nixos-install an earlier run left running holds until it ends;
//! nix copy sends only what /mnt's store lacks (a path cut off half-way is
//! not valid there, and is sent again); nixos-install sets the same profile;
//! the keys are written whole or not at all.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::detect::{self, mark, Found};
use super::retry;
use super::wait::Wait;
use super::{Options, Run, Target};
use crate::deploy::closure::{self, CopyTarget};
use crate::deploy::ssh::{PinnedKey, Ssh};

const SW: &str = "/run/current-system/sw/bin";

/// `local?root=/mnt`, url-encoded as nixos-anywhere writes it.
const MNT_STORE: &str = "?remote-store=local%3Froot%3D%2Fmnt";

/// nix copy of `paths` to the host (its store, or `query`'s), pinned key only.
fn copy(run: &Run, opts: &Options, query: &str, paths: &[String]) -> Result<()> {
    let pinned = run.pinned()?;
    let known_hosts = crate::deploy::known_hosts_file(&opts.work_dir, &run.host, &pinned)?;
    let target = CopyTarget {
        address: &run.host.address,
        port: run.host.port,
        user: &opts.user,
        known_hosts: &known_hosts,
        identity: &opts.identity,
    };
    closure::copy_to_store(&target, query, paths, true, true)
}

/// The installer's steps take this lock: a step an earlier (killed) run
/// left running ends before the same step starts again.
const LOCK: &str = "/run/venue-install.lock";

/// `command` under [`LOCK`], waiting for it at most `opts.boot_wait`.
fn locked(opts: &Options, command: &str) -> String {
    format!(
        "flock -w {} {LOCK} sh -c '{}'",
        opts.boot_wait.as_secs().max(1),
        command.replace('\'', "'\\''")
    )
}

/// Runs the host's disko script unless `partitioned` (what this installer
/// boot's mark says ran to its end, with /mnt still mounted) is the same
/// script: destroy, format and mount again is safe, but wipes what an
/// earlier run copied.
pub(super) fn partition(
    run: &Run,
    ssh: &Ssh,
    disko: &Path,
    opts: &Options,
    partitioned: Option<&str>,
) -> Result<()> {
    let disko = disko.display().to_string();
    if partitioned == Some(disko.as_str()) {
        tracing::info!(
            disko,
            "the disk was laid out in this installer boot already"
        );
        run.bar
            .set_message("partition: laid out already in this boot");
        return Ok(());
    }
    run.bar.set_message("partition: copying the disko script");
    copy(run, opts, "", std::slice::from_ref(&disko)).context("copying the disko script")?;
    run.bar
        .set_message("partition: running disko (after any disko an earlier run left running)");
    ssh.check(&locked(
        opts,
        &format!(
            "rm -f {m} && {disko} && echo {disko} > {m}",
            m = mark::DISKO
        ),
    ))
    .context("disko")?;
    Ok(())
}

pub(super) fn copy_system(run: &Run, target: &Target, opts: &Options) -> Result<()> {
    let system = target.system.display().to_string();
    let paths = closure::closure(&target.system)?;
    let sizes = closure::nar_sizes(&paths).unwrap_or_default();
    run.bar.set_message(format!(
        "copying the system to /mnt ({} paths, {})",
        paths.len(),
        crate::deploy::human_bytes(sizes.values().sum())
    ));
    copy(run, opts, MNT_STORE, &[system]).context("copying the system into /mnt")
}

pub(super) fn nixos_install(ssh: &Ssh, target: &Target, opts: &Options) -> Result<()> {
    ssh.check(&locked(
        opts,
        &format!(
            "{SW}/nixos-install --system {} --no-root-passwd --no-channel-copy",
            target.system.display()
        ),
    ))
    .context("nixos-install")?;
    // The pinned key, so that the installed system answers as the server
    // did; through stdin, never on a command line.
    let public = PinnedKey::parse(&target.host.host_key)?.openssh();
    put(
        ssh,
        "/mnt/etc/ssh/ssh_host_ed25519_key",
        "600",
        target.host_key_private.as_bytes(),
    )?;
    put(
        ssh,
        "/mnt/etc/ssh/ssh_host_ed25519_key.pub",
        "644",
        format!("{public}\n").as_bytes(),
    )?;
    put(
        ssh,
        "/mnt/root/.ssh/authorized_keys",
        "600",
        format!("{}\n", target.authorized_key.trim()).as_bytes(),
    )?;
    Ok(())
}

/// Writes `content` to `path` with `mode`, whole or not at all.
fn put(ssh: &Ssh, path: &str, mode: &str, content: &[u8]) -> Result<()> {
    let dir = path.rsplit_once('/').map(|(d, _)| d).unwrap_or("/");
    let command = format!(
        "umask 077 && mkdir -p {dir} && cat > {path}.venue-tmp && chmod {mode} {path}.venue-tmp && mv {path}.venue-tmp {path}"
    );
    let out = ssh.run_with_input(&command, content)?;
    if out.status != 0 {
        bail!("{}: writing {path}: {}", ssh.host, out.stderr.trim());
    }
    Ok(())
}

/// Reboots detached (marked first: a later run that finds the installer
/// waits for this reboot instead of partitioning a disk about to boot) and
/// waits until the installed system answers.
pub(super) fn reboot(run: &Run, ssh: Ssh, opts: &Options) -> Result<()> {
    ssh.check(&format!(
        "date +%s > {} && nohup sh -c 'sleep 1; {SW}/reboot' </dev/null >/dev/null 2>&1 &",
        mark::REBOOT
    ))
    .context("reboot")?;
    drop(ssh);
    wait_for_system(run, opts, Duration::ZERO)
}

/// Waits until the installed system answers, `already` after the reboot
/// was asked for. The installer may answer for a moment after the command;
/// one that goes on answering for `kexec_wait` did not reboot (the next
/// try reboots it again).
pub(super) fn wait_for_system(run: &Run, opts: &Options, already: Duration) -> Result<()> {
    let mut wait = Wait::new(
        run.bar,
        "reboot: waiting for the installed system".into(),
        opts.boot_wait,
        already,
    );
    loop {
        match run.connect(opts, Duration::from_secs(1)) {
            // A session may die under us as the installer goes down.
            Ok(ssh) => match detect::found(&ssh).unwrap_or(Found::Gone) {
                Found::Nixos { .. } => return Ok(()),
                Found::Installer(_) if wait.elapsed() > opts.kexec_wait => bail!(
                    "{}: the installer still answers {}s after the reboot was asked for",
                    run.host.name,
                    wait.elapsed().as_secs()
                ),
                Found::Installer(_) => wait.tick("the installer still answers"),
                Found::Gone => wait.tick("going down"),
                Found::Other { id, .. } => {
                    return Err(retry::Final(format!(
                        "{}: after nixos-install and reboot it runs {id}, not NixOS",
                        run.host.name
                    ))
                    .into())
                }
            },
            Err(e) if super::kexec::is_wrong_key(&e) => {
                return Err(e.context(format!(
                    "{}: after the reboot another host key answers",
                    run.host.name
                )))
            }
            Err(e) => {
                if wait.expired() {
                    return Err(retry::Final(format!(
                        "{}: the installed system did not answer within {:?} of the reboot: {e:#}",
                        run.host.name, opts.boot_wait
                    ))
                    .into());
                }
                wait.tick("no answer yet");
            }
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The running system must be the one installed.
pub(super) fn check_system(ssh: &Ssh, target: &Target) -> Result<String> {
    let out = ssh.run("readlink /run/current-system")?;
    let running = out.stdout.trim();
    let expected = target.system.display().to_string();
    if out.status != 0 || running != expected {
        return Err(retry::Final(format!(
            "{}: runs {} after the install, not {expected}",
            ssh.host,
            if running.is_empty() {
                "no system"
            } else {
                running
            }
        ))
        .into());
    }
    Ok(expected)
}
