//! Starting and stopping one capture per room on a capture host: as systemd
//! units `venue-capture@<room>.service` (NixOS, modules/capture.nix), or as
//! child processes of the controller (the testbed). Either way the join URL
//! goes through a file readable by the capture only (mode 0600), never
//! through argv or the environment, where other users could read it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::config::write_private;

/// Room slugs become file and unit names: only `[a-z0-9-]`.
pub fn check_slug(slug: &str) -> Result<()> {
    if slug.is_empty()
        || slug.len() > 64
        || !slug
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        bail!("`{slug}` is not a room slug (a-z, 0-9 and -, at most 64)");
    }
    Ok(())
}

pub trait Runner: Send {
    fn is_running(&mut self, room: &str) -> bool;
    fn start(&mut self, room: &str, join_url: &str, rtmp_url: &str) -> Result<()>;
    fn stop(&mut self, room: &str) -> Result<()>;
    /// Every room with a capture running.
    fn running(&mut self) -> Vec<String>;
    /// The controller is ending: what must not outlive it stops.
    fn shutdown(&mut self) {}
}

/// `<dir>/<room>/join-url` and `rtmp-url`, mode 0600 in a 0700 directory.
fn write_inputs(dir: &Path, room: &str, join_url: &str, rtmp_url: &str) -> Result<PathBuf> {
    let d = dir.join(room);
    std::fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700))?;
    }
    write_private(&d.join("join-url"), join_url.as_bytes())?;
    write_private(&d.join("rtmp-url"), rtmp_url.as_bytes())?;
    Ok(d)
}

/// Captures as `venue-capture@<room>.service`; the unit reads its inputs
/// with LoadCredential from `<dir>/<room>/`.
pub struct Systemd {
    pub dir: PathBuf,
}

fn unit(room: &str) -> String {
    format!("venue-capture@{room}.service")
}

fn systemctl(args: &[&str]) -> Result<()> {
    let out = Command::new("systemctl")
        .args(args)
        .output()
        .context("cannot run systemctl")?;
    if !out.status.success() {
        bail!(
            "systemctl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl Runner for Systemd {
    fn is_running(&mut self, room: &str) -> bool {
        Command::new("systemctl")
            .args(["is-active", "--quiet", &unit(room)])
            .status()
            .is_ok_and(|s| s.success())
    }
    fn start(&mut self, room: &str, join_url: &str, rtmp_url: &str) -> Result<()> {
        write_inputs(&self.dir, room, join_url, rtmp_url)?;
        // --no-block: the capture takes seconds to come up; the next poll
        // sees whether it did.
        systemctl(&["start", "--no-block", &unit(room)])
    }
    fn stop(&mut self, room: &str) -> Result<()> {
        systemctl(&["stop", "--no-block", &unit(room)])
    }
    fn running(&mut self) -> Vec<String> {
        let out = Command::new("systemctl")
            .args([
                "list-units",
                "--plain",
                "--no-legend",
                "--state=active,activating",
                "venue-capture@*.service",
            ])
            .output();
        let Ok(out) = out else { return Vec::new() };
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter_map(|u| u.strip_prefix("venue-capture@")?.strip_suffix(".service"))
            .map(str::to_owned)
            .collect()
    }
}

/// Captures as child processes: `<program> <room>`, in their own process
/// group (Xvfb, the browser and ffmpeg stop with it), with
/// `VENUE_CAPTURE_DIR` holding `join-url` and `rtmp-url`.
pub struct Children {
    pub program: PathBuf,
    pub dir: PathBuf,
    children: BTreeMap<String, Child>,
}

impl Children {
    pub fn new(program: PathBuf, dir: PathBuf) -> Children {
        Children {
            program,
            dir,
            children: BTreeMap::new(),
        }
    }
}

fn signal_group(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([signal, "--", &format!("-{pid}")])
        .stderr(Stdio::null())
        .status();
}

impl Runner for Children {
    fn is_running(&mut self, room: &str) -> bool {
        match self.children.get_mut(room) {
            Some(c) => match c.try_wait() {
                Ok(None) => true,
                Ok(Some(status)) => {
                    tracing::warn!(room, %status, "capture exited");
                    // The rest of its group (a browser left behind) goes too.
                    signal_group(c.id(), "-KILL");
                    self.children.remove(room);
                    false
                }
                Err(_) => false,
            },
            None => false,
        }
    }
    fn start(&mut self, room: &str, join_url: &str, rtmp_url: &str) -> Result<()> {
        let dir = write_inputs(&self.dir, room, join_url, rtmp_url)?;
        let mut cmd = Command::new(&self.program);
        cmd.arg(room)
            .env("VENUE_CAPTURE_DIR", &dir)
            .stdin(Stdio::null());
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", self.program.display()))?;
        self.children.insert(room.to_owned(), child);
        Ok(())
    }
    fn stop(&mut self, room: &str) -> Result<()> {
        let Some(mut c) = self.children.remove(room) else {
            return Ok(());
        };
        signal_group(c.id(), "-TERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if c.try_wait()?.is_some() {
                signal_group(c.id(), "-KILL");
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        signal_group(c.id(), "-KILL");
        let _ = c.wait();
        Ok(())
    }
    fn running(&mut self) -> Vec<String> {
        let rooms: Vec<String> = self.children.keys().cloned().collect();
        rooms.into_iter().filter(|r| self.is_running(r)).collect()
    }
    fn shutdown(&mut self) {
        let rooms: Vec<String> = self.children.keys().cloned().collect();
        for r in rooms {
            let _ = self.stop(&r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::check_slug;

    #[test]
    fn only_plain_slugs_become_unit_and_file_names() {
        assert!(check_slug("main-track").is_ok());
        for bad in ["", "../etc", "a/b", "Main", "a b", "x@y"] {
            assert!(check_slug(bad).is_err(), "{bad:?}");
        }
    }
}
