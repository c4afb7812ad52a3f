//! The event's secrets: generated once by the agent, kept in the event's
//! local state (mode 0600), uploaded as files (mode 0400) under
//! /var/lib/venue/secrets by deploy, and written to a new system's disk by
//! the install phase (crate::install), the same files for the same host.
//! They never enter the Nix store or a log.
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
    "oidc-client-secret",
    "synapse-macaroon-secret",
    "synapse-form-secret",
    "synapse-registration-secret",
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
            // The homeserver's login (the portal is its OpenID Connect
            // provider) and its bot's admin registration (`[chat]`).
            "oidc-client-secret",
            "synapse-registration-secret",
        ],
        // The origin's stage captures ask the portal's capture API.
        Role::Stream => &["capture-secret"],
        // HLS is public; RTMP ingest is limited by address.
        Role::Edge => &[],
        // Synapse: its OpenID Connect client, its macaroon and form keys,
        // and the shared secret its admin API registers the portal's bot with.
        Role::Chat => &[
            "oidc-client-secret",
            "synapse-macaroon-secret",
            "synapse-form-secret",
            "synapse-registration-secret",
        ],
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

    /// The files a host of `roles` gets, by name: the secrets its roles'
    /// services read, then the certificate's key and chain when venue holds
    /// them. What deploy uploads and what the install phase writes to the
    /// new system's disk.
    pub fn files_for(&self, roles: &[Role]) -> Result<Vec<(&str, &str)>> {
        let mut names: Vec<&str> = roles
            .iter()
            .flat_map(|r| for_role(*r).iter().copied())
            .collect();
        names.sort_unstable();
        names.dedup();
        let mut files = Vec::new();
        for name in names {
            let value = self
                .get(name)
                .with_context(|| format!("secret {name} missing from {}", self.file.display()))?;
            files.push((name, value));
        }
        // Every host serves HTTPS on its names: all get the certificate. The
        // key first: a host that reloads on a new chain finds its key there.
        if let Some((chain, key)) = &self.tls {
            files.push((TLS_KEY, key.as_str()));
            files.push((TLS_CHAIN, chain.as_str()));
        }
        Ok(files)
    }

    /// Uploads [`Self::files_for`] the host's roles to [`REMOTE_DIR`] in one
    /// round trip; returns how many files.
    pub fn upload(&self, ssh: &Ssh, roles: &[Role]) -> Result<usize> {
        self.upload_to(ssh, roles, REMOTE_DIR)
    }

    /// Like [`Self::upload`], into `dir` on the host (the install phase:
    /// the new system's disk, mounted at /mnt). Each file is written beside
    /// its final name with mode 0400 and renamed into place, so a service
    /// never reads half a secret; `dir` is made 0700, its parents 0755.
    pub fn upload_to(&self, ssh: &Ssh, roles: &[Role], dir: &str) -> Result<usize> {
        let files = self.files_for(roles)?;
        // "name length\n" then the raw bytes, for each file, on stdin.
        let mut input = Vec::new();
        for (name, value) in &files {
            input.extend_from_slice(format!("{name} {}\n", value.len()).as_bytes());
            input.extend_from_slice(value.as_bytes());
        }
        let out = ssh.run_with_input(&upload_script(dir)?, &input)?;
        if out.status != 0 {
            bail!(
                "{}: writing secrets under {dir} failed: {}",
                ssh.host,
                out.stderr.trim()
            );
        }
        Ok(files.len())
    }
}

/// Reads what `upload_to` sends into `dir`. `read` and `dd bs=1` take
/// exactly their bytes from the pipe, so one file's content never spills
/// into the next. The parents are made with the usual 0755: a new system's
/// /var/lib must stay traversable for its services' users.
fn upload_script(dir: &str) -> Result<String> {
    if !dir.starts_with('/')
        || dir.len() < 2
        || !dir
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-".contains(&b))
    {
        bail!("secrets directory {dir:?}: expected an absolute path of letters, digits and /._-");
    }
    Ok(format!(
        "set -e; d={dir}; umask 022; mkdir -p ${{d%/*}}; umask 0377; mkdir -p $d; chmod 0700 $d; \
        while read -r name len; do \
          case $name in ''|.*|*[!a-z0-9.-]*) echo \"bad secret name\" >&2; exit 1;; esac; \
          rm -f $d/.$name.tmp; dd bs=1 count=$len of=$d/.$name.tmp status=none; \
          chmod 0400 $d/.$name.tmp; mv -f $d/.$name.tmp $d/$name; \
        done"
    ))
}

/// 32 random bytes as lower-case hex: safe in every config syntax
/// (BigBlueButton, coturn, prosody) without quoting.
fn random_token() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(conference::protocol::hex(&bytes))
}

#[cfg(test)]
mod tests {
    use super::{for_role, upload_script, ALL};
    use conference::Role;

    #[test]
    fn the_chat_and_the_portal_share_the_homeservers_login_and_registration() {
        assert_eq!(
            for_role(Role::Chat),
            [
                "oidc-client-secret",
                "synapse-macaroon-secret",
                "synapse-form-secret",
                "synapse-registration-secret",
            ]
        );
        let portal = for_role(Role::Portal);
        for shared in ["oidc-client-secret", "synapse-registration-secret"] {
            assert!(portal.contains(&shared), "the portal lacks {shared}");
        }
        // Synapse's own keys stay on the chat host.
        for own in ["synapse-macaroon-secret", "synapse-form-secret"] {
            assert!(!portal.contains(&own), "the portal gets {own}");
            for role in Role::ALL.into_iter().filter(|r| *r != Role::Chat) {
                assert!(!for_role(role).contains(&own), "{role} gets {own}");
            }
        }
    }

    #[test]
    fn every_secret_a_role_reads_is_one_the_agent_makes() {
        for role in Role::ALL {
            for name in for_role(role) {
                assert!(
                    ALL.contains(name),
                    "{role} reads {name}, which is never generated"
                );
            }
        }
    }

    #[test]
    fn secrets_go_only_to_a_plain_absolute_directory() {
        let script = upload_script("/mnt/var/lib/venue/secrets").unwrap();
        assert!(script
            .starts_with("set -e; d=/mnt/var/lib/venue/secrets; umask 022; mkdir -p ${d%/*};"));
        for bad in [
            "var/lib/venue/secrets",
            "/",
            "/tmp/a b",
            "/tmp/$(x)",
            "/tmp/a;b",
        ] {
            let e = upload_script(bad).unwrap_err().to_string();
            assert!(e.contains("expected an absolute path"), "{bad}: {e}");
        }
    }
}
