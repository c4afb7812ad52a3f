//! From the installer to the installed system: disko (destroy, format,
//! mount at /mnt), the system closure into /mnt's store, nixos-install,
//! the pinned host key and root's key under /mnt, reboot, and the check
//! that the installed system is the one that runs.
//!
//! The installer's tools are called by absolute path
//! (/run/current-system/sw/bin/…): the installer's, never whatever else a
//! PATH might find (in the testbed, the machine's own `reboot`).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::detect::{self, Found};
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

pub(super) fn partition(run: &Run, ssh: &Ssh, disko: &Path, opts: &Options) -> Result<()> {
    let disko = disko.display().to_string();
    run.bar.set_message("partition: copying the disko script");
    copy(run, opts, "", std::slice::from_ref(&disko)).context("copying the disko script")?;
    run.bar.set_message("partition: running disko");
    ssh.check(&disko).context("disko")?;
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

pub(super) fn nixos_install(ssh: &Ssh, target: &Target) -> Result<()> {
    ssh.check(&format!(
        "{SW}/nixos-install --system {} --no-root-passwd --no-channel-copy",
        target.system.display()
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

/// Reboots detached and waits until the installed system answers (the
/// installer may answer for a moment after the command).
pub(super) fn reboot(run: &Run, ssh: Ssh, opts: &Options) -> Result<()> {
    ssh.check(&format!(
        "nohup sh -c 'sleep 1; {SW}/reboot' </dev/null >/dev/null 2>&1 &"
    ))
    .context("reboot")?;
    drop(ssh);
    let started = Instant::now();
    loop {
        match run.connect(opts, Duration::from_secs(1)) {
            // A session may die under us as the installer goes down.
            Ok(ssh) => match detect::found(&ssh).unwrap_or(Found::Gone) {
                Found::Nixos { .. } => return Ok(()),
                Found::Installer | Found::Gone => {}
                Found::Other { id } => bail!(
                    "{}: after nixos-install and reboot it runs {id}, not NixOS",
                    run.host.name
                ),
            },
            Err(e) if super::kexec::is_wrong_key(&e) => {
                return Err(e.context(format!(
                    "{}: after the reboot another host key answers",
                    run.host.name
                )))
            }
            Err(e) => {
                if started.elapsed() > opts.boot_wait {
                    return Err(e.context(format!(
                        "{}: the installed system did not answer within {:?} of the reboot",
                        run.host.name, opts.boot_wait
                    )));
                }
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
        bail!(
            "{}: runs {} after the install, not {expected}",
            ssh.host,
            if running.is_empty() {
                "no system"
            } else {
                running
            }
        );
    }
    Ok(expected)
}
