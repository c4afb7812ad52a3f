//! The portal's bot account: registered once with Synapse's shared secret
//! (as an admin, so it can look users up, join them to the space and
//! deactivate them), its access token kept in the state directory with
//! mode 0600. A token the homeserver refuses (a new homeserver database)
//! is replaced by registering again.

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
        Err(e) if e.errcode() == Some("M_USER_IN_USE") => bail!(
            "chat: the bot {want} exists on the homeserver but its token is lost ({} is missing or refused): \
             set another [chat] bot_localpart, or put a token of {want} into that file",
            c.token_file.display()
        ),
        Err(e) => return Err(e.into()),
    };
    if user_id != want || token.is_empty() {
        bail!("chat: registering the bot gave {user_id:?}, expected {want}");
    }
    crate::config::write_private(&c.token_file, token.as_bytes())
        .with_context(|| "chat: cannot keep the bot's token")?;
    Ok(Bot { user_id, token })
}
