//! The background task that keeps the homeserver in step with the event:
//! every `sync_interval` (or at once when woken) one idempotent pass. Rooms
//! are found by alias, so a restart finds what the last run made; state is
//! only written when it differs from what the homeserver holds.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Result;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::plan::{self, Kind, Planned};
use super::store::ChatUser;
use super::{attributed, Bot, Chat, Known};
use crate::state::AppState;

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
            tokio::select! {
                _ = tokio::time::sleep(chat.config.sync_interval) => {}
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
        let space = self.ensure_room(&bot, &self.plan[0], None, ev, now).await?;
        for p in &self.plan[1..] {
            self.ensure_room(&bot, p, Some(&space), ev, now).await?;
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
            self.keep_room(&bot, state, p, &users, now).await?;
        }
        self.questions(&bot, state).await
    }

    /// Finds the room by its alias or makes it; links public rooms into the
    /// space (once per run: the homeserver ignores an unchanged state event).
    async fn ensure_room(
        &self,
        bot: &Bot,
        p: &Planned,
        space: Option<&str>,
        ev: &conference::Event,
        now: DateTime<Utc>,
    ) -> Result<String> {
        if let Ok(id) = self.room_id(&p.alias) {
            return Ok(id);
        }
        let alias = self.config.alias(&p.alias);
        let id = match self.matrix.resolve_alias(&bot.token, &alias).await? {
            Some(id) => id,
            None => {
                let created = self
                    .matrix
                    .create_room(
                        &bot.token,
                        &format!("create {alias}"),
                        &self.create_body(p, space, ev, now),
                    )
                    .await;
                match created {
                    Ok(id) => {
                        tracing::info!(room = %alias, "chat: made the room");
                        id
                    }
                    Err(e) if e.errcode() == Some("M_ROOM_IN_USE") => self
                        .matrix
                        .resolve_alias(&bot.token, &alias)
                        .await?
                        .ok_or(e)?,
                    Err(e) => return Err(e.into()),
                }
            }
        };
        if let (Some(space), Kind::Public) = (space, p.kind) {
            let via = json!({"via": [self.config.server_name]});
            self.matrix
                .put_state(
                    &bot.token,
                    space,
                    "m.space.child",
                    &id,
                    &json!({"via": [self.config.server_name], "suggested": true}),
                )
                .await?;
            let mut parent = via.clone();
            parent["canonical"] = json!(true);
            self.matrix
                .put_state(&bot.token, &id, "m.space.parent", space, &parent)
                .await?;
        }
        self.rooms.lock().unwrap_or_else(|e| e.into_inner()).insert(
            p.alias.clone(),
            Known {
                id: id.clone(),
                ..Known::default()
            },
        );
        Ok(id)
    }

    fn create_body(
        &self,
        p: &Planned,
        space: Option<&str>,
        ev: &conference::Event,
        now: DateTime<Utc>,
    ) -> Value {
        let public = p.kind != Kind::Private;
        // The bot makes every room: as its creator it has all power (room
        // version 12 forbids naming the creator in `users`; older ones give
        // the creator 100 by default).
        let mut power = json!({});
        if p.kind == Kind::Space {
            // Only the portal adds rooms to the space.
            power["events_default"] = json!(100);
        }
        if !public {
            power["invite"] = json!(50);
        }
        let mut creation = json!({"m.federate": false});
        if p.kind == Kind::Space {
            creation["type"] = json!("m.space");
        }
        let mut body = json!({
            "room_alias_name": p.alias,
            "name": p.name,
            "topic": plan::topic(ev, p, now),
            "preset": if public { "public_chat" } else { "private_chat" },
            "visibility": if public { "public" } else { "private" },
            "creation_content": creation,
            "power_level_content_override": power,
        });
        if let (Some(space), Kind::Public) = (space, p.kind) {
            body["initial_state"] = json!([{
                "type": "m.space.parent", "state_key": space,
                "content": {"via": [self.config.server_name], "canonical": true}
            }]);
        }
        body
    }

    /// Learns the Matrix user of every subject that logged in (they exist
    /// on the homeserver only after their first login).
    async fn map_users(&self, bot: &Bot, state: &AppState) -> Result<()> {
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
    async fn deactivate_revoked(
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

    /// Invites, power levels and topic of one room.
    async fn keep_room(
        &self,
        bot: &Bot,
        state: &AppState,
        p: &Planned,
        users: &[ChatUser],
        now: DateTime<Utc>,
    ) -> Result<()> {
        let ev = &state.event;
        let known = self
            .rooms
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&p.alias)
            .cloned()
            .unwrap_or_default();
        let room = &known.id;
        if p.kind == Kind::Private {
            for u in users.iter().filter(|u| plan::invited(ev, &u.ticket, p)) {
                if state.store.chat_invited(&p.alias, &u.user_id)? {
                    continue;
                }
                match self.matrix.invite(&bot.token, room, &u.user_id).await {
                    Ok(()) => {}
                    // Already in the room (or invited by hand): nothing to do.
                    Err(e) if e.status() == Some(403) => {
                        tracing::debug!(error = %e, "chat: invite refused")
                    }
                    Err(e) => return Err(e.into()),
                }
                state.store.chat_set_invited(&p.alias, &u.user_id)?;
            }
        }
        let current = match known.power {
            Some(p) => p,
            None => self
                .matrix
                .state(&bot.token, room, "m.room.power_levels", "")
                .await?
                .unwrap_or_else(|| json!({})),
        };
        let mut want = current.clone();
        let mut levels: BTreeMap<String, Value> = current["users"]
            .as_object()
            .map(|m| m.clone().into_iter().collect())
            .unwrap_or_default();
        for u in users {
            if let Some(level) = plan::power(ev, &u.ticket, p) {
                let have = levels.get(&u.user_id).and_then(Value::as_i64).unwrap_or(0);
                if have < level {
                    levels.insert(u.user_id.clone(), json!(level));
                }
            }
        }
        want["users"] = json!(levels);
        if want != current {
            self.matrix
                .put_state(&bot.token, room, "m.room.power_levels", "", &want)
                .await?;
        }
        let topic = plan::topic(ev, p, now);
        let have_topic = match known.topic {
            Some(t) => Some(t),
            None => self
                .matrix
                .state(&bot.token, room, "m.room.topic", "")
                .await?
                .and_then(|v| v["topic"].as_str().map(str::to_owned)),
        };
        if have_topic.as_deref() != Some(topic.as_str()) {
            self.matrix
                .put_state(
                    &bot.token,
                    room,
                    "m.room.topic",
                    "",
                    &json!({"topic": topic}),
                )
                .await?;
            tracing::info!(room = %p.alias, topic = %topic, "chat: topic");
        }
        if let Some(k) = self
            .rooms
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(&p.alias)
        {
            k.power = Some(want);
            k.topic = Some(topic);
        }
        Ok(())
    }

    /// Posts new questions to their session's room, and keeps each
    /// backstage's "Top questions" message up to date (edited in place).
    async fn questions(&self, bot: &Bot, state: &AppState) -> Result<()> {
        let ev = &state.event;
        let room_of = |guid: &str| {
            ev.sessions
                .iter()
                .find(|s| s.guid == guid)
                .and_then(|s| ev.room(&s.room).map(|r| (s, r)))
        };
        for (id, guid, name, text) in state.store.unposted_questions()? {
            if let Some((_, room)) = room_of(&guid) {
                let target = self.room_id(&room.slug)?;
                self.matrix
                    .send(&bot.token, &target, &attributed(&name, &text, Some("asks")))
                    .await?;
                self.recent
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&room.slug);
            }
            state.store.set_question_posted(id)?;
        }
        for guid in state.store.sessions_with_questions()? {
            let Some((session, room)) = room_of(&guid) else {
                continue;
            };
            if room.kind != conference::RoomKind::Session {
                continue;
            }
            let body = top_questions(&session.title, &state.store.questions(&guid, None)?);
            let old = state.store.top_message(&guid)?;
            if old.as_ref().is_some_and(|(_, b)| *b == body) {
                continue;
            }
            let backstage = self.room_id(&plan::backstage_alias(&room.slug))?;
            let event_id = match &old {
                None => {
                    self.matrix
                        .send(
                            &bot.token,
                            &backstage,
                            &json!({"msgtype": "m.notice", "body": body}),
                        )
                        .await?
                }
                Some((orig, _)) => {
                    self.matrix
                        .send(
                            &bot.token,
                            &backstage,
                            &json!({
                                "msgtype": "m.notice",
                                "body": format!("* {body}"),
                                "m.new_content": {"msgtype": "m.notice", "body": body},
                                "m.relates_to": {"rel_type": "m.replace", "event_id": orig},
                            }),
                        )
                        .await?;
                    orig.clone()
                }
            };
            state.store.set_top_message(&guid, &event_id, &body)?;
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

/// The backstage's message: the ten questions with the most votes.
pub fn top_questions(title: &str, questions: &[super::store::Question]) -> String {
    let mut body = format!("Top questions — {title}");
    for (i, q) in questions
        .iter()
        .take(super::pages::TOP_QUESTIONS)
        .enumerate()
    {
        let votes = if q.votes == 1 { "vote" } else { "votes" };
        body.push_str(&format!(
            "\n{}. {} ({} {votes}, asked by {})",
            i + 1,
            q.text,
            q.votes,
            q.name
        ));
    }
    body
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
