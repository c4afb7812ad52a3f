//! The BigBlueButton pool as the portal sees it: the agent writes the pool
//! file on the portal host over the pinned SSH (the portal re-reads it at
//! every poll tick, portal/src/pool/file.rs), and reads back through the
//! portal's `GET /pool/api/servers` which servers are up, how full, and
//! which draining ones are empty.
//!
//! Public interface (the core loop uses these):
//! ```text
//! pub const POOL_FILE: &str = "/var/lib/venue/pool.json";
//! pub const SERVERS_PATH: &str = "/pool/api/servers";
//! pub fn secret_file() -> String            // /var/lib/venue/secrets/bbb-secret
//! pub fn api_url(name: &str, domain: &str) -> String
//! pub struct Entry { name: String, url: String, secret_file: String, checksum: String,
//!                    draining: bool }
//!     fn Entry::new(name: &str, domain: &str, checksum: Checksum, draining: bool) -> Entry
//! pub struct PoolFile { bbb: Vec<Entry>, updated: DateTime<Utc> }
//!     fn to_json(&self) -> String
//! pub fn publish(ssh: &Ssh, pool: &PoolFile) -> Result<()>          // to POOL_FILE
//! pub fn publish_at(ssh: &Ssh, path: &str, pool: &PoolFile) -> Result<()>
//! pub struct ServerStatus { name, source, up: bool, draining: bool, meetings: usize,
//!                           participants: u64, unconfirmed: usize, rooms: Vec<RoomLoad>,
//!                           drained: bool, last_error: Option<String> }
//! pub struct RoomLoad { id: String, participants: u64, listeners: u64, video: u64 }
//! pub struct PoolStatus { updated: Option<DateTime<Utc>>, error: Option<String>,
//!                         servers: Vec<ServerStatus> }
//!     fn PoolStatus::parse(body: &str) -> Result<PoolStatus>
//!     fn PoolStatus::server(&self, name) -> Option<&ServerStatus>
//!     fn PoolStatus::took(&self, pool: &PoolFile) -> bool
//! pub async fn servers(client: &reqwest::Client, portal: &str, secret: &str) -> Result<PoolStatus>
//! ```

use anyhow::{anyhow, bail, Context, Result};
use chrono::{DateTime, Utc};
use conference::protocol::bbb::Checksum;
use serde::{Deserialize, Serialize};

use crate::check::bbb::API_PATH;
use crate::deploy::secrets::REMOTE_DIR;
use crate::deploy::ssh::Ssh;

/// Where the portal host keeps the pool file (the portal's `pool_file`).
pub const POOL_FILE: &str = "/var/lib/venue/pool.json";
/// The portal's pool API, below the event's domain.
pub const SERVERS_PATH: &str = "/pool/api/servers";

/// The BigBlueButton secret on the portal host, as the agent uploads it for
/// the portal (deploy::secrets); every server of the event shares it.
pub fn secret_file() -> String {
    format!("{REMOTE_DIR}/bbb-secret")
}

/// A server's BigBlueButton API, as the portal calls it.
pub fn api_url(name: &str, domain: &str) -> String {
    format!("https://{name}.{domain}{API_PATH}/")
}

/// One server of the pool file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub name: String,
    pub url: String,
    pub secret_file: String,
    pub checksum: String,
    pub draining: bool,
}

impl Entry {
    pub fn new(name: &str, domain: &str, checksum: Checksum, draining: bool) -> Entry {
        Entry {
            name: name.to_owned(),
            url: api_url(name, domain),
            secret_file: secret_file(),
            checksum: checksum.as_str().to_owned(),
            draining,
        }
    }
}

/// The pool file's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolFile {
    pub bbb: Vec<Entry>,
    /// When the agent wrote it: the API echoes the one in force.
    pub updated: DateTime<Utc>,
}

impl PoolFile {
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("a pool file serialises");
        s.push('\n');
        s
    }
}

/// Writes `pool` to [`POOL_FILE`] on the portal host.
pub fn publish(ssh: &Ssh, pool: &PoolFile) -> Result<()> {
    publish_at(ssh, POOL_FILE, pool)
}

/// Writes `pool` to `path` on the host: beside it first, then renamed into
/// place, so the portal reads the old file or the new one, never half of
/// one. Mode 0644: it names a secret's path, not the secret, and the
/// portal's own user reads it.
pub fn publish_at(ssh: &Ssh, path: &str, pool: &PoolFile) -> Result<()> {
    let quoted = shell_path(path)?;
    let script = format!(
        "set -e; umask 022; f={quoted}; t=\"$(dirname \"$f\")/.$(basename \"$f\").venue-tmp.$$\"; \
         mkdir -p \"$(dirname \"$f\")\"; trap 'rm -f \"$t\"' EXIT; cat > \"$t\"; \
         chmod 0644 \"$t\"; mv -f \"$t\" \"$f\"; trap - EXIT"
    );
    let out = ssh.run_with_input(
        &format!("sh -c {}", sh_quote(&script)),
        pool.to_json().as_bytes(),
    )?;
    if out.status != 0 {
        bail!(
            "{}: writing the pool file {path} failed (exit {}): {}",
            ssh.host,
            out.status,
            out.stderr.trim()
        );
    }
    Ok(())
}

/// An absolute path, quoted for the remote shell.
fn shell_path(path: &str) -> Result<String> {
    if !path.starts_with('/') || path.ends_with('/') || path.contains('\0') {
        bail!("the pool file must be an absolute file path, not `{path}`");
    }
    Ok(sh_quote(path))
}

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// One server as the portal's pollers last saw it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ServerStatus {
    pub name: String,
    /// `static` (the portal's own configuration) or `pool` (the pool file).
    pub source: String,
    pub up: bool,
    pub draining: bool,
    pub meetings: usize,
    pub participants: u64,
    /// Meetings the portal opened there that no poll has listed yet.
    #[serde(default)]
    pub unconfirmed: usize,
    /// Each meeting of the last poll (a portal that predates this list
    /// gives only the counts above).
    #[serde(default)]
    pub rooms: Vec<RoomLoad>,
    /// Draining, up, and polled empty since the drain began: the portal
    /// says it may be released.
    #[serde(default)]
    pub drained: bool,
    #[serde(default)]
    pub last_error: Option<String>,
}

/// One meeting of a server, as the portal's last poll counted it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RoomLoad {
    pub id: String,
    pub participants: u64,
    #[serde(default)]
    pub listeners: u64,
    #[serde(default)]
    pub video: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PoolStatus {
    /// `updated` of the pool file in force.
    pub updated: Option<DateTime<Utc>>,
    /// Why the portal refused the latest pool file, if it did.
    pub error: Option<String>,
    pub servers: Vec<ServerStatus>,
}

impl PoolStatus {
    pub fn parse(body: &str) -> Result<PoolStatus> {
        serde_json::from_str(body).map_err(|e| anyhow!("the portal's pool API answered: {e}"))
    }

    pub fn server(&self, name: &str) -> Option<&ServerStatus> {
        self.servers.iter().find(|s| s.name == name)
    }

    /// Whether the portal runs on `pool` (its write was taken, not refused).
    pub fn took(&self, pool: &PoolFile) -> bool {
        self.updated == Some(pool.updated) && self.error.is_none()
    }
}

/// `GET <portal>/pool/api/servers` with the pool API's bearer secret.
/// `portal` is the portal's base URL (`https://<domain>`).
pub async fn servers(client: &reqwest::Client, portal: &str, secret: &str) -> Result<PoolStatus> {
    let url = format!("{}{SERVERS_PATH}", portal.trim_end_matches('/'));
    let resp = client
        .get(&url)
        .bearer_auth(secret)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    let status = resp.status();
    let body = resp.text().await.with_context(|| format!("GET {url}"))?;
    if !status.is_success() {
        // The portal's errors are JSON {"error": ...}, without secrets.
        let why = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or_else(|| body.chars().take(200).collect());
        bail!("GET {url} answered HTTP {status}: {why}");
    }
    PoolStatus::parse(&body).with_context(|| format!("GET {url}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_names_the_servers_api_and_the_portals_secret_file() {
        let e = Entry::new("ev-bbb-3", "ev.example.org", Checksum::Sha256, true);
        assert_eq!(e.url, "https://ev-bbb-3.ev.example.org/bigbluebutton/api/");
        assert_eq!(e.secret_file, "/var/lib/venue/secrets/bbb-secret");
        assert_eq!(e.checksum, "sha256");
        let pool = PoolFile {
            bbb: vec![e],
            updated: "2026-12-01T08:00:00Z".parse().unwrap(),
        };
        let v: serde_json::Value = serde_json::from_str(&pool.to_json()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"bbb": [{"name": "ev-bbb-3",
                "url": "https://ev-bbb-3.ev.example.org/bigbluebutton/api/",
                "secret_file": "/var/lib/venue/secrets/bbb-secret",
                "checksum": "sha256", "draining": true}],
                "updated": "2026-12-01T08:00:00Z"})
        );
    }

    #[test]
    fn reads_the_portals_answer() {
        let body = r#"{"pool_file": "/var/lib/venue/pool.json", "updated": "2026-12-01T08:00:00Z",
            "applied_at": "2026-12-01T08:00:02Z", "error": null, "poll_interval_seconds": 10.0,
            "servers": [{"name": "ev-bbb-3", "source": "pool", "state": "up", "up": true,
              "draining": true, "draining_since": "2026-12-01T08:00:02Z", "meetings": 0,
              "participants": 0, "unconfirmed": 0, "drained": true,
              "last_answer": "2026-12-01T08:00:12Z", "last_error": null}]}"#;
        let s = PoolStatus::parse(body).unwrap();
        let b = s.server("ev-bbb-3").unwrap();
        assert!(b.up && b.draining && b.drained && b.meetings == 0);
        let mut pool = PoolFile {
            bbb: vec![],
            updated: "2026-12-01T08:00:00Z".parse().unwrap(),
        };
        assert!(s.took(&pool));
        pool.updated = "2026-12-01T08:05:00Z".parse().unwrap();
        assert!(!s.took(&pool), "a later write is not taken yet");
        assert!(PoolStatus::parse("{\"servers\": 3}").is_err());
    }

    #[test]
    fn only_absolute_file_paths_are_written() {
        assert_eq!(
            shell_path("/var/lib/venue/pool.json").unwrap(),
            "'/var/lib/venue/pool.json'"
        );
        assert_eq!(shell_path("/a b/it's").unwrap(), "'/a b/it'\\''s'");
        assert!(shell_path("pool.json").is_err());
        assert!(shell_path("/var/lib/venue/").is_err());
    }
}
