//! Activation as nixos-rebuild does it: point the system profile at the new
//! closure, run its switch-to-configuration, then check the role's health
//! endpoint over a fresh connection. When that fails, go back to the
//! previous generation.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::ssh::Ssh;

pub const PROFILE: &str = "/nix/var/nix/profiles/system";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Activation {
    /// The new system runs and answers.
    Switched,
    /// The host already ran this system and answers.
    AlreadyActive,
    /// The new system failed; the previous one is active again.
    RolledBack { reason: String },
}

/// Where the health check looks.
#[derive(Debug, Clone)]
pub struct HealthCheck {
    pub port: u16,
    pub path: String,
    pub timeout: Duration,
}

pub fn current_system(ssh: &Ssh) -> Result<Option<String>> {
    let out = ssh.run(&format!("readlink -f {PROFILE}"))?;
    let path = out.stdout.trim();
    Ok((out.status == 0 && path.starts_with("/nix/store/")).then(|| path.to_owned()))
}

pub fn activate(
    ssh: &Ssh,
    address: &str,
    system: &str,
    health: &HealthCheck,
) -> Result<Activation> {
    let previous = current_system(ssh)?;
    // A short look, not the whole timeout: a freshly installed host runs this
    // system without its secrets, so its services do not answer until switched.
    let glance = HealthCheck {
        timeout: health.timeout.min(Duration::from_secs(2)),
        ..health.clone()
    };
    if previous.as_deref() == Some(system) && check_health(address, &glance).is_ok() {
        settle_secrets(ssh);
        return Ok(Activation::AlreadyActive);
    }
    ssh.check(&format!("nix-env -p {PROFILE} --set {system}"))
        .context("set the system profile")?;
    // A switch that fails, hangs past the command timeout or loses its
    // connection is a failure like any other: roll back.
    let failure = match ssh.run(&format!("{system}/bin/switch-to-configuration switch")) {
        Err(e) => Some(format!("switch-to-configuration did not finish: {e:#}")),
        Ok(out) if out.status != 0 => Some(format!(
            "switch-to-configuration exited with {}: {}",
            out.status,
            last_line(&out.stderr)
        )),
        Ok(_) => {
            settle_secrets(ssh);
            check_health(address, health)
                .err()
                .map(|e| format!("{e:#}"))
        }
    };
    let Some(reason) = failure else {
        return Ok(Activation::Switched);
    };
    if previous.is_none() {
        bail!("{reason}; there is no previous generation to roll back to");
    }
    tracing::warn!(host = %ssh.host, %reason, "rolling back");
    let rolled_back = ssh
        .check(&format!("nix-env -p {PROFILE} --rollback"))
        .context("roll back the system profile")
        .and_then(|_| {
            ssh.check(&format!("{PROFILE}/bin/switch-to-configuration switch"))
                .context("switch back to the previous generation")
        });
    settle_secrets(ssh);
    match rolled_back {
        Ok(_) => Ok(Activation::RolledBack { reason }),
        Err(e) => bail!("{reason}; then the rollback failed too: {e:#}"),
    }
}

/// The unit venue's modules restart secrets' readers with, and the path unit
/// that starts it when the secrets directory changes.
const SECRETS_UNIT: &str = "venue-secrets-changed";

/// Before the upload: the path unit must not restart services while the
/// switch that follows runs (a unit started between the switch's stop and
/// its reload keeps the old definition). [`settle_secrets`] starts it again.
/// A host without venue's modules has no such unit; a host left with it
/// stopped (the agent killed in between) gets it back at its next deploy or
/// boot.
pub fn hold_secrets_watch(ssh: &Ssh) {
    let script = format!(
        "if systemctl cat {SECRETS_UNIT}.path >/dev/null 2>&1; then systemctl stop {SECRETS_UNIT}.path; fi"
    );
    if let Err(e) = ssh.run(&script) {
        tracing::warn!(host = %ssh.host, "stopping {SECRETS_UNIT}.path before the upload: {e:#}");
    }
}

/// After the switch (or none): watch the secrets again, then run the
/// restart unit once and wait for it; it restarts the units whose files
/// differ from what they started with. A unit that still fails is for the
/// health check to report.
fn settle_secrets(ssh: &Ssh) {
    let script = format!(
        "if systemctl cat {SECRETS_UNIT}.service >/dev/null 2>&1; then \
         systemctl start {SECRETS_UNIT}.path; systemctl start {SECRETS_UNIT}.service || true; fi"
    );
    if let Err(e) = ssh.run(&script) {
        tracing::warn!(host = %ssh.host, "running {SECRETS_UNIT} after the switch: {e:#}");
    }
}

/// GET http://address:port/path until it answers 200 or the timeout passes.
/// A new TCP connection each time: a service that just restarted must accept
/// new clients, not only keep an old connection.
pub fn check_health(address: &str, health: &HealthCheck) -> Result<()> {
    let deadline = Instant::now() + health.timeout;
    loop {
        let last = match get_status(address, health.port, &health.path) {
            Ok(200) => return Ok(()),
            Ok(code) => format!("answered {code}"),
            Err(e) => format!("{e}"),
        };
        if Instant::now() >= deadline {
            bail!(
                "health check GET http://{address}:{}{} failed: {last}",
                health.port,
                health.path
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn get_status(address: &str, port: u16, path: &str) -> Result<u16> {
    let addr = (address, port)
        .to_socket_addrs()?
        .next()
        .context("no address")?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {address}\r\nUser-Agent: venue-health\r\n\r\n"
    )?;
    let mut head = [0u8; 64];
    let n = stream.read(&mut head)?;
    let line = String::from_utf8_lossy(&head[..n]);
    let code = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("not an HTTP answer")?;
    Ok(code)
}

fn last_line(s: &str) -> &str {
    s.trim().lines().last().unwrap_or("")
}
