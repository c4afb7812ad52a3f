//! SSH keys made by venue: the event's deploy key (its public half goes to
//! the cloud, its private half stays in the state directory), and one host
//! key per server, handed to cloud-init through `user_data` so that the
//! deploy step can pin it (a server presenting another key is refused).
//! Private halves live in files of mode 0600 and are never logged.

use anyhow::{Context, Result};
use base64::Engine;
use md5::{Digest, Md5};
use ssh_key::rand_core::OsRng;
use ssh_key::{Algorithm, LineEnding, PrivateKey};

use crate::model::state::StateDir;

pub struct KeyPair {
    /// OpenSSH private key; do not print.
    pub private: String,
    /// `ssh-ed25519 AAAA… comment`
    pub public: String,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

/// Loads the ed25519 key pair at `rel` in the state directory, or makes one.
/// Made once and then reused: a second `up` must find the same keys, or the
/// servers created by the first would no longer match.
pub fn load_or_create(state: &StateDir, rel: &str, comment: &str) -> Result<KeyPair> {
    match (state.read(rel), state.read(&format!("{rel}.pub"))) {
        (Some(private), Some(public)) => {
            return Ok(KeyPair {
                private,
                public: public.trim().to_owned(),
            })
        }
        // A private key without its public half: never overwrite it, a
        // running server may be pinned to it.
        (Some(_), None) => anyhow::bail!(
            "{} exists without {}.pub: restore the public half (ssh-keygen -y -f {0}) instead of letting venue make a new key",
            state.path(rel).display(),
            rel
        ),
        _ => {}
    }
    let mut key =
        PrivateKey::random(&mut OsRng, Algorithm::Ed25519).context("generating an ed25519 key")?;
    key.set_comment(comment);
    let private = key
        .to_openssh(LineEnding::LF)
        .context("encoding an ed25519 key")?
        .to_string();
    let public = key
        .public_key()
        .to_openssh()
        .context("encoding an ed25519 public key")?;
    // Public half first: a crash in between leaves no private key without its public half.
    state.write(
        &format!("{rel}.pub"),
        format!("{public}\n").as_bytes(),
        0o644,
    )?;
    state.write(rel, private.as_bytes(), 0o600)?;
    Ok(KeyPair { private, public })
}

/// Hetzner's fingerprint of a public key: MD5 of the key blob, `aa:bb:…`.
pub fn md5_fingerprint(public: &str) -> Option<String> {
    let blob = public.split_whitespace().nth(1)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(blob)
        .ok()?;
    Some(
        Md5::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":"),
    )
}

pub fn deploy_key(state: &StateDir, event: &str) -> Result<KeyPair> {
    load_or_create(state, "deploy_ed25519", &format!("venue-deploy@{event}"))
}

pub fn host_key(state: &StateDir, server: &str) -> Result<KeyPair> {
    load_or_create(
        state,
        &format!("hosts/{server}/ssh_host_ed25519_key"),
        &format!("root@{server}"),
    )
}

/// cloud-init user data that installs `host` as the server's SSH host key
/// (and generates no other), so its public half is known before first boot.
pub fn user_data(server: &str, host: &KeyPair) -> String {
    let indented: String = host.private.lines().map(|l| format!("    {l}\n")).collect();
    format!(
        "#cloud-config\n\
         # venue: {server}'s SSH host key, pinned by the deploy step\n\
         ssh_deletekeys: true\n\
         ssh_genkeytypes: []\n\
         ssh_keys:\n  ed25519_private: |\n{indented}  ed25519_public: {}\n",
        host.public
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_made_once_private_and_fingerprinted_like_hetzner() {
        let dir = std::env::temp_dir().join(format!("venue-keys-{}", std::process::id()));
        let state = StateDir::open(dir.clone()).unwrap();
        let a = deploy_key(&state, "ev").unwrap();
        let b = deploy_key(&state, "ev").unwrap();
        assert_eq!(a.public, b.public);
        assert!(a.public.starts_with("ssh-ed25519 "));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(state.path("deploy_ed25519"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let fp = md5_fingerprint(&a.public).unwrap();
        assert_eq!(fp.len(), 47);
        let h = host_key(&state, "ev-bbb-1").unwrap();
        let ud = user_data("ev-bbb-1", &h);
        assert!(ud.starts_with("#cloud-config\n"));
        assert!(ud.contains("    -----BEGIN OPENSSH PRIVATE KEY-----"));
        assert!(ud.contains(&format!("ed25519_public: {}", h.public)));
        assert!(!format!("{h:?}").contains("PRIVATE"));
        std::fs::remove_dir_all(dir).ok();
    }
}
