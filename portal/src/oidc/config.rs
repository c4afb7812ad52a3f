//! `[oidc]` of the portal's configuration file: the one registered client
//! (the event's Matrix homeserver) and the issuer name.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use super::keys::SigningKey;

/// `[oidc]` as written in the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcFile {
    /// The issuer (`https://portal.example.org`); default: `public_url`.
    issuer: Option<String>,
    client_id: String,
    client_secret_file: PathBuf,
    /// Where the homeserver receives the code, compared byte for byte.
    redirect_uri: String,
    /// How long an ID token and an access token last (default 300 s).
    token_ttl_seconds: Option<i64>,
}

/// The resolved provider: issuer, client, signing key.
#[derive(Clone)]
pub struct Oidc {
    /// Scheme, host and port, no trailing slash; the endpoints live under it.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uri: String,
    pub token_ttl: i64,
    pub key: Arc<SigningKey>,
}

/// An authorization code lives this long: the homeserver redeems it at once.
pub const CODE_TTL_SECONDS: i64 = 60;

impl Oidc {
    pub fn resolve(raw: OidcFile, public_url: Option<&str>, state: &Path) -> Result<Oidc> {
        let issuer = match raw.issuer.as_deref().or(public_url) {
            Some(i) => i.trim_end_matches('/').to_owned(),
            None => bail!("[oidc] needs `issuer` (or a top-level `public_url`): the URL that ID tokens name as their issuer"),
        };
        let Some(rest) = issuer
            .strip_prefix("https://")
            .or_else(|| issuer.strip_prefix("http://"))
        else {
            bail!("[oidc] issuer `{issuer}` must start with https:// (http:// only for tests on loopback)");
        };
        // Discovery is at <issuer>/.well-known/openid-configuration, and the
        // portal serves it at its root only.
        if rest.is_empty() || rest.contains(['/', '?', '#']) {
            bail!("[oidc] issuer `{issuer}` must be scheme://host[:port] with no path");
        }
        if raw.client_id.is_empty()
            || !raw
                .client_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            bail!(
                "[oidc] client_id `{}` must be letters, digits, `-`, `_` or `.`",
                raw.client_id
            );
        }
        let client_secret = std::fs::read_to_string(&raw.client_secret_file)
            .with_context(|| {
                format!(
                    "cannot read the OIDC client secret from {}",
                    raw.client_secret_file.display()
                )
            })?
            .trim()
            .to_owned();
        if client_secret.len() < 16 {
            bail!(
                "the OIDC client secret in {} is missing or too short (at least 16 characters)",
                raw.client_secret_file.display()
            );
        }
        if !(raw.redirect_uri.starts_with("https://") || raw.redirect_uri.starts_with("http://"))
            || raw.redirect_uri.contains('#')
        {
            bail!(
                "[oidc] redirect_uri `{}` must be an http(s) URL without a fragment",
                raw.redirect_uri
            );
        }
        let token_ttl = raw.token_ttl_seconds.unwrap_or(300);
        if !(30..=86400).contains(&token_ttl) {
            bail!("[oidc] token_ttl_seconds must be between 30 and 86400, not {token_ttl}");
        }
        Ok(Oidc {
            issuer,
            client_id: raw.client_id,
            client_secret,
            redirect_uri: raw.redirect_uri,
            token_ttl,
            key: Arc::new(SigningKey::load_or_create(state)?),
        })
    }

    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }
}
