//! The event's secrets: generated once by the agent, kept in the event's
//! local state (mode 0600), uploaded as files (mode 0400) under
//! /var/lib/venue/secrets. They never enter the Nix store or a log.
//! The event's certificate and its key (state `tls/`, see crate::tls) travel
//! the same way to every host, as `tls-fullchain.pem` and `tls-key.pem`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use conference::Role;

use super::ssh::Ssh;
use crate::model::state::StateDir;

pub const REMOTE_DIR: &str = "/var/lib/venue/secrets";
/// In the state directory.
const FILE: &str = "secrets.json";

/// Every secret a venue has, by file name.
pub const ALL: &[&str] = &[
    "bbb-secret",
    "turn-secret",
    "jwt-secret",
    "portal-session",
    "jvb-muc-password",
    "capture-secret",
];

/// The certificate chain and its key on every host, when venue supplies one
/// (the NixOS modules' `services.venue.tls.*` read these names).
pub const TLS_CHAIN: &str = "tls-fullchain.pem";
pub const TLS_KEY: &str = "tls-key.pem";

/// Which secrets a role's services read.
pub fn for_role(role: Role) -> &'static [&'static str] {
    match role {
        Role::Bbb => &["bbb-secret", "turn-secret"],
        Role::Jitsi => &["jwt-secret", "turn-secret", "jvb-muc-password"],
        Role::Jvb => &["jvb-muc-password"],
        Role::Coturn => &["turn-secret"],
        Role::Portal => &[
            "bbb-secret",
            "jwt-secret",
            "turn-secret",
            "portal-session",
            "capture-secret",
        ],
        // The origin's stage captures ask the portal's capture API.
        Role::Stream => &["capture-secret"],
        // HLS is public; RTMP ingest is limited by address.
        Role::Edge => &[],
    }
}

pub struct Secrets {
    values: BTreeMap<String, String>,
    /// The event's certificate chain and key (PEM), if venue holds one.
    tls: Option<(String, String)>,
    pub file: PathBuf,
}

/// Never prints a value.
impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secrets")
            .field("names", &self.values.keys().collect::<Vec<_>>())
            .field("tls", &self.tls.is_some())
            .field("file", &self.file)
            .finish()
    }
}

impl Secrets {
    /// Reads `secrets.json` in the state directory, creating whatever
    /// secret is missing.
    pub fn load_or_create(state: &StateDir) -> Result<Secrets> {
        let file = state.path(FILE);
        let mut values: BTreeMap<String, String> = match state.read(FILE) {
            Some(text) => serde_json::from_str(&text)
                .with_context(|| format!("{} is not a JSON object of secrets", file.display()))?,
            None => BTreeMap::new(),
        };
        let mut changed = false;
        for name in ALL {
            if !values.contains_key(*name) {
                values.insert((*name).to_owned(), random_token()?);
                changed = true;
            }
        }
        if changed {
            state.write(
                FILE,
                serde_json::to_string_pretty(&values)?.as_bytes(),
                0o600,
            )?;
        }
        // The certificate as `venue up` left it (a renewed one goes out with
        // the next deploy).
        let tls = crate::tls::files::current(state).map(|(chain, key, _)| (chain, key));
        Ok(Secrets { values, tls, file })
    }

    /// Whether the certificate goes to the hosts.
    pub fn has_tls(&self) -> bool {
        self.tls.is_some()
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// All values, for tests that prove they leaked nowhere.
    pub fn values(&self) -> impl Iterator<Item = &str> {
        self.values
            .values()
            .map(String::as_str)
            .chain(self.tls.as_ref().map(|(_, key)| key.as_str()))
    }

    /// Uploads the secrets of the host's roles, and the certificate with its
    /// key, in one round trip; returns how many files. Each file is written beside its final name with mode 0400
    /// and renamed into place, so a service never reads half a secret.
    pub fn upload(&self, ssh: &Ssh, roles: &[Role]) -> Result<usize> {
        let mut names: Vec<&str> = roles
            .iter()
            .flat_map(|r| for_role(*r).iter().copied())
            .collect();
        names.sort_unstable();
        names.dedup();
        // "name length\n" then the raw bytes, for each file, on stdin.
        let mut input = Vec::new();
        for name in &names {
            let value = self
                .get(name)
                .with_context(|| format!("secret {name} missing from {}", self.file.display()))?;
            input.extend_from_slice(format!("{name} {}\n", value.len()).as_bytes());
            input.extend_from_slice(value.as_bytes());
        }
        // Every host serves HTTPS on its names: all get the certificate. The
        // key first: a host that reloads on a new chain finds its key there.
        if let Some((chain, key)) = &self.tls {
            for (name, value) in [(TLS_KEY, key), (TLS_CHAIN, chain)] {
                input.extend_from_slice(format!("{name} {}\n", value.len()).as_bytes());
                input.extend_from_slice(value.as_bytes());
                names.push(name);
            }
        }
        let out = ssh.run_with_input(UPLOAD_SCRIPT, &input)?;
        if out.status != 0 {
            bail!(
                "{}: writing secrets under {REMOTE_DIR} failed: {}",
                ssh.host,
                out.stderr.trim()
            );
        }
        Ok(names.len())
    }
}

/// Reads what `upload` sends. `read` and `dd bs=1` take exactly their bytes
/// from the pipe, so one file's content never spills into the next.
const UPLOAD_SCRIPT: &str =
    "set -e; umask 0377; d=/var/lib/venue/secrets; mkdir -p $d; chmod 0700 $d; \
    while read -r name len; do \
      case $name in ''|.*|*[!a-z0-9.-]*) echo \"bad secret name\" >&2; exit 1;; esac; \
      rm -f $d/.$name.tmp; dd bs=1 count=$len of=$d/.$name.tmp status=none; \
      chmod 0400 $d/.$name.tmp; mv -f $d/.$name.tmp $d/$name; \
    done";

/// 32 random bytes as lower-case hex: safe in every config syntax
/// (BigBlueButton, coturn, prosody) without quoting.
fn random_token() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(conference::protocol::hex(&bytes))
}
