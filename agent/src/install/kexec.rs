//! Into the installer: stream the kexec tarball over the pinned SSH (the
//! server never downloads anything), unpack it under /root, run its
//! kexec/run (nixos-images' kexec-run: it carries /etc/ssh/ssh_host_* and
//! root's authorized keys into the installer and kexecs after a few
//! seconds, detached), then wait for the same pinned key to answer from
//! the installer.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::detect::{self, Found};
use super::{Options, Run};
use crate::deploy::ssh::ConnectError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kexec {
    /// The installer answers, with the pinned key.
    Installer,
    /// The old system answered throughout, or came back: kexec did not take.
    OldSystem,
}

pub(super) fn kexec(run: &Run, tarball: &Path, opts: &Options) -> Result<Kexec> {
    let ssh = run.connect(opts, opts.boot_wait)?;
    let mut tarball = std::fs::File::open(tarball)
        .with_context(|| format!("open the kexec tarball {}", tarball.display()))?;
    run.bar.set_message("kexec: uploading the installer");
    let out = ssh.run_with_reader("rm -rf /root/kexec && tar -C /root -xzf -", &mut tarball)?;
    if out.status != 0 {
        bail!(
            "{}: unpacking the kexec tarball failed: {}",
            run.host.name,
            out.stderr.trim()
        );
    }
    run.bar.set_message("kexec: running kexec/run");
    let out = ssh.run("TMPDIR=/root/kexec setsid --wait /root/kexec/run")?;
    if out.status != 0 {
        bail!(
            "{}: /root/kexec/run exited with {}: {}",
            run.host.name,
            out.status,
            last_lines(&out.stderr)
        );
    }
    drop(ssh);
    run.bar.set_message("kexec: waiting for the installer");
    wait_for_installer(run, opts)
}

/// Polls the host until the installer answers (with the pinned key, or we
/// refuse), the old system comes back after going away, or the old system
/// went on answering for `kexec_wait`.
fn wait_for_installer(run: &Run, opts: &Options) -> Result<Kexec> {
    let started = Instant::now();
    let mut went_down = false;
    loop {
        match run.connect(opts, Duration::from_secs(1)) {
            // A session may die under us as the old system goes down.
            Ok(ssh) => match detect::found(&ssh).unwrap_or(Found::Gone) {
                Found::Gone => went_down = true,
                Found::Installer => return Ok(Kexec::Installer),
                Found::Other { id } => {
                    if went_down || started.elapsed() > opts.kexec_wait {
                        tracing::warn!(os = %id, went_down, "kexec did not take");
                        return Ok(Kexec::OldSystem);
                    }
                }
                Found::Nixos { .. } => bail!(
                    "{}: after kexec it runs an installed NixOS, not the installer",
                    run.host.name
                ),
            },
            Err(e) => {
                if is_wrong_key(&e) {
                    return Err(e.context(format!(
                        "{}: after kexec another host key answers: nothing sent",
                        run.host.name
                    )));
                }
                went_down = true;
                if started.elapsed() > opts.boot_wait {
                    return Err(e.context(format!(
                        "{}: the installer did not answer within {:?} of kexec",
                        run.host.name, opts.boot_wait
                    )));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

pub(super) fn is_wrong_key(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<ConnectError>()
            .is_some_and(|c| matches!(c, ConnectError::WrongHostKey { .. }))
    })
}

fn last_lines(s: &str) -> String {
    let lines: Vec<&str> = s.trim().lines().collect();
    lines[lines.len().saturating_sub(5)..].join("\n")
}
