//! The event's local state directory, `.venue/<event-id>/` beside event.toml
//! (mode 0700): the deploy key, the pinned host keys, fleet.json and a
//! journal. It is a cache: the cloud's labels are the truth, and a lost state
//! directory costs new keys, never a lost server.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result};
use serde_json::json;

pub struct StateDir {
    pub dir: PathBuf,
}

impl StateDir {
    /// `dir` when given (`--state`), else `.venue/<event-id>/` beside the event file.
    pub fn locate(event_file: &Path, event_id: &str, dir: Option<&Path>) -> PathBuf {
        match dir {
            Some(d) => d.to_path_buf(),
            None => event_file
                .parent()
                .unwrap_or(Path::new("."))
                .join(".venue")
                .join(event_id),
        }
    }

    /// Opens (creating it, mode 0700) the state directory.
    pub fn open(dir: PathBuf) -> Result<StateDir> {
        fs::create_dir_all(&dir)
            .with_context(|| format!("creating the state directory {}", dir.display()))?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("making {} private (0700)", dir.display()))?;
        Ok(StateDir { dir })
    }

    /// Holds the state directory for one command: two `venue` commands on the
    /// same event at once would race on its keys and journal. The lock goes
    /// with the returned file (and with the process, however it ends).
    pub fn lock(&self) -> Result<fs::File> {
        let path = self.path("lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => Ok(file),
            Err(fs::TryLockError::WouldBlock) => anyhow::bail!(
                "another venue command is working on {} (it holds {}); wait for it to finish",
                self.dir.display(),
                path.display()
            ),
            Err(fs::TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("locking {}", path.display()))
            }
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// Writes a file atomically (temp file, then rename) with `mode`.
    pub fn write(&self, rel: &str, contents: &[u8], mode: u32) -> Result<PathBuf> {
        let path = self.path(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
            // Every directory below the state directory is private too.
            let mut dir = parent;
            while dir.starts_with(&self.dir) && dir != self.dir {
                fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).ok();
                dir = dir.parent().unwrap_or(&self.dir);
            }
        }
        // A temp name of its own per writer: `key` and `key.pub` must not share one.
        let tmp = path.with_file_name(format!(
            ".{}.{}.tmp",
            path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
            std::process::id()
        ));
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .with_context(|| format!("writing {}", tmp.display()))?;
        f.write_all(contents)
            .and_then(|_| f.sync_all())
            .with_context(|| format!("writing {}", tmp.display()))?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))?;
        fs::rename(&tmp, &path).with_context(|| format!("moving {} into place", path.display()))?;
        Ok(path)
    }

    pub fn read(&self, rel: &str) -> Option<String> {
        fs::read_to_string(self.path(rel)).ok()
    }

    /// Appends one line to `journal.jsonl`: what was asked or done, when.
    /// Best effort: the journal only helps a human see what happened.
    pub fn journal(&self, command: &str, what: &str) {
        let line =
            json!({"time": chrono::Utc::now().to_rfc3339(), "command": command, "what": what})
                .to_string();
        if let Err(e) = self.append_line(&line, false) {
            tracing::warn!(error = %e, "cannot append to the journal");
        }
    }

    /// Journals one step of a command that tests interrupt:
    /// `VENUE_TEST_CRASH_AFTER=N[:TEXT]` makes the process abort right after
    /// its N-th step (whose description contains TEXT). How the tests crash
    /// `venue up` or `venue down` between two steps and check that a re-run
    /// loses and repeats nothing.
    pub fn step(&self, command: &str, what: &str) {
        static STEPS: AtomicUsize = AtomicUsize::new(0);
        self.journal(command, what);
        let Ok(spec) = std::env::var("VENUE_TEST_CRASH_AFTER") else {
            return;
        };
        let (n, text) = spec.split_once(':').unwrap_or((&spec, ""));
        if !what.contains(text) {
            return;
        }
        if n.parse::<usize>().ok() == Some(STEPS.fetch_add(1, Ordering::SeqCst) + 1) {
            eprintln!("VENUE_TEST_CRASH_AFTER={spec}: crashing after: {what}");
            std::process::abort();
        }
    }

    /// Journals that venue is about to put a system of its own on server
    /// `host` at `address` (install writes it to the disk, deploy activates
    /// it): from then on the server may hold what outlives the event
    /// (recordings, the portal's database), so `venue down` archives it
    /// first. Written before the step, so a crash cannot lose it.
    pub fn record_system(&self, command: &str, host: &str, address: &str) {
        let line = json!({
            "time": chrono::Utc::now().to_rfc3339(),
            "command": command,
            "what": format!("{host}: a venue system goes to {address}"),
            "system": {"host": host, "address": address},
        })
        .to_string();
        if let Err(e) = self.append(&line) {
            // Unrecorded, `venue down` would delete the server unarchived.
            tracing::error!(error = %e, host, "cannot journal the deployment");
        }
    }

    /// Whether the journal shows that venue ever put a system on server
    /// `host` at `address` ([`Self::record_system`]). Journals of older
    /// venues, which recorded only deploy outcomes, count every host they
    /// name as switched (healthy, unchanged or rolled back). A server that
    /// was never given a system holds nothing of ours.
    pub fn ran_system(&self, host: &str, address: &str) -> bool {
        let Some(text) = self.read("journal.jsonl") else {
            return false;
        };
        let older = format!("{host}: ");
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .any(|v| {
                let s = &v["system"];
                if s.is_object() {
                    return s["host"] == host && s["address"] == address;
                }
                v["command"] == "deploy"
                    && v["what"]
                        .as_str()
                        .and_then(|w| w.strip_prefix(&older))
                        .is_some_and(|w| {
                            ["Healthy", "Unchanged", "RolledBack"]
                                .iter()
                                .any(|o| w.starts_with(o))
                        })
            })
    }

    fn append(&self, line: &str) -> std::io::Result<()> {
        self.append_line(line, true)
    }

    /// Appends `line` and its newline in one write, so that a kill cannot
    /// leave a line without its end; and after a line that a writer killed
    /// mid-way did leave so, starts a line of its own, so that no record is
    /// joined to a torn one (readers skip what does not parse).
    fn append_line(&self, line: &str, sync: bool) -> std::io::Result<()> {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(self.path("journal.jsonl"))?;
        let mut text = String::with_capacity(line.len() + 2);
        let len = f.metadata()?.len();
        if len > 0 {
            let mut last = [0u8; 1];
            f.seek(SeekFrom::Start(len - 1))?;
            f.read_exact(&mut last)?;
            if last[0] != b'\n' {
                text.push('\n');
            }
        }
        text.push_str(line);
        text.push('\n');
        f.write_all(text.as_bytes())?;
        if sync {
            f.sync_data()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_command_at_a_time_per_state_directory() {
        let dir = std::env::temp_dir().join(format!("venue-lock-{}", std::process::id()));
        let state = StateDir::open(dir.clone()).unwrap();
        let held = state.lock().unwrap();
        let second = StateDir::open(dir.clone())
            .unwrap()
            .lock()
            .unwrap_err()
            .to_string();
        assert!(second.contains("another venue command"), "{second}");
        drop(held);
        state
            .lock()
            .expect("free again once the first command is done");
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn a_server_ran_a_venue_system_only_once_journalled_at_its_address() {
        let dir = std::env::temp_dir().join(format!("venue-ran-{}", std::process::id()));
        let state = StateDir::open(dir.clone()).unwrap();
        assert!(!state.ran_system("ev-bbb-1", "10.0.0.1"), "no journal yet");
        state.journal("up", "created server ev-bbb-1 (id 7)");
        state.journal("install", "ev-bbb-1: Failed in 3.0s unreachable");
        assert!(!state.ran_system("ev-bbb-1", "10.0.0.1"));
        state.record_system("deploy", "ev-bbb-1", "10.0.0.1");
        assert!(state.ran_system("ev-bbb-1", "10.0.0.1"));
        // The same name on another server (another address) got nothing.
        assert!(!state.ran_system("ev-bbb-1", "10.0.0.2"));
        assert!(!state.ran_system("ev-bbb-10", "10.0.0.1"));
        // An older venue's journal: deploy outcomes by host name.
        state.journal("deploy", "ev-jvb-1: Failed (0 paths copied)");
        assert!(!state.ran_system("ev-jvb-1", "10.0.0.8"));
        state.journal("deploy", "ev-portal-1: Healthy (3 paths copied)");
        assert!(state.ran_system("ev-portal-1", "10.0.0.9"));
        assert!(!state.ran_system("ev-portal-10", "10.0.0.9"));
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn a_line_torn_by_a_kill_does_not_swallow_the_next_record() {
        let dir = std::env::temp_dir().join(format!("venue-torn-{}", std::process::id()));
        let state = StateDir::open(dir.clone()).unwrap();
        state.journal("autopilot", "releasing ev-jitsi-1");
        // A writer killed half-way through its line.
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(dir.join("journal.jsonl"))
            .unwrap();
        f.write_all(br#"{"time":"2026-12-02T12:00:11Z","command":"autop"#)
            .unwrap();
        drop(f);
        state.record_system("deploy", "ev-bbb-1", "10.0.0.1");
        state.journal("autopilot", "released ev-jitsi-1");
        assert!(state.ran_system("ev-bbb-1", "10.0.0.1"));
        let text = std::fs::read_to_string(dir.join("journal.jsonl")).unwrap();
        let parsed = text
            .lines()
            .filter(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
            .count();
        assert_eq!(
            parsed, 3,
            "every whole record is a line of its own:\n{text}"
        );
        assert!(text.ends_with('\n'));
        std::fs::remove_dir_all(dir).ok();
    }
}
