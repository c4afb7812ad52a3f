//! Chat on the event's Matrix homeserver, kept in step with the event by
//! the portal (ticket holders log in there through `crate::oidc`).
//!
//! - `config`: `[chat]`;
//! - `matrix`: the client-server and Synapse admin API calls;
//! - `plan`: the space, rooms and backstages the event needs, their topics
//!   and who moderates or is invited (pure);
//! - `bot`: the portal's own (admin) account, made once with Synapse's
//!   shared-secret registration, its token in the state directory;
//! - `sync`: the background task and its pass, which makes the homeserver
//!   hold the plan through `rooms` (found, made, remade when their creation
//!   was cut, invites, power levels, topics), `accounts` (tickets mapped
//!   to Matrix users, revoked ones deactivated) and `questions` (posted,
//!   and the backstage's "Top questions");
//! - `store`: the chat's tables; `pages`: the Watch page's chat, the Q&A
//!   and the directory.

mod accounts;
pub mod bot;
pub mod config;
pub mod matrix;
pub mod pages;
pub mod plan;
mod questions;
mod rooms;
pub mod store;
pub mod sync;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use conference::Event;
use serde_json::{json, Value};

use config::ChatConfig;
use matrix::Matrix;
use plan::Planned;

/// The bot's identity on the homeserver. Not `Debug`: the token stays out
/// of logs.
#[derive(Clone)]
pub struct Bot {
    pub user_id: String,
    pub token: String,
}

/// A room as the sync last saw it.
#[derive(Clone, Default)]
struct Known {
    id: String,
    topic: Option<String>,
    power: Option<Value>,
}

/// One message as the portal shows it.
#[derive(Debug, Clone)]
pub struct Line {
    pub sender: String,
    pub body: String,
    pub ts: i64,
    pub via_portal: bool,
}

/// A room's latest messages and when they were read.
type Recent = (Instant, Arc<Vec<Line>>);

/// How long the Watch page's messages are reused (a page view reads the
/// homeserver at most this often per room).
const RECENT_TTL: Duration = Duration::from_secs(2);

/// The custom field of messages the bot posts for a ticket holder: whom
/// they come from, and the text alone. Trusted only from the bot.
pub const VIA: &str = "org.venue.portal";

pub struct Chat {
    pub config: ChatConfig,
    pub element_url: String,
    pub plan: Vec<Planned>,
    matrix: Matrix,
    bot: RwLock<Option<Bot>>,
    rooms: Mutex<HashMap<String, Known>>,
    /// Rooms whose createRoom was given up on while the homeserver may
    /// still carry it out, and when.
    given_up: Mutex<HashMap<String, Instant>>,
    recent: Mutex<HashMap<String, Recent>>,
    wake: tokio::sync::Notify,
}

impl Chat {
    pub fn new(config: ChatConfig, event: &Event) -> Result<Chat> {
        let element_url = config
            .element_url
            .clone()
            .unwrap_or_else(|| format!("https://chat.{}", event.domain));
        Ok(Chat {
            matrix: Matrix::new(&config.homeserver_url),
            plan: plan::rooms(event)?,
            element_url,
            config,
            bot: RwLock::new(None),
            rooms: Mutex::new(HashMap::new()),
            given_up: Mutex::new(HashMap::new()),
            recent: Mutex::new(HashMap::new()),
            wake: tokio::sync::Notify::new(),
        })
    }

    /// Element's link to the room of `alias` (a localpart).
    pub fn element_room(&self, alias: &str) -> String {
        format!("{}/#/room/{}", self.element_url, self.config.alias(alias))
    }

    pub fn element_user(&self, user_id: &str) -> String {
        format!("{}/#/user/{user_id}", self.element_url)
    }

    /// Runs the sync now rather than at its next interval.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Drops the bot's cached token (the homeserver refused it), so that
    /// the next pass checks it and gets a new one.
    fn forget_bot(&self) {
        *self.bot.write().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn bot(&self) -> Result<Bot> {
        self.bot
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| {
                anyhow!("the chat is not ready yet (the portal has not reached the homeserver)")
            })
    }

    fn room_id(&self, alias: &str) -> Result<String> {
        self.rooms
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(alias)
            .map(|k| k.id.clone())
            .ok_or_else(|| anyhow!("the chat room #{alias} is not made yet"))
    }

    /// The room's latest messages, oldest first, read through the bot.
    pub async fn recent(&self, alias: &str, limit: u32) -> Result<Arc<Vec<Line>>> {
        if let Some((at, lines)) = self
            .recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(alias)
        {
            if at.elapsed() < RECENT_TTL {
                return Ok(lines.clone());
            }
        }
        let bot = self.bot()?;
        let room = self.room_id(alias)?;
        let v = self.matrix.messages(&bot.token, &room, limit).await?;
        let lines = Arc::new(lines_of(&v, &bot.user_id));
        self.recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(alias.to_owned(), (Instant::now(), lines.clone()));
        Ok(lines)
    }

    /// Posts `text` in the room for a ticket holder, attributed to them.
    pub async fn post_for(&self, alias: &str, name: &str, text: &str) -> Result<()> {
        let bot = self.bot()?;
        let room = self.room_id(alias)?;
        self.matrix
            .send(&bot.token, &room, &attributed(name, text, None))
            .await?;
        self.recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(alias);
        Ok(())
    }
}

/// A message the bot posts for `name`: the body says who (Element shows
/// the bot as sender), `VIA` carries name and text for the portal.
pub fn attributed(name: &str, text: &str, kind: Option<&str>) -> Value {
    let label = match kind {
        Some(k) => format!("{name} (via portal) {k}"),
        None => format!("{name} (via portal)"),
    };
    json!({
        "msgtype": "m.text",
        "body": format!("{label}: {text}"),
        VIA: {"name": name, "text": text},
    })
}

/// The lines of a `/messages` answer (newest first), oldest first; the
/// senders' names from the lazy-loaded member events.
pub fn lines_of(v: &Value, bot: &str) -> Vec<Line> {
    let mut names: HashMap<&str, &str> = HashMap::new();
    for e in v["state"].as_array().into_iter().flatten() {
        if e["type"] == "m.room.member" {
            if let (Some(k), Some(n)) = (
                e["state_key"].as_str(),
                e["content"]["displayname"].as_str(),
            ) {
                names.insert(k, n);
            }
        }
    }
    let mut out: Vec<Line> = v["chunk"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["type"] == "m.room.message")
        // Edits show as the message they replace.
        .filter(|e| e["content"]["m.relates_to"]["rel_type"] != "m.replace")
        .filter_map(|e| {
            let body = e["content"]["body"].as_str()?;
            let sender = e["sender"].as_str().unwrap_or("?");
            let via = &e["content"][VIA];
            let (who, body, via_portal) =
                match (sender == bot, via["name"].as_str(), via["text"].as_str()) {
                    (true, Some(n), Some(t)) => (format!("{n} (via portal)"), t.to_owned(), true),
                    _ => (
                        names
                            .get(sender)
                            .map(|n| n.to_string())
                            .unwrap_or_else(|| sender.to_owned()),
                        body.to_owned(),
                        false,
                    ),
                };
            Some(Line {
                sender: who,
                body,
                ts: e["origin_server_ts"].as_i64().unwrap_or(0),
                via_portal,
            })
        })
        .collect();
    out.reverse();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn portal_posts_are_attributed_only_when_the_bot_sent_them() {
        let v = json!({
            "chunk": [
                {"type": "m.room.message", "sender": "@mallory:s", "origin_server_ts": 3,
                 "content": {"msgtype": "m.text", "body": "fake", VIA: {"name": "Ada", "text": "fake"}}},
                {"type": "m.room.message", "sender": "@portal:s", "origin_server_ts": 2,
                 "content": attributed("Ada", "hello", None)},
                {"type": "m.room.message", "sender": "@bob:s", "origin_server_ts": 1,
                 "content": {"msgtype": "m.text", "body": "hi all"}},
            ],
            "state": [{"type": "m.room.member", "state_key": "@bob:s", "content": {"displayname": "Bob B"}}]
        });
        let lines = lines_of(&v, "@portal:s");
        let got: Vec<(&str, &str, bool)> = lines
            .iter()
            .map(|l| (l.sender.as_str(), l.body.as_str(), l.via_portal))
            .collect();
        assert_eq!(
            got,
            [
                ("Bob B", "hi all", false),
                ("Ada (via portal)", "hello", true),
                ("@mallory:s", "fake", false),
            ]
        );
    }
}
