//! The background task that keeps the homeserver in step with the event:
//! every `sync_interval` (or at once when woken) one idempotent pass. Rooms
//! are found by alias, so a restart finds what the last run made; state is
//! only written when it differs from what the homeserver holds. A room the
//! homeserver refuses stops only that room; a homeserver that does not
//! answer stops the pass.

use std::sync::Arc;

use anyhow::{anyhow, Result};
use chrono::{DateTime, Utc};

use super::matrix::CallError;
use super::plan::Planned;
use super::Chat;
use crate::state::AppState;

/// How soon a failed pass is tried again, at most.
const RETRY: std::time::Duration = std::time::Duration::from_secs(5);

/// Starts the sync of `state.chat` (if configured) in the background.
pub fn spawn(state: Arc<AppState>) {
    let Some(chat) = state.chat.clone() else {
        return;
    };
    tokio::spawn(async move {
        // The last failure said, so that a different one is said again.
        let (mut failing, mut first): (Option<String>, bool) = (None, true);
        loop {
            match chat.pass(&state, Utc::now()).await {
                Ok(()) => {
                    if failing.is_some() {
                        tracing::info!("chat: the homeserver is in step again");
                    } else if first {
                        tracing::info!("chat: the homeserver is in step");
                    }
                    (failing, first) = (None, false);
                }
                Err(e) => {
                    if refused_token(&e) {
                        chat.forget_bot();
                    }
                    let said = format!("{e:#}");
                    // A repeat (a homeserver still starting) only at debug
                    // level; a new cause (one that will not pass by itself,
                    // such as a lost bot token) as a warning again.
                    if failing.as_deref() == Some(said.as_str()) {
                        tracing::debug!(error = %said, "chat: sync failed");
                    } else {
                        tracing::warn!(error = %said, "chat: sync failed; retrying");
                        failing = Some(said);
                    }
                }
            }
            // A failed pass (a homeserver restarting) is tried again soon.
            let wait = match failing {
                Some(_) => chat.config.sync_interval.min(RETRY),
                None => chat.config.sync_interval,
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = chat.wake.notified() => {}
            }
        }
    });
}

impl Chat {
    /// One pass: revocations first, then rooms, users, invites, power
    /// levels, topics, questions.
    pub async fn pass(&self, state: &AppState, now: DateTime<Utc>) -> Result<()> {
        let ev = &state.event;
        let bot = self.ensure_bot(&ev.name).await?;
        self.deactivate_revoked(&bot, state, now).await?;
        // Every room hangs off the space: without it, nothing else.
        let space = self
            .ensure_room(&bot, state, &self.plan[0], None, now)
            .await?;
        let mut refused = Refused::default();
        for p in &self.plan[1..] {
            let made = self.ensure_room(&bot, state, p, Some(&space), now).await;
            refused.note(p, made)?;
        }
        self.map_users(&bot, state).await?;
        let users = state.store.chat_users()?;
        for u in users.iter().filter(|u| !u.in_space) {
            self.matrix
                .admin_join(&bot.token, &space, &u.user_id)
                .await?;
            state.store.chat_set_in_space(&u.sub)?;
        }
        for p in &self.plan[1..] {
            let kept = self.keep_room(&bot, state, p, &users, now).await;
            refused.note(p, kept)?;
        }
        self.questions(&bot, state).await?;
        refused.result()
    }
}

/// The rooms a pass could not bring in step, and why.
#[derive(Default)]
struct Refused(Vec<String>);

impl Refused {
    /// Keeps a room's error and lets the pass go on, unless every other
    /// room would fail the same way (`CallError::stops_pass`).
    fn note<T>(&mut self, p: &Planned, r: Result<T>) -> Result<()> {
        match r {
            Ok(_) => Ok(()),
            Err(e) if stops_pass(&e) => Err(e),
            Err(e) => {
                self.0.push(format!("#{}: {e:#}", p.alias));
                Ok(())
            }
        }
    }

    fn result(self) -> Result<()> {
        match self.0.len() {
            0 => Ok(()),
            n => Err(anyhow!(
                "{n} room{} not in step (the others are): {}",
                if n == 1 { " is" } else { "s are" },
                self.0.join("; ")
            )),
        }
    }
}

fn call_error(e: &anyhow::Error) -> Option<&CallError> {
    e.chain().find_map(|c| c.downcast_ref::<CallError>())
}

fn stops_pass(e: &anyhow::Error) -> bool {
    call_error(e).is_some_and(CallError::stops_pass)
}

/// The homeserver refused the bot's token (it was logged out, or the
/// helper that holds it was deactivated).
fn refused_token(e: &anyhow::Error) -> bool {
    call_error(e).is_some_and(|c| c.status() == Some(401))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::plan::Kind;

    fn planned(alias: &str) -> Planned {
        Planned {
            alias: alias.into(),
            name: alias.into(),
            kind: Kind::Public,
            room: None,
            backstage: false,
        }
    }

    fn refused(status: u16) -> anyhow::Error {
        anyhow::Error::new(CallError::Matrix {
            what: "set m.space.parent of !x".into(),
            status,
            errcode: "M_FORBIDDEN".into(),
            error: "not in room".into(),
        })
        .context("while keeping the room")
    }

    #[test]
    fn a_refused_room_is_kept_for_the_end_and_an_unavailable_homeserver_stops_the_pass() {
        let mut r = Refused::default();
        r.note(&planned("a"), Err::<(), _>(refused(403))).unwrap();
        r.note(&planned("b"), Ok(())).unwrap();
        r.note(
            &planned("c"),
            Err::<(), _>(anyhow!("points to a room made by @m")),
        )
        .unwrap();
        // A 502 (nginx before a stopped Synapse) or no answer stop at once.
        assert!(r.note(&planned("d"), Err::<(), _>(refused(502))).is_err());
        let no_answer = anyhow::Error::new(CallError::Http {
            what: "create #e".into(),
            error: "connection refused".into(),
            timed_out: false,
        });
        assert!(r.note(&planned("e"), Err::<(), _>(no_answer)).is_err());
        // So do a refused token and a rate limit: every room would meet them.
        for (status, errcode) in [
            (401, "M_UNKNOWN_TOKEN"),
            (429, "M_LIMIT_EXCEEDED"),
            (403, "M_USER_DEACTIVATED"),
        ] {
            let e = anyhow::Error::new(CallError::Matrix {
                what: "create #f".into(),
                status,
                errcode: errcode.into(),
                error: String::new(),
            });
            assert_eq!(refused_token(&e), status == 401);
            assert!(r.note(&planned("f"), Err::<(), _>(e)).is_err(), "{status}");
        }
        let said = format!("{:#}", r.result().unwrap_err());
        assert!(said.starts_with("2 rooms are not in step (the others are): #a: while keeping the room: set m.space.parent of !x: the homeserver answered 403"), "{said}");
        assert!(said.contains("; #c: points to a room made by @m"), "{said}");
        assert!(Refused::default().result().is_ok());
    }
}
