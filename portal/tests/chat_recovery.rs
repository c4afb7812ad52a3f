//! The portal's chat sync recovers from what a homeserver that stops or
//! restarts leaves behind, on a real Synapse (as in tests/chat.rs):
//!
//! - a createRoom cut by a crash (a Synapse module stops the homeserver
//!   dead at a chosen event, common::synapse) at each point where Synapse
//!   1.163.2 stores a part of a new room: the alias with no event (room
//!   version 11), the create event alone, and the create event with the
//!   creator's join. The room is made again and ticket holders can join it;
//! - a room alias someone else holds: that room is reported, the others are
//!   made, and nothing of theirs is touched;
//! - a whole room the bot left is joined again, not made anew;
//! - a bot whose registration answer never came back (it exists, nobody
//!   has its token) gets a token and makes the rooms, its helper unlimited.
//!
//! Skips like tests/chat.rs without the Synapse virtualenv.

mod common;

use std::path::Path;

use common::chat::{alias, chat_portal, homeserver, homeserver_with, until, Mx, NO_STREAM, SERVER};
use common::oidc::{free_port, Browser, Provider};
use common::synapse::{crash_module, enc, matrix_login, venv, Synapse};
use common::{client, write_live_event, TempDir};
use portal::chat::matrix::Matrix;
use serde_json::{json, Value};

/// The event's planned aliases (localparts), the space first.
fn planned(event: &Path) -> Vec<(String, bool)> {
    let ev = conference::Event::load(event).unwrap();
    portal::chat::plan::rooms(&ev)
        .unwrap()
        .into_iter()
        .map(|p| (p.alias, p.kind != portal::chat::plan::Kind::Private))
        .collect()
}

/// The bot's client, with the token the portal keeps.
fn bot(p: &Provider, s: &Synapse) -> Mx {
    Mx {
        c: client(),
        url: s.url.clone(),
        token: std::fs::read_to_string(p.state.join("chat-bot-token"))
            .unwrap()
            .trim()
            .to_owned(),
    }
}

/// The room `local` points to, or None.
async fn resolve(mx: &Mx, local: &str) -> Option<String> {
    let (st, v) = mx
        .get(&format!(
            "/_matrix/client/v3/directory/room/{}",
            enc(&alias(local))
        ))
        .await;
    (st == 200).then(|| v["room_id"].as_str().unwrap().to_owned())
}

/// Waits for a pass that finds the homeserver in step, then checks every
/// planned room: made by the bot, the bot in it, whole (join rules as
/// planned, its name).
async fn all_rooms_whole(p: &Provider, s: &Synapse, event: &Path) {
    let logs = || format!("--- portal\n{}\n--- synapse\n{}", p.log(), s.log());
    until("a pass in step", 60, logs, || async {
        p.log()
            .contains("chat: the homeserver is in step")
            .then_some(())
    })
    .await;
    let b = bot(p, s);
    let me = b.get("/_matrix/client/v3/account/whoami").await.1["user_id"]
        .as_str()
        .unwrap()
        .to_owned();
    for (local, public) in planned(event) {
        let room = resolve(&b, &local)
            .await
            .unwrap_or_else(|| panic!("#{local} is not made\n{}", logs()));
        let (st, v) = b
            .get(&format!("/_synapse/admin/v1/rooms/{}/state", enc(&room)))
            .await;
        assert_eq!(st, 200, "{v}");
        let get = |kind: &str, key: &str| {
            v["state"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["type"] == kind && e["state_key"] == key)
                .map(|e| e["content"].clone())
                .unwrap_or(Value::Null)
        };
        assert_eq!(get("m.room.member", &me)["membership"], "join", "#{local}");
        let rule = if public { "public" } else { "invite" };
        assert_eq!(get("m.room.join_rules", "")["join_rule"], rule, "#{local}");
        assert!(get("m.room.name", "")["name"].is_string(), "#{local}");
    }
}

/// Registers `localpart` with the homeserver's shared secret (in the file
/// `secret`), as the portal's bot does; (user ID, access token).
async fn register(s: &Synapse, secret: &Path, localpart: &str, admin: bool) -> (String, String) {
    let secret = std::fs::read_to_string(secret).unwrap();
    Matrix::new(&s.url)
        .register_with_shared_secret(secret.trim(), localpart, localpart, admin)
        .await
        .unwrap()
}

/// Bob, a ticket holder, through the portal's SSO.
async fn bob(s: &Synapse) -> Mx {
    let c = client();
    let (_, token) = matrix_login(
        s,
        &mut Browser::default(),
        &c,
        "bob@example.org",
        "bob-ticket-0002",
    )
    .await;
    Mx {
        c,
        url: s.url.clone(),
        token,
    }
}

/// What Synapse's database holds of the room `local` points to while the
/// homeserver is down: (room ID, the types of its events).
fn stored(s_dir: &Path, local: &str) -> (String, Vec<String>) {
    let db = rusqlite::Connection::open(s_dir.join("homeserver.db")).unwrap();
    let room: String = db
        .query_row(
            "SELECT room_id FROM room_aliases WHERE room_alias = ?1",
            [alias(local)],
            |r| r.get(0),
        )
        .unwrap_or_else(|e| panic!("no alias {local} stored: {e}"));
    let mut stmt = db
        .prepare("SELECT type FROM events WHERE room_id = ?1 ORDER BY stream_ordering")
        .unwrap();
    let kinds = stmt
        .query_map([&room], |r| r.get(0))
        .unwrap()
        .collect::<Result<Vec<String>, _>>()
        .unwrap();
    (room, kinds)
}

/// The portal starts on a Synapse that dies while it makes the rooms, at
/// the event `trigger` names; the cut room must hold `cut` (event types)
/// when the homeserver is down, and after a restart the portal makes it
/// again, whole, and Bob can join it.
async fn recovers_from_a_crash(name: &str, trigger: &str, version: &str, cut: &[&str]) {
    let Some(venv) = venv() else { return };
    let dir = TempDir::new(name);
    let (sport, pport) = (free_port(), free_port());
    let s_dir = dir.path().join("synapse");
    let (modules, trigger_file) = crash_module(&s_dir);
    let (mut s, reg_secret) = homeserver_with(
        &venv,
        &dir,
        sport,
        pport,
        json!({"modules": modules, "default_room_version": version}),
    )
    .await;
    std::fs::write(&trigger_file, trigger).unwrap();
    let event = write_live_event(dir.path());
    let p = chat_portal(&dir, &s, pport, &event, &reg_secret, "0.5", NO_STREAM);

    // The homeserver dies in the middle of the first pass.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let died = loop {
        if let Some(status) = s.exited() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Synapse did not die at {trigger}\n{}",
            p.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(died.code(), Some(137), "{}", s.log());
    let (cut_room, kinds) = stored(&s_dir, "main-track");
    assert_eq!(kinds, cut, "Main Track's room as the crash left it");

    s.restart().await;
    all_rooms_whole(&p, &s, &event).await;
    let b = bot(&p, &s);
    let room = resolve(&b, "main-track").await.unwrap();
    assert_ne!(room, cut_room, "the alias still points to the cut room");
    assert!(
        p.log().contains("a room whose creation was cut"),
        "{}",
        p.log()
    );
    // Bob joins it.
    let bob = bob(&s).await;
    let (st, v) = bob.join(&alias("main-track")).await;
    assert_eq!(
        (st, v["room_id"].as_str()),
        (200, Some(room.as_str())),
        "{v}"
    );
}

#[tokio::test]
async fn a_room_cut_before_its_first_event_is_made_again() {
    // Room version 11 stores the room and its alias before the create event;
    // version 12 builds that event first, but a stop between the alias and
    // storing it leaves the same.
    recovers_from_a_crash("chat-cut-alias", "m.room.create 2", "11", &[]).await;
}

#[tokio::test]
async fn a_room_cut_after_its_create_event_is_made_again() {
    recovers_from_a_crash(
        "chat-cut-create",
        "m.room.member 2",
        "12",
        &["m.room.create"],
    )
    .await;
}

#[tokio::test]
async fn a_room_cut_after_the_bots_join_is_made_again() {
    recovers_from_a_crash(
        "chat-cut-join",
        "m.room.power_levels 2",
        "12",
        &["m.room.create", "m.room.member"],
    )
    .await;
}

#[tokio::test]
async fn an_alias_someone_else_holds_stops_only_that_room() {
    let Some(venv) = venv() else { return };
    let dir = TempDir::new("chat-squat");
    let (sport, pport) = (free_port(), free_port());
    let (s, reg_secret) = homeserver(&venv, &dir, sport, pport).await;
    // Mallory (not the portal) holds #hallway before the portal starts.
    let (mallory_id, token) = register(&s, &reg_secret, "mallory", false).await;
    let mallory = Mx {
        c: client(),
        url: s.url.clone(),
        token,
    };
    let (st, v) = mallory
        .call(
            reqwest::Method::POST,
            "/_matrix/client/v3/createRoom",
            Some(json!({"room_alias_name": "hallway", "preset": "public_chat"})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let theirs = v["room_id"].as_str().unwrap().to_owned();
    let event = write_live_event(dir.path());
    let p = chat_portal(&dir, &s, pport, &event, &reg_secret, "0.5", NO_STREAM);
    let logs = || format!("--- portal\n{}\n--- synapse\n{}", p.log(), s.log());

    // The pass says which room and why, and makes every other room.
    let want = format!("1 room is not in step (the others are): #hallway: #hallway:{SERVER} points to {theirs}, a room made by {mallory_id}, not by the portal");
    until("the pass's complaint", 30, logs, || async {
        p.log().contains(&want).then_some(())
    })
    .await;
    let b = bot(&p, &s);
    for (local, _) in planned(&event) {
        let room = resolve(&b, &local).await;
        if local == "hallway" {
            assert_eq!(
                room.as_deref(),
                Some(theirs.as_str()),
                "Mallory's alias moved"
            );
        } else {
            assert!(room.is_some(), "#{local} is not made\n{}", logs());
        }
    }
    // Her room is as she made it, the bot not in it, and the space does
    // not list it (the bot could write that).
    let (st, v) = b
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/state/m.space.child/{}",
            enc(&resolve(&b, "live").await.unwrap()),
            enc(&theirs)
        ))
        .await;
    assert_eq!(
        st, 404,
        "the portal linked Mallory's room into the space: {v}"
    );
    let (_, members) = mallory
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/joined_members",
            enc(&theirs)
        ))
        .await;
    assert_eq!(members["joined"].as_object().unwrap().len(), 1, "{members}");
    // Bob can use the other rooms.
    let bob = bob(&s).await;
    assert_eq!(bob.join(&alias("main-track")).await.0, 200);
}

#[tokio::test]
async fn a_room_the_bot_left_is_joined_again_and_kept() {
    let Some(venv) = venv() else { return };
    let dir = TempDir::new("chat-left");
    let (sport, pport) = (free_port(), free_port());
    let (s, reg_secret) = homeserver(&venv, &dir, sport, pport).await;
    let event = write_live_event(dir.path());
    let mut p = chat_portal(&dir, &s, pport, &event, &reg_secret, "0.5", NO_STREAM);
    all_rooms_whole(&p, &s, &event).await;
    let b = bot(&p, &s);
    let hallway = resolve(&b, "hallway").await.unwrap();
    let bob = bob(&s).await;
    assert_eq!(bob.join(&alias("hallway")).await.0, 200);
    bob.send(&hallway, "Bob was here").await;

    // Someone with the bot's token makes it leave; a new portal run finds
    // the room whole and joins it again rather than making another.
    drop(p.portal.take());
    let (st, v) = b
        .call(
            reqwest::Method::POST,
            &format!("/_matrix/client/v3/rooms/{}/leave", enc(&hallway)),
            Some(json!({})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    p.restart();
    let logs = || format!("--- portal\n{}\n--- synapse\n{}", p.log(), s.log());
    until("the bot back in #hallway", 30, logs, || async {
        p.log()
            .contains("chat: the bot joined its room again")
            .then_some(())
    })
    .await;
    all_rooms_whole(&p, &s, &event).await;
    assert_eq!(
        resolve(&b, "hallway").await.as_deref(),
        Some(hallway.as_str())
    );
    let said: Vec<Value> = bob.messages(&hallway).await;
    assert!(
        said.iter().any(|e| e["content"]["body"] == "Bob was here"),
        "{said:?}"
    );
}

#[tokio::test]
async fn a_bot_whose_registration_answer_was_lost_gets_a_token_and_makes_the_rooms() {
    let Some(venv) = venv() else { return };
    let dir = TempDir::new("chat-lost-token");
    let (sport, pport) = (free_port(), free_port());
    let (s, reg_secret) = homeserver(&venv, &dir, sport, pport).await;
    // The bot's registration reached the homeserver, its answer did not:
    // the account exists, nobody has its token.
    register(&s, &reg_secret, "portal", true).await;
    let event = write_live_event(dir.path());
    let p = chat_portal(&dir, &s, pport, &event, &reg_secret, "0.5", NO_STREAM);
    all_rooms_whole(&p, &s, &event).await;
    let log = p.log();
    assert!(
        log.contains("its token is lost; logging it in through an admin"),
        "{log}"
    );
    let b = bot(&p, &s);
    let (_, me) = b.get("/_matrix/client/v3/account/whoami").await;
    assert_eq!(me["user_id"], format!("@portal:{SERVER}"), "{me}");

    // Synapse files that token under the helper, and most rate limits
    // (room creation, invites, joins) read the override of the token's
    // owner: the helper is unlimited too.
    let (_, users) = b.get("/_synapse/admin/v2/users?name=portal-keeper").await;
    let helpers: Vec<&str> = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|u| u["name"].as_str())
        .collect();
    assert_eq!(helpers.len(), 1, "{users}");
    let helper = helpers[0].to_owned();
    assert!(helper.starts_with("@portal-keeper-"), "{helper}");
    let (st, v) = b
        .get(&format!(
            "/_synapse/admin/v1/users/{}/override_ratelimit",
            enc(&helper)
        ))
        .await;
    assert_eq!(
        (st, &v["messages_per_second"], &v["burst_count"]),
        (200, &json!(0), &json!(0)),
        "{v}"
    );
    // The token works as the bot's: Bob lands in the space through it.
    let space = resolve(&b, "live").await.unwrap();
    let bob = bob(&s).await;
    until(
        "Bob in the space",
        15,
        || p.log(),
        || async {
            let (_, v) = bob.get("/_matrix/client/v3/joined_rooms").await;
            v["joined_rooms"]
                .as_array()?
                .iter()
                .any(|r| r == space.as_str())
                .then_some(())
        },
    )
    .await;
}
