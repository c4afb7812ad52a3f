//! The ID-token signing key: an ECDSA P-256 key (ES256), generated on first
//! start into `<state>/oidc-signing-key.pem` (PKCS#8, mode 0600). It never
//! enters the database, a log or the Nix store; only its public half leaves
//! the portal, as the JWKS.

use std::path::Path;

use anyhow::{bail, Context, Result};
use jsonwebtoken::jwk::{Jwk, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, EncodingKey};

pub const KEY_FILE: &str = "oidc-signing-key.pem";
pub const ALG: Algorithm = Algorithm::ES256;

pub struct SigningKey {
    pub encoding: EncodingKey,
    /// The public key as published in the JWKS (with `kid`, `use`, `alg`).
    pub jwk: Jwk,
    /// RFC 7638 thumbprint of the public key: changes when the key does.
    pub kid: String,
}

impl SigningKey {
    pub fn load_or_create(state: &Path) -> Result<SigningKey> {
        let path = state.join(KEY_FILE);
        if !path.exists() {
            std::fs::create_dir_all(state).with_context(|| {
                format!("cannot create the state directory {}", state.display())
            })?;
            create(&path)?;
            tracing::info!(file = %path.display(), "generated the OIDC signing key");
        }
        tighten(&path)?;
        let pem = std::fs::read(&path)
            .with_context(|| format!("cannot read the OIDC signing key {}", path.display()))?;
        let encoding = EncodingKey::from_ec_pem(&pem).map_err(|e| {
            anyhow::anyhow!(
                "{} is not a PKCS#8 P-256 private key ({e}); delete it to have a new one generated",
                path.display()
            )
        })?;
        let mut jwk = Jwk::from_encoding_key(&encoding, ALG)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let kid = jwk
            .thumbprint(ThumbprintHash::SHA256)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        Ok(SigningKey { encoding, jwk, kid })
    }
}

/// Writes a new key; `create_new` so two starts never overwrite each other.
fn create(path: &Path) -> Result<()> {
    use p256::pkcs8::{EncodePrivateKey, LineEnding};
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let secret = loop {
        // Nearly every 32 random bytes are a valid scalar; retry the rest.
        if let Ok(k) = p256::SecretKey::from_slice(&crate::random_bytes::<32>()) {
            break k;
        }
    };
    let pem = secret
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| anyhow::anyhow!("cannot encode the OIDC signing key: {e}"))?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(pem.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

/// A key file others can read is made private again before use.
fn tighten(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta =
            std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
        if !meta.is_file() {
            bail!("{} is not a file", path.display());
        }
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(file = %path.display(), "the OIDC signing key was readable by others: set to mode 0600");
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(())
}
