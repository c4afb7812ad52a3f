//! Into the installer: stream the kexec tarball over the pinned SSH (the
//! server never downloads anything), unpack it under /root, run its
//! kexec/run (nixos-images' kexec-run: it carries /etc/ssh/ssh_host_* and
//! root's authorized keys into the installer and kexecs after a few
//! seconds, detached), then wait for the same pinned key to answer from
//! the installer. The old system is marked before kexec/run starts
//! (detect::mark::KEXEC), so that a later run waits for this kexec.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::detect::{self, Found};
use super::retry;
use super::wait::Wait;
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
    let ssh = run.connect_waiting(opts, "kexec")?;
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
    // The mark goes with the command: a run that finds it waits for this
    // kexec instead of uploading again to a host about to go away.
    let out = ssh.run(&format!(
        "date +%s > {mark} && TMPDIR=/root/kexec setsid --wait /root/kexec/run || {{ s=$?; rm -f {mark}; exit $s; }}",
        mark = detect::mark::KEXEC
    ))?;
    if out.status != 0 {
        bail!(
            "{}: /root/kexec/run exited with {}: {}",
            run.host.name,
            out.status,
            last_lines(&out.stderr)
        );
    }
    drop(ssh);
    wait_for_installer(run, opts, Duration::ZERO)
}

/// Polls the host until the installer answers (with the pinned key, or we
/// refuse), the old system comes back after going away, or the old system
/// went on answering for `kexec_wait`; `already` passed since kexec/run
/// (an earlier run started it).
pub(super) fn wait_for_installer(run: &Run, opts: &Options, already: Duration) -> Result<Kexec> {
    let mut wait = Wait::new(
        run.bar,
        "kexec: waiting for the installer".into(),
        opts.boot_wait,
        already,
    );
    let mut went_down = false;
    loop {
        match run.connect(opts, Duration::from_secs(1)) {
            // A session may die under us as the old system goes down.
            Ok(ssh) => match detect::found(&ssh).unwrap_or(Found::Gone) {
                Found::Gone => went_down = true,
                Found::Installer(_) => return Ok(Kexec::Installer),
                Found::Other { id, .. } => {
                    if went_down || wait.elapsed() > opts.kexec_wait {
                        tracing::warn!(os = %id, went_down, "kexec did not take");
                        return Ok(Kexec::OldSystem);
                    }
                    wait.tick(&format!("{id} still answers"));
                }
                Found::Nixos { .. } => {
                    return Err(retry::Final(format!(
                        "{}: after kexec it runs an installed NixOS, not the installer",
                        run.host.name
                    ))
                    .into())
                }
            },
            Err(e) => {
                if is_wrong_key(&e) {
                    return Err(e.context(format!(
                        "{}: after kexec another host key answers: nothing sent",
                        run.host.name
                    )));
                }
                went_down = true;
                if wait.expired() {
                    return Err(retry::Final(format!(
                        "{}: the installer did not answer within {:?} of kexec: {e:#}",
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
