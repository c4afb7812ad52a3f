//! The event's rooms on the homeserver: found by alias or made, a room
//! whose creation was cut made again, linked into the space, and kept in
//! step (invites, power levels, topic).
//!
//! Synapse's createRoom (handlers/room.py, 1.163.2) sets the alias before
//! it stores the room's first event, then stores the create event and the
//! creator's join one by one, and the rest (power levels, join rules,
//! name, topic, …) as one batch. A homeserver that stops in between leaves
//! an alias that points to a room the bot is not in, or one without join
//! rules (invite only, nameless). Such a room never held anything: the
//! portal moves the alias to a new room rather than patch the old one.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::plan::{self, Kind, Planned};
use super::store::ChatUser;
use super::{Bot, Chat, Known};
use crate::state::AppState;

/// How long after giving up on a createRoom its room may still be in the
/// making (Synapse does not cancel a request whose client went away).
const STILL_RUNNING: Duration = Duration::from_secs(60);

/// What a room found by its alias is to the portal.
#[derive(Debug, PartialEq)]
pub(crate) enum Found {
    /// Made by the bot, whole, the bot in it.
    Ready,
    /// Whole and made by the bot, which is not in it (any more).
    Left,
    /// Made by the bot, its creation cut short.
    HalfMade,
    /// Made by someone else (the named user), or by nobody known.
    NotOurs(String),
}

/// Sorts a found room by its current state events (as Synapse's admin API
/// gives them) and, when no create event was stored, the homeserver's own
/// record of its creator.
pub(crate) fn classify(state: &[Value], creator: Option<&str>, bot: &str) -> Found {
    let get = |kind: &str, key: &str| {
        state
            .iter()
            .find(|e| e["type"] == kind && e["state_key"] == key)
    };
    let creator = get("m.room.create", "")
        .and_then(|e| e["sender"].as_str())
        .or(creator);
    match creator {
        Some(c) if c == bot => {}
        Some(c) => return Found::NotOurs(c.to_owned()),
        None => return Found::NotOurs("nobody known".to_owned()),
    }
    let joined = get("m.room.member", bot).is_some_and(|e| e["content"]["membership"] == "join");
    // Join rules and power levels come in createRoom's last batch (stored
    // in one transaction): without both, and with nobody but the bot in
    // it, the room was cut short. A room with either, or with anyone else
    // (a room an earlier portal patched by hand, say), is taken as whole.
    let others = state
        .iter()
        .any(|e| e["type"] == "m.room.member" && e["state_key"] != bot);
    let whole = get("m.room.join_rules", "").is_some()
        || get("m.room.power_levels", "").is_some()
        || others;
    match (whole, joined) {
        (true, true) => Found::Ready,
        (true, false) => Found::Left,
        (false, _) => Found::HalfMade,
    }
}

impl Chat {
    /// Finds the room by its alias or makes it; links public rooms into the
    /// space (once per run: the homeserver ignores an unchanged state event).
    pub(super) async fn ensure_room(
        &self,
        bot: &Bot,
        state: &AppState,
        p: &Planned,
        space: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<String> {
        if let Ok(id) = self.room_id(&p.alias) {
            return Ok(id);
        }
        let alias = self.config.alias(&p.alias);
        let found = match self.matrix.resolve_alias(&bot.token, &alias).await? {
            Some(id) => self.usable(bot, state, p, &alias, id).await?,
            None => None,
        };
        let id = match found {
            Some(id) => id,
            None => self.create(bot, state, p, space, now, &alias).await?,
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

    /// The room an alias points to, if the portal can use it: rejoined if
    /// the bot left it; None (to make it again) if its creation was cut.
    async fn usable(
        &self,
        bot: &Bot,
        state: &AppState,
        p: &Planned,
        alias: &str,
        id: String,
    ) -> Result<Option<String>> {
        let events = self.matrix.admin_room_state(&bot.token, &id).await?;
        let creator = if events.iter().any(|e| e["type"] == "m.room.create") {
            None
        } else {
            self.matrix.admin_room_creator(&bot.token, &id).await?
        };
        match classify(&events, creator.as_deref(), &bot.user_id) {
            Found::Ready => Ok(Some(id)),
            Found::Left => {
                self.matrix.join(&bot.token, &id).await.with_context(|| {
                    format!("{alias} ({id}) is the portal's, but its bot is not in it")
                })?;
                tracing::info!(room = %alias, "chat: the bot joined its room again");
                Ok(Some(id))
            }
            Found::HalfMade => {
                if let Some(ago) = self.still_running(&p.alias) {
                    bail!(
                        "{alias} ({id}) is half made, but the createRoom given up on {}s ago \
                         may still finish it: looked at again later",
                        ago.as_secs()
                    );
                }
                self.abandon(bot, state, p, alias, &id).await?;
                Ok(None)
            }
            Found::NotOurs(creator) => Err(anyhow!(
                "{alias} points to {id}, a room made by {creator}, not by the portal: \
                 the portal leaves it alone (remove that alias to have the portal make the room)"
            )),
        }
    }

    /// Moves the alias off a room whose creation was cut, and forgets what
    /// the store says of it.
    async fn abandon(
        &self,
        bot: &Bot,
        state: &AppState,
        p: &Planned,
        alias: &str,
        id: &str,
    ) -> Result<()> {
        tracing::warn!(room = %alias, id, "chat: a room whose creation was cut (the homeserver stopped during it); making it again");
        match self.matrix.delete_alias(&bot.token, alias).await {
            Err(e) if !e.is_not_found() => return Err(e.into()),
            _ => {}
        }
        // The room stays, with nobody in it: Synapse's purge of a room
        // holding only its create event never ends (its delete status
        // stays "active"; seen with 1.163.2), and it is in no directory
        // (chat.nix sets no room_list_publication_rules: Synapse lists no
        // room).
        let ev = &state.event;
        let sessions: Vec<&str> = match (&p.room, p.backstage) {
            (Some(room), true) => ev
                .sessions
                .iter()
                .filter(|s| s.room == *room)
                .map(|s| s.guid.as_str())
                .collect(),
            _ => Vec::new(),
        };
        state
            .store
            .chat_forget_room(&p.alias, p.kind == Kind::Space, &sessions)
    }

    /// `POST /createRoom` for a planned room; an alias taken meanwhile gives
    /// that room if the portal can use it. A createRoom given up on while
    /// the homeserver may still carry it out is remembered, so that its
    /// half-made room is not taken for a cut one at once.
    async fn create(
        &self,
        bot: &Bot,
        state: &AppState,
        p: &Planned,
        space: Option<&str>,
        now: DateTime<Utc>,
        alias: &str,
    ) -> Result<String> {
        let created = self
            .matrix
            .create_room(
                &bot.token,
                &format!("create {alias}"),
                &self.create_body(p, space, &state.event, now),
            )
            .await;
        self.given_up
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&p.alias);
        match created {
            Ok(id) => {
                tracing::info!(room = %alias, "chat: made the room");
                Ok(id)
            }
            // Taken meanwhile: that room, if the portal can use it.
            Err(e) if e.errcode() == Some("M_ROOM_IN_USE") => {
                let Some(id) = self.matrix.resolve_alias(&bot.token, alias).await? else {
                    return Err(e.into());
                };
                self.usable(bot, state, p, alias, id).await?.ok_or_else(|| {
                    anyhow!("{alias} was taken meanwhile by a room cut short: made again by the next pass")
                })
            }
            Err(e) => {
                if e.may_still_run() {
                    self.given_up
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(p.alias.clone(), Instant::now());
                }
                Err(e.into())
            }
        }
    }

    /// How long ago a createRoom of this room was given up on, if the
    /// homeserver may still be carrying it out.
    fn still_running(&self, alias: &str) -> Option<Duration> {
        let mut given_up = self.given_up.lock().unwrap_or_else(|e| e.into_inner());
        let ago = given_up.get(alias)?.elapsed();
        if ago < STILL_RUNNING {
            return Some(ago);
        }
        given_up.remove(alias);
        None
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

    /// Invites, power levels and topic of one room.
    pub(super) async fn keep_room(
        &self,
        bot: &Bot,
        state: &AppState,
        p: &Planned,
        users: &[ChatUser],
        now: DateTime<Utc>,
    ) -> Result<()> {
        let ev = &state.event;
        let Some(known) = self
            .rooms
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&p.alias)
            .cloned()
        else {
            // Not made (yet): its error is said by `ensure_room`.
            return Ok(());
        };
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
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOT: &str = "@portal:venue.test";

    fn ev(kind: &str, key: &str, sender: &str, content: Value) -> Value {
        json!({"type": kind, "state_key": key, "sender": sender, "content": content})
    }

    #[test]
    fn a_found_room_is_sorted_by_who_made_it_and_how_far_its_creation_got() {
        let create = ev("m.room.create", "", BOT, json!({}));
        let join = ev("m.room.member", BOT, BOT, json!({"membership": "join"}));
        let rules = ev("m.room.join_rules", "", BOT, json!({"join_rule": "public"}));
        let power = ev("m.room.power_levels", "", BOT, json!({}));
        // Whole, and the bot in it.
        let whole = [create.clone(), join.clone(), power.clone(), rules.clone()];
        assert_eq!(classify(&whole, None, BOT), Found::Ready);
        // Cut before any event was stored: the homeserver's record says who.
        assert_eq!(classify(&[], Some(BOT), BOT), Found::HalfMade);
        // Cut after the create event, and after the creator's join.
        assert_eq!(
            classify(std::slice::from_ref(&create), None, BOT),
            Found::HalfMade
        );
        assert_eq!(
            classify(&[create.clone(), join.clone()], None, BOT),
            Found::HalfMade
        );
        // Whole, the bot gone.
        let left = ev("m.room.member", BOT, BOT, json!({"membership": "leave"}));
        assert_eq!(
            classify(&[create.clone(), left, power, rules.clone()], None, BOT),
            Found::Left
        );
        // Someone else's, even when the record would say the bot's.
        let theirs = ev("m.room.create", "", "@mallory:venue.test", json!({}));
        assert_eq!(
            classify(&[theirs, rules], Some(BOT), BOT),
            Found::NotOurs("@mallory:venue.test".into())
        );
        assert_eq!(
            classify(&[], None, BOT),
            Found::NotOurs("nobody known".into())
        );
        // Another member's join is not the bot's: whole (someone is in
        // it), the bot gone.
        let other = ev(
            "m.room.member",
            "@ada:venue.test",
            "@ada:venue.test",
            json!({"membership": "join"}),
        );
        assert_eq!(classify(&[create.clone(), other], None, BOT), Found::Left);
        // Power levels without join rules: patched by hand, not cut.
        let power_only = [create, join, ev("m.room.power_levels", "", BOT, json!({}))];
        assert_eq!(classify(&power_only, None, BOT), Found::Ready);
    }
}
