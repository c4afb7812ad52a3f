//! The portal keeps the event's Matrix homeserver in step: a real Synapse
//! (as in tests/synapse.rs), ticket holders logged in through the portal's
//! SSO, the portal's bot made with Synapse's shared-secret registration.
//! Space and rooms from the schedule, backstages, topics that follow the
//! session on now, the Watch page's chat, Q&A, the directory, and
//! revocation. Skips like tests/synapse.rs without the Synapse virtualenv.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Duration as Span, Utc};
use common::chat::{alias, chat_portal, homeserver, until, Mx, NO_STREAM, SERVER};
use common::oidc::free_port;
use common::oidc::Browser;
use common::synapse::{enc, matrix_login, venv};
use common::{client, TempDir};
use serde_json::{json, Value};

/// An event whose Main Track (streamed) switches from "First talk" (Ada
/// Lovelace) to "Second talk" at `switch`; Second Stage runs "Long talk"
/// (Ada Lovelace) for the whole test; a hack room and the staff room.
fn write_event(dir: &Path, switch: DateTime<Utc>) -> PathBuf {
    let now = Utc::now();
    let today = now.date_naive();
    let days = common::days_around(today);
    let event = format!(
        r#"id = "chatconf"
name = "Chat Conference"
timezone = "UTC"
domain = "conf.example.org"
attendees = 100
schedule = "schedule.xml"

{days}
[[room]]
name = "Main Track"
kind = "session"
backend = "bbb"
peak = 80
audience = "stream"

[[room]]
name = "Second Stage"
kind = "session"
backend = "bbb"
peak = 40
audience = "interactive"

[[room]]
name = "Hallway"
kind = "hack"
backend = "bbb"
peak = 20

[[room]]
name = "Staff"
kind = "staff"
backend = "bbb"
peak = 10
"#
    );
    let ev = |guid: &str,
              room: &str,
              title: &str,
              start: DateTime<Utc>,
              minutes: i64,
              person: &str| {
        format!(
            r#"<event guid="{guid}" id="{guid}"><date>{}</date><start>{}</start><duration>{:02}:{:02}</duration><room>{room}</room><title>{title}</title><type>Talk</type><persons><person id="1">{person}</person></persons></event>"#,
            start.format("%Y-%m-%dT%H:%M:%S+00:00"),
            start.format("%H:%M"),
            minutes / 60,
            minutes % 60
        )
    };
    let schedule = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<schedule><conference><title>Chat</title><time_zone_name>UTC</time_zone_name></conference>
<day index="1" date="{today}"><room name="Main Track">{}{}</room><room name="Second Stage">{}</room></day></schedule>"#,
        ev(
            "first",
            "Main Track",
            "First talk",
            switch - Span::minutes(11),
            11,
            "Ada Lovelace"
        ),
        ev(
            "second",
            "Main Track",
            "Second talk",
            switch,
            60,
            "Somebody Else"
        ),
        ev(
            "long",
            "Second Stage",
            "Long talk",
            now - Span::minutes(10),
            60,
            "Ada Lovelace"
        ),
    );
    std::fs::write(dir.join("schedule.xml"), schedule).unwrap();
    let p = dir.join("event.toml");
    std::fs::write(&p, event).unwrap();
    p
}

#[tokio::test]
async fn the_portal_keeps_the_homeserver_in_step_with_the_event() {
    let Some(venv) = venv() else { return };
    let t0 = Instant::now();
    let dir = TempDir::new("chat");
    let (sport, pport) = (free_port(), free_port());
    let (s, reg_secret) = homeserver(&venv, &dir, sport, pport).await;
    let synapse_up = t0.elapsed();
    // Main Track's session changes this long after the portal starts.
    let switch = Utc::now() + Span::seconds(25);
    let event = write_event(dir.path(), switch);
    let p = chat_portal(&dir, &s, pport, &event, &reg_secret, "0.5", NO_STREAM);
    let c = client();
    let logs = || format!("--- portal\n{}\n--- synapse\n{}", p.log(), s.log());
    let portal = p.url().to_owned();

    // The bot made the space and the rooms, found by their aliases.
    let space = until("the space", 20, logs, || async {
        let r = c
            .get(format!(
                "{}/_matrix/client/v3/directory/room/{}",
                s.url,
                enc(&alias("chatconf"))
            ))
            .send()
            .await
            .ok()?;
        let v: Value = r.json().await.ok()?;
        v["room_id"].as_str().map(str::to_owned)
    })
    .await;
    // Its token is in the state directory, readable by the portal only, and in no log.
    let token_file = p.state.join("chat-bot-token");
    let bot_token = std::fs::read_to_string(&token_file).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the bot's token file is {mode:o}");
    }

    // Bob (a plain attendee) logs in through SSO and lands in the space.
    let mut bb = Browser::default();
    let (bob_id, bob_token) =
        matrix_login(&s, &mut bb, &c, "bob@example.org", "bob-ticket-0002").await;
    let bob = Mx {
        c: c.clone(),
        url: s.url.clone(),
        token: bob_token,
    };
    until("Bob in the space", 15, logs, || async {
        bob.joined_rooms().await.contains(&space).then_some(())
    })
    .await;
    // The space lists the public rooms, not the staff room or a backstage.
    let (st, h) = bob
        .get(&format!(
            "/_matrix/client/v1/rooms/{}/hierarchy",
            enc(&space)
        ))
        .await;
    assert_eq!(st, 200, "{h}");
    let names: Vec<&str> = h["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    for n in ["Main Track", "Second Stage", "Hallway"] {
        assert!(names.contains(&n), "the space lists {n}: {names:?}");
    }
    for n in ["Staff", "Main Track backstage", "Second Stage backstage"] {
        assert!(!names.contains(&n), "the space hides {n}: {names:?}");
    }
    // Bob posts in Main Track; Ada (the speaker) logs in and reads it.
    let main = alias("main-track");
    let (st, v) = bob.join(&main).await;
    assert_eq!(st, 200, "{v}");
    let main_id = v["room_id"].as_str().unwrap().to_owned();
    // Its topic is the session on now.
    let first_topic = bob.topic(&main_id).await;
    assert!(
        first_topic.starts_with("Now: First talk — Ada Lovelace"),
        "{first_topic}"
    );
    assert!(
        Utc::now() < switch,
        "the test was too slow to see the first topic"
    );
    bob.send(&main_id, "hello from bob").await;
    let mut ab = Browser::default();
    let (ada_id, ada_token) =
        matrix_login(&s, &mut ab, &c, "ada@example.org", "ada-ticket-0001").await;
    assert_eq!(ada_id, format!("@ada.lovelace:{SERVER}"));
    let ada = Mx {
        c: c.clone(),
        url: s.url.clone(),
        token: ada_token,
    };
    let (st, v) = ada.join(&main).await;
    assert_eq!(st, 200, "{v}");
    let found = ada
        .messages(&main_id)
        .await
        .iter()
        .any(|e| e["sender"] == bob_id.as_str() && e["content"]["body"] == "hello from bob");
    assert!(found, "Ada reads Bob's message");

    // The backstage: invisible to Bob, Ada (a speaker there) is invited.
    let backstage = alias("main-track-backstage");
    let (st, v) = bob.join(&backstage).await;
    assert_eq!(st, 403, "Bob joins the backstage: {v}");
    for room in [backstage.clone(), alias("second-stage-backstage")] {
        until("Ada's backstage invites", 15, logs, || async {
            let (st, _) = ada.join(&room).await;
            (st == 200).then_some(())
        })
        .await;
    }
    // Ada moderates her session's room, not the hallway.
    let (_, pl) = ada
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/state/m.room.power_levels/",
            enc(&main_id)
        ))
        .await;
    assert_eq!(pl["users"][&ada_id], 50, "{pl}");
    assert_eq!(pl["users"][&bob_id], Value::Null, "{pl}");

    // Carol (staff) moderates everywhere and is invited to the staff room.
    let mut cb = Browser::default();
    let (carol_id, carol_token) =
        matrix_login(&s, &mut cb, &c, "carol@example.org", "carol-ticket-03").await;
    let carol = Mx {
        c: c.clone(),
        url: s.url.clone(),
        token: carol_token,
    };
    until("Carol's staff room invite", 15, logs, || async {
        let (st, _) = carol.join(&alias("staff")).await;
        (st == 200).then_some(())
    })
    .await;
    let (st, _) = bob.join(&alias("staff")).await;
    assert_eq!(st, 403);
    let (_, v) = carol.join(&alias("hallway")).await;
    let hall_id = v["room_id"].as_str().unwrap().to_owned();
    let (_, pl) = carol
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/state/m.room.power_levels/",
            enc(&hall_id)
        ))
        .await;
    assert_eq!(pl["users"][&carol_id], 50, "{pl}");

    // The portal: Chat beside Watch, opening the room in Element.
    let bob_web = common::login(&c, &portal, "bob@example.org", "bob-ticket-0002").await;
    let (st, _, html) = common::get(&c, &format!("{portal}/"), &bob_web).await;
    assert_eq!(st, 200);
    assert!(
        html.contains("href=\"https://chat.conf.example.org/#/room/#main-track:venue.test\""),
        "the welcome page links Main Track's chat"
    );
    // The Watch page: the player and the room's messages, server-rendered.
    let watch = format!("{portal}/rooms/main-track/watch");
    let (st, _, html) = common::get(&c, &watch, &bob_web).await;
    assert_eq!(st, 200, "{html}");
    assert!(html.contains("<video"), "the player");
    assert!(
        html.contains("hello from bob"),
        "the room's messages: {html}"
    );
    // Bob posts from the portal; the room shows it, attributed.
    let csrf = common::csrf_of(&html);
    let (st, loc, _) = common::post(
        &c,
        &format!("{portal}/rooms/main-track/chat"),
        &bob_web,
        &[("csrf", &csrf), ("text", "hi from the portal <b>")],
    )
    .await;
    assert_eq!(st, 303);
    assert!(loc.ends_with("#chat"), "{loc}");
    let from_portal = ada
        .messages(&main_id)
        .await
        .into_iter()
        .find(|e| e["content"]["body"] == "Bob (via portal): hi from the portal <b>");
    let from_portal = from_portal.expect("the portal's post in the room");
    assert_ne!(from_portal["sender"], bob_id.as_str(), "posted by the bot");
    let (_, _, html) = common::get(&c, &watch, &bob_web).await;
    assert!(
        html.contains("Bob (via portal)") && html.contains("hi from the portal &lt;b&gt;"),
        "{html}"
    );

    // Q&A in Second Stage: ask, upvote, one vote per ticket.
    let qa = format!("{portal}/rooms/second-stage/questions");
    let dan_web = common::login(&c, &portal, "dan@example.org", "dan-ticket-0004").await;
    let ada_web = common::login(&c, &portal, "ada@example.org", "ada-ticket-0001").await;
    let carol_web = common::login(&c, &portal, "carol@example.org", "carol-ticket-03").await;
    let ask = |cookie: String, text: &'static str| {
        let (c, qa) = (c.clone(), qa.clone());
        async move {
            let (_, _, html) = common::get(&c, &qa, &cookie).await;
            let csrf = common::csrf_of(&html);
            let (st, loc, body) = common::post(
                &c,
                &qa,
                &cookie,
                &[("csrf", &csrf), ("guid", "long"), ("text", text)],
            )
            .await;
            assert_eq!(st, 303, "{body}");
            loc.rsplit("#q-").next().unwrap().parse::<i64>().unwrap()
        }
    };
    let q1 = ask(bob_web.clone(), "Why the kernel?").await;
    let q2 = ask(dan_web.clone(), "How fast is it?").await;
    let vote = |cookie: String, q: i64| {
        let (c, qa, portal) = (c.clone(), qa.clone(), portal.clone());
        async move {
            let (_, _, html) = common::get(&c, &qa, &cookie).await;
            let csrf = common::csrf_of(&html);
            let (st, _, body) = common::post(
                &c,
                &format!("{portal}/rooms/second-stage/questions/{q}/vote"),
                &cookie,
                &[("csrf", &csrf)],
            )
            .await;
            assert_eq!(st, 303, "{body}");
        }
    };
    for (who, q) in [
        (&ada_web, q2),
        (&carol_web, q2),
        (&bob_web, q2),
        (&bob_web, q2), // again: no second vote
        (&bob_web, q1), // his own question: he voted when asking
        (&dan_web, q1),
        (&dan_web, q1),
    ] {
        vote(who.clone(), q).await;
    }
    let (_, _, html) = common::get(&c, &qa, &ada_web).await;
    let (i2, i1) = (
        html.find("How fast is it?").unwrap(),
        html.find("Why the kernel?").unwrap(),
    );
    assert!(i2 < i1, "the question with more votes comes first");
    let votes = |q: i64| {
        let at = html.find(&format!("id=\"q-{q}\"")).unwrap();
        let v = &html[at..];
        let v = &v[v.find("class=\"votes\">").unwrap() + 14..];
        v[..v.find('<').unwrap()].parse::<i64>().unwrap()
    };
    assert_eq!((votes(q2), votes(q1)), (4, 2), "one vote per ticket");
    // The question went to the room, and the backstage shows the top questions.
    let (_, v) = ada.join(&alias("second-stage")).await;
    let stage_id = v["room_id"].as_str().unwrap().to_owned();
    until("the question in the room", 15, logs, || async {
        ada.messages(&stage_id)
            .await
            .iter()
            .any(|e| e["content"]["body"] == "Bob (via portal) asks: Why the kernel?")
            .then_some(())
    })
    .await;
    let (_, v) = ada.join(&alias("second-stage-backstage")).await;
    let back_id = v["room_id"].as_str().unwrap().to_owned();
    let want = "Top questions — Long talk\n1. How fast is it? (4 votes, asked by dan)\n2. Why the kernel? (2 votes, asked by Bob)";
    until("the top questions in the backstage", 15, logs, || async {
        let newest = ada.messages(&back_id).await.into_iter().find(|e| {
            e["content"]["body"]
                .as_str()
                .is_some_and(|b| b.contains("Top questions"))
        })?;
        let body = newest["content"]["m.new_content"]["body"]
            .as_str()
            .or(newest["content"]["body"].as_str())?
            .to_owned();
        (body == want).then_some(())
    })
    .await;

    // The directory lists only who opted in (not listed by default).
    let directory = format!("{portal}/directory");
    let (_, _, html) = common::get(&c, &directory, &carol_web).await;
    assert!(!html.contains("Ada Lovelace"), "not listed by default");
    let (_, _, settings) = common::get(&c, &format!("{portal}/settings"), &ada_web).await;
    assert!(settings.contains("You are not listed."));
    let csrf = common::csrf_of(&settings);
    let (st, _, _) = common::post(
        &c,
        &format!("{portal}/settings/directory"),
        &ada_web,
        &[("csrf", &csrf), ("listed", "1")],
    )
    .await;
    assert_eq!(st, 303);
    let (_, _, html) = common::get(&c, &directory, &carol_web).await;
    assert!(
        html.contains("Ada Lovelace") && html.contains(&ada_id),
        "{html}"
    );
    assert!(!html.contains("Bob"), "{html}");
    // The homeserver's own search finds nobody.
    let (st, v) = ada
        .call(
            reqwest::Method::POST,
            "/_matrix/client/v3/user_directory/search",
            Some(json!({"search_term": "bob"})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["results"], json!([]), "{v}");

    // Carol revokes Bob's ticket: his Matrix user is deactivated.
    let (_, _, staff) = common::get(&c, &format!("{portal}/staff"), &carol_web).await;
    let csrf = common::csrf_of(&staff);
    let (st, _, _) = common::post(
        &c,
        &format!("{portal}/staff/tickets/revoke"),
        &carol_web,
        &[("csrf", &csrf), ("email", "bob@example.org")],
    )
    .await;
    assert_eq!(st, 303);
    until("Bob's token refused", 15, logs, || async {
        let (st, _) = bob.get("/_matrix/client/v3/account/whoami").await;
        (st == 401).then_some(())
    })
    .await;
    let (st, _) = ada.get("/_matrix/client/v3/account/whoami").await;
    assert_eq!(st, 200, "Ada is still in");

    // The topic follows the schedule: Main Track's next session.
    until("Main Track's new topic", 40, logs, || async {
        ada.topic(&main_id)
            .await
            .starts_with("Now: Second talk — Somebody Else")
            .then_some(())
    })
    .await;

    // A restart finds the rooms by alias: nothing is made twice, and the
    // space still lists one Main Track.
    let before = p.log();
    let mut p = p;
    p.restart();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !p.log().contains("made the room"),
        "a restart made a room again:\n{}",
        p.log()
    );
    let (_, h) = ada
        .get(&format!(
            "/_matrix/client/v1/rooms/{}/hierarchy",
            enc(&space)
        ))
        .await;
    let mains = h["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["name"] == "Main Track")
        .count();
    assert_eq!(mains, 1, "{h}");

    for log in [before, p.log(), s.log()] {
        assert!(
            !log.contains(bot_token.trim()),
            "a log contains the bot's token"
        );
        for code in ["ada-ticket-0001", "bob-ticket-0002", "carol-ticket-03"] {
            assert!(!log.contains(code), "a log contains the ticket code {code}");
        }
    }
    eprintln!(
        "timings: synapse up in {:.1} s, whole test {:.1} s",
        synapse_up.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
}

/// A ticket revoked before the sync recorded its Matrix account (here: no
/// pass between the login and the revocation) loses that account all the
/// same: revoked from the staff page, and with `tickets revoke` while the
/// portal is down (the revocation waits in the database for its restart).
#[tokio::test]
async fn a_ticket_revoked_before_the_sync_saw_its_account_is_deactivated() {
    let Some(venv) = venv() else { return };
    let dir = TempDir::new("chat-revoke");
    let (sport, pport) = (free_port(), free_port());
    let (s, reg_secret) = homeserver(&venv, &dir, sport, pport).await;
    let event = write_event(dir.path(), Utc::now() + Span::hours(1));
    // One pass at start, then only when woken.
    let mut p = chat_portal(&dir, &s, pport, &event, &reg_secret, "3600", NO_STREAM);
    let c = client();
    let portal = p.url().to_owned();
    until(
        "the first sync pass",
        30,
        || p.log(),
        || async {
            p.log()
                .contains("chat: the homeserver is in step")
                .then_some(())
        },
    )
    .await;

    let mx = |token: String| Mx {
        c: c.clone(),
        url: s.url.clone(),
        token,
    };
    let known = || {
        portal::store::Store::open(&p.state)
            .unwrap()
            .chat_users()
            .unwrap()
            .len()
    };

    let (_, ada_token) = matrix_login(
        &s,
        &mut Browser::default(),
        &c,
        "ada@example.org",
        "ada-ticket-0001",
    )
    .await;
    let ada = mx(ada_token);
    let (_, bob_token) = matrix_login(
        &s,
        &mut Browser::default(),
        &c,
        "bob@example.org",
        "bob-ticket-0002",
    )
    .await;
    let bob = mx(bob_token);
    assert_eq!(bob.whoami().await, 200);
    assert_eq!(known(), 0, "no pass ran since the logins");

    // Carol revokes Bob's ticket at once: the pass it wakes finds no
    // subject of his any more, yet his account ends.
    let carol_web = common::login(&c, &portal, "carol@example.org", "carol-ticket-03").await;
    let (_, _, staff) = common::get(&c, &format!("{portal}/staff"), &carol_web).await;
    let csrf = common::csrf_of(&staff);
    let (st, _, _) = common::post(
        &c,
        &format!("{portal}/staff/tickets/revoke"),
        &carol_web,
        &[("csrf", &csrf), ("email", "bob@example.org")],
    )
    .await;
    assert_eq!(st, 303);
    let logs = || format!("--- portal\n{}\n--- synapse\n{}", p.log(), s.log());
    until("Bob's token refused", 15, logs, || async {
        (bob.whoami().await == 401).then_some(())
    })
    .await;
    assert_eq!(ada.whoami().await, 200, "Ada is still in");

    // Dan logs in; the portal stops; his ticket is revoked from the command
    // line; the portal's first pass after its start ends his account.
    let (_, dan_token) = matrix_login(
        &s,
        &mut Browser::default(),
        &c,
        "dan@example.org",
        "dan-ticket-0004",
    )
    .await;
    let dan = mx(dan_token);
    assert_eq!(dan.whoami().await, 200);
    drop(p.portal.take());
    let (ok, _, err) = common::run(&[
        "tickets",
        "revoke",
        "dan@example.org",
        "--state",
        p.state.to_str().unwrap(),
    ]);
    assert!(ok, "tickets revoke: {err}");
    assert_eq!(dan.whoami().await, 200, "no portal ran since");
    p.restart();
    let logs = || format!("--- portal\n{}\n--- synapse\n{}", p.log(), s.log());
    until("Dan's token refused", 30, logs, || async {
        (dan.whoami().await == 401).then_some(())
    })
    .await;
    assert_eq!(ada.whoami().await, 200, "Ada is still in");
}
