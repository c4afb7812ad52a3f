//! Ticket holders on the homeserver: which Matrix user each subject became
//! at its first login, and the deactivation of those whose ticket was
//! revoked.

use anyhow::Result;
use chrono::{DateTime, Utc};

use super::{Bot, Chat};
use crate::state::AppState;

impl Chat {
    /// Learns the Matrix user of every subject that logged in (they exist
    /// on the homeserver only after their first login).
    pub(super) async fn map_users(&self, bot: &Bot, state: &AppState) -> Result<()> {
        for (ticket_id, sub) in state.store.chat_unmapped()? {
            if let Some(user) = self
                .matrix
                .user_by_external_id(&bot.token, &self.config.auth_provider, &sub)
                .await?
            {
                tracing::info!(ticket = ticket_id, user = %user, "chat: a ticket holder is on the homeserver");
                state.store.chat_map_user(ticket_id, &sub, &user)?;
            }
        }
        Ok(())
    }

    /// Deactivates the Matrix user of every revoked subject, known to the
    /// sync or not (revoked before a pass saw its login).
    pub(super) async fn deactivate_revoked(
        &self,
        bot: &Bot,
        state: &AppState,
        now: DateTime<Utc>,
    ) -> Result<()> {
        for r in state.store.chat_revocations()? {
            let user = match r.user_id {
                Some(u) => Some(u),
                None => {
                    self.matrix
                        .user_by_external_id(&bot.token, &self.config.auth_provider, &r.sub)
                        .await?
                }
            };
            match user {
                Some(user) => match self.matrix.deactivate(&bot.token, &user).await {
                    Ok(()) => tracing::info!(
                        ticket = r.ticket_id,
                        user = %user,
                        "chat: deactivated the user of a revoked ticket"
                    ),
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e.into()),
                },
                None if !no_account_for_good(r.revoked, now) => continue,
                None => tracing::debug!(
                    ticket = r.ticket_id,
                    "chat: a revoked ticket never had a Matrix user"
                ),
            }
            state.store.chat_revocation_done(&r.sub)?;
        }
        Ok(())
    }
}

/// How long a revoked subject the homeserver does not know is asked for
/// again: a login whose code was redeemed just before the revocation may
/// still be making its account.
const LATE_ACCOUNT_SECS: i64 = 600;

/// Whether a revoked subject the homeserver does not know (404) will never
/// have an account: its code is redeemed only while the ticket lives, so
/// an account comes, if at all, within a login's duration.
fn no_account_for_good(revoked: i64, now: DateTime<Utc>) -> bool {
    now.timestamp() - revoked >= LATE_ACCOUNT_SECS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_revoked_subject_is_asked_for_again_for_a_while() {
        let now = Utc::now();
        let t = now.timestamp();
        assert!(!no_account_for_good(t, now));
        assert!(!no_account_for_good(t - LATE_ACCOUNT_SECS + 1, now));
        assert!(no_account_for_good(t - LATE_ACCOUNT_SECS, now));
        // Queued before revocations had a time: known users only.
        assert!(no_account_for_good(0, now));
    }
}
