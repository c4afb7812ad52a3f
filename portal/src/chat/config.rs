//! `[chat]` of the portal's configuration file: the event's Matrix
//! homeserver and how the portal's bot account is made on it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// `[chat]` as written in the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatFile {
    /// The homeserver's client API as the portal reaches it
    /// (`http://127.0.0.1:8008`); the admin API is under the same base.
    homeserver_url: String,
    /// The homeserver's `server_name`: user IDs and aliases end in it.
    server_name: String,
    /// Element's URL for links (default `https://chat.<event domain>`).
    element_url: Option<String>,
    /// Synapse's `registration_shared_secret_path`: the portal registers
    /// its bot account (an admin) with it, once.
    registration_shared_secret_file: PathBuf,
    /// The bot's localpart (default `portal`).
    bot_localpart: Option<String>,
    /// The IdP ID under which the homeserver records the portal's subjects
    /// (Synapse: `oidc-` + the provider's `idp_id`; default `oidc-venue`).
    auth_provider: Option<String>,
    /// Seconds between two passes of the room sync (default 30).
    sync_interval_seconds: Option<f64>,
}

/// The resolved `[chat]`.
#[derive(Clone)]
pub struct ChatConfig {
    pub homeserver_url: String,
    pub server_name: String,
    /// None: `https://chat.<event domain>` (see `Chat::new`).
    pub element_url: Option<String>,
    pub shared_secret: String,
    pub bot_localpart: String,
    pub auth_provider: String,
    pub sync_interval: Duration,
    /// Where the bot's access token is kept (mode 0600).
    pub token_file: PathBuf,
}

impl std::fmt::Debug for ChatConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatConfig")
            .field("homeserver_url", &self.homeserver_url)
            .field("server_name", &self.server_name)
            .field("element_url", &self.element_url)
            .field("bot_localpart", &self.bot_localpart)
            .finish_non_exhaustive()
    }
}

/// Matrix localparts (and alias localparts the portal makes): lower-case
/// letters, digits and `._=-/`.
pub fn valid_localpart(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._=-/".contains(&b))
}

impl ChatConfig {
    pub fn resolve(raw: ChatFile, state: &Path) -> Result<ChatConfig> {
        let url = |what: &str, u: &str| -> Result<String> {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                bail!("[chat] {what}: `{u}` must start with http:// or https://");
            }
            Ok(u.trim_end_matches('/').to_owned())
        };
        let homeserver_url = url("homeserver_url", &raw.homeserver_url)?;
        let server_name = raw.server_name.trim().to_owned();
        if server_name.is_empty()
            || !server_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
        {
            bail!(
                "[chat] server_name `{}` must be a host name (and optional port)",
                raw.server_name
            );
        }
        let element_url = raw
            .element_url
            .map(|u| url("element_url", &u))
            .transpose()?;
        let shared_secret = std::fs::read_to_string(&raw.registration_shared_secret_file)
            .with_context(|| {
                format!(
                    "[chat] cannot read the registration shared secret from {}",
                    raw.registration_shared_secret_file.display()
                )
            })?
            .trim()
            .to_owned();
        if shared_secret.len() < 16 {
            bail!(
                "[chat] the registration shared secret in {} is missing or too short (at least 16 characters)",
                raw.registration_shared_secret_file.display()
            );
        }
        let bot_localpart = raw.bot_localpart.unwrap_or_else(|| "portal".to_owned());
        if !valid_localpart(&bot_localpart) {
            bail!("[chat] bot_localpart `{bot_localpart}` must be lower-case letters, digits and ._=-/");
        }
        let interval = raw.sync_interval_seconds.unwrap_or(30.0);
        if !(0.2..=3600.0).contains(&interval) {
            bail!("[chat] sync_interval_seconds must be between 0.2 and 3600, not {interval}");
        }
        Ok(ChatConfig {
            homeserver_url,
            server_name,
            element_url,
            shared_secret,
            bot_localpart,
            auth_provider: raw.auth_provider.unwrap_or_else(|| "oidc-venue".to_owned()),
            sync_interval: Duration::from_secs_f64(interval),
            token_file: state.join("chat-bot-token"),
        })
    }

    pub fn user_id(&self, localpart: &str) -> String {
        format!("@{localpart}:{}", self.server_name)
    }

    pub fn alias(&self, localpart: &str) -> String {
        format!("#{localpart}:{}", self.server_name)
    }
}
