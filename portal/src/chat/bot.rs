//! The portal's bot account: registered once with Synapse's shared secret
//! (as an admin, so it can look users up, join them to the space and
//! deactivate them), its access token kept in the state directory with
//! mode 0600. A token the homeserver refuses (a new homeserver database)
//! is replaced by registering again; a bot that exists but whose token is
//! lost (a registration whose answer never came back, a state directory
//! made anew) gets a new token through Synapse's admin login.

use anyhow::{bail, Context, Result};

use super::matrix::Matrix;
use super::{Bot, Chat};

impl Chat {
    /// The bot, registered and checked; cached after the first success.
    pub(crate) async fn ensure_bot(&self, event_name: &str) -> Result<Bot> {
        if let Ok(b) = self.bot() {
            return Ok(b);
        }
        let bot = login(&self.matrix, &self.config, event_name).await?;
        // The bot posts for many people and keeps rooms in step: no rate limit.
        if let Err(e) = self.matrix.unlimit(&bot.token, &bot.user_id).await {
            tracing::warn!(error = %e, "chat: cannot lift the bot's rate limit");
        }
        *self.bot.write().unwrap_or_else(|e| e.into_inner()) = Some(bot.clone());
        tracing::info!(bot = %bot.user_id, "chat: the portal's bot is on the homeserver");
        Ok(bot)
    }
}

async fn login(m: &Matrix, c: &super::config::ChatConfig, event_name: &str) -> Result<Bot> {
    let want = c.user_id(&c.bot_localpart);
    if let Ok(token) = std::fs::read_to_string(&c.token_file) {
        let token = token.trim().to_owned();
        match m.whoami(&token).await {
            Ok(user) if user == want => {
                return Ok(Bot {
                    user_id: user,
                    token,
                })
            }
            Ok(user) => bail!(
                "chat: the token in {} is {user}'s, not the bot {want}'s",
                c.token_file.display()
            ),
            Err(e) if e.status() == Some(401) => {
                tracing::warn!(file = %c.token_file.display(), "chat: the homeserver refuses the bot's stored token; registering the bot again");
            }
            Err(e) => return Err(e.into()),
        }
    }
    let (user_id, token) = match m
        .register_with_shared_secret(
            &c.shared_secret,
            &c.bot_localpart,
            &format!("{event_name} portal"),
            true,
        )
        .await
    {
        Ok(r) => r,
        Err(e) if e.errcode() == Some("M_USER_IN_USE") => {
            tracing::warn!(bot = %want, file = %c.token_file.display(), "chat: the bot exists on the homeserver but its token is lost; logging it in through an admin");
            let token = recover(m, c, event_name, &want).await.with_context(|| {
                format!(
                    "chat: the bot {want} exists on the homeserver but its token is lost ({} is missing or refused), \
                     and logging it in again failed: set another [chat] bot_localpart, or put a token of {want} into that file",
                    c.token_file.display()
                )
            })?;
            (want.clone(), token)
        }
        Err(e) => return Err(e.into()),
    };
    if user_id != want || token.is_empty() {
        bail!("chat: registering the bot gave {user_id:?}, expected {want}");
    }
    crate::config::write_private(&c.token_file, token.as_bytes())
        .with_context(|| "chat: cannot keep the bot's token")?;
    Ok(Bot { user_id, token })
}

/// A new token for the existing bot `want`: a helper admin, registered with
/// the shared secret, logs in as the bot (Synapse's admin login; rest/admin/
/// users.py refuses only logging in as oneself). Synapse files that token
/// under the helper (access_tokens.user_id, with puppets_user_id the bot),
/// so the helper is not deactivated, which would end the bot's token too;
/// only its own session ends, and with passwords off nobody can use it.
/// Its rate limit is lifted like the bot's.
async fn recover(
    m: &Matrix,
    c: &super::config::ChatConfig,
    event_name: &str,
    want: &str,
) -> Result<String> {
    let helper = format!(
        "{}-keeper-{}",
        c.bot_localpart,
        conference::protocol::hex(&crate::random_bytes::<4>())
    );
    let (helper_id, helper_token) = m
        .register_with_shared_secret(
            &c.shared_secret,
            &helper,
            &format!("{event_name} portal (keeps the bot's token)"),
            true,
        )
        .await?;
    // Synapse reads most rate limits (room creation, invites, joins) off
    // the token's owner, which is the helper.
    if let Err(e) = m.unlimit(&helper_token, &helper_id).await {
        tracing::warn!(helper = %helper_id, error = %e, "chat: cannot lift the helper's rate limit");
    }
    let token = m.admin_login_as(&helper_token, want).await?;
    if let Err(e) = m.logout(&helper_token).await {
        tracing::warn!(helper = %helper_id, error = %e, "chat: cannot end the helper's own session");
    }
    match m.whoami(&token).await? {
        user if user == want => {
            tracing::info!(bot = %want, helper = %helper_id, "chat: the bot has a new token");
            Ok(token)
        }
        user => bail!("the admin login as {want} gave a token of {user:?}"),
    }
}
