//! The portal end to end: the real binary on loopback, logins through the
//! form, and a fake BigBlueButton that checks checksums as BBB does.

mod common;

use std::time::Duration;

use common::fake_bbb::FakeBbb;
use common::*;
use conference::protocol::bbb::{self, Checksum};

const ADA: (&str, &str) = ("ada@example.org", "ada-ticket-0001");
const BOB: (&str, &str) = ("bob@example.org", "bob-ticket-0002");
const CAROL: (&str, &str) = ("carol@example.org", "carol-ticket-03");
const DAN: (&str, &str) = ("dan@example.org", "dan-ticket-0004");

fn lpc_portal(dir: &TempDir) -> Portal {
    let state = dir.path().join("state");
    import_tickets(&state, TICKETS);
    Portal::start(&lpc_event(), &state, None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_but_login_and_healthz_needs_a_session() {
    let dir = TempDir::new("nosession");
    let p = lpc_portal(&dir);
    let c = client();
    let (s, _, body) = get(&c, &format!("{}/healthz", p.url), "").await;
    assert_eq!((s, body.as_str()), (200, "ok"));
    assert_eq!(get(&c, &format!("{}/login", p.url), "").await.0, 200);
    let forged =
        "venue_session=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.bbbb";
    for path in [
        "/",
        "/timetable",
        "/timetable?at=2020-08-24T15:00:00Z",
        "/schedule",
        "/schedule.ics",
        "/my.ics",
        "/status",
        "/staff",
        "/settings",
        "/turn",
        "/no-such-page",
    ] {
        for cookie in ["", forged] {
            let (s, loc, body) = get(&c, &format!("{}{path}", p.url), cookie).await;
            assert_eq!(s, 303, "{path} without a session answered {s}");
            assert!(loc.starts_with("/login"), "{path} redirects to {loc}");
            assert!(!body.contains("Refereed"), "{path} leaked content");
        }
    }
    for path in ["/rooms/hackroom-1/join", "/logout", "/picks", "/settings"] {
        let (s, loc, _) = post(&c, &format!("{}{path}", p.url), "", &[("csrf", "x")]).await;
        assert_eq!((s, loc.as_str()), (303, "/login"), "POST {path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_schedule_timetable_and_status_roles() {
    let dir = TempDir::new("pages");
    let p = lpc_portal(&dir);
    let c = client();
    // `next` never leaves the portal.
    let form = c.get(format!("{}/login", p.url)).send().await.unwrap();
    let pre = set_cookie(&form, "venue_login").unwrap();
    let csrf = csrf_of(&form.text().await.unwrap());
    let r = c
        .post(format!("{}/login", p.url))
        .header("cookie", &pre)
        .form(&[
            ("email", BOB.0),
            ("code", BOB.1),
            ("csrf", csrf.as_str()),
            ("next", "//evil.example/"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["location"], "/");
    // Codes are compared without case, spaces and dashes.
    let ada = login(&c, &p.url, "  ADA@example.org ", "ADA TICKET 0001").await;
    let (s, _, html) = get(&c, &format!("{}/", p.url), &ada).await;
    assert_eq!(s, 200);
    assert!(html.contains("Hello, Ada Lovelace"), "{html}");

    let (s, _, html) = get(&c, &format!("{}/schedule", p.url), &ada).await;
    assert_eq!(s, 200);
    let event = conference::Event::load(&lpc_event()).unwrap();
    assert_eq!(html.matches("class=\"card\"").count(), event.sessions.len());
    for session in &event.sessions {
        let escaped = session
            .title
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
        assert!(html.contains(&escaped), "schedule lacks {}", session.title);
    }
    // The BoF title with HTML in it is text, not markup.
    assert!(html.contains("BoF: &lt;b&gt;kernel&lt;/b&gt; CI &amp; test reporting"));
    assert!(!html.contains("<b>kernel</b>"));
    // UTC and the event's local time (America/Los_Angeles, PDT in August).
    assert!(
        html.contains("14:00–14:45 UTC") && html.contains("07:00–07:45 PDT"),
        "times missing"
    );

    let (s, _, html) = get(
        &c,
        &format!("{}/timetable?at=2020-08-24T15:30:00Z", p.url),
        &ada,
    )
    .await;
    assert_eq!(s, 200);
    assert!(html.contains("Preview"));
    assert!(html.contains("Running now"));
    let running: Vec<_> = event
        .sessions
        .iter()
        .filter(|s| s.is_running("2020-08-24T15:30:00Z".parse().unwrap()))
        .collect();
    assert!(!running.is_empty());
    for s in running {
        let escaped = s
            .title
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
        assert!(
            html.contains(&escaped),
            "timetable lacks running {}",
            s.title
        );
    }
    // Far from the sessions: nothing from the last day.
    assert!(!html.contains("2020-08-28"));
    let (s, _, _) = get(&c, &format!("{}/timetable?at=yesterday", p.url), &ada).await;
    assert_eq!(s, 400);

    let (s, _, _) = get(&c, &format!("{}/status", p.url), &ada).await;
    assert_eq!(s, 403, "an attendee sees the status page");
    assert_eq!(get(&c, &format!("{}/staff", p.url), &ada).await.0, 403);
    let carol = login(&c, &p.url, CAROL.0, CAROL.1).await;
    let (s, _, html) = get(&c, &format!("{}/status", p.url), &carol).await;
    assert_eq!(s, 200);
    assert!(html.contains("No BigBlueButton server is configured"));
    assert_eq!(get(&c, &format!("{}/staff", p.url), &carol).await.0, 200);

    // Logging out ends the session server-side: the old cookie no longer works.
    let csrf = session_csrf(&c, &p.url, &ada).await;
    let (s, loc, _) = post(&c, &format!("{}/logout", p.url), &ada, &[("csrf", &csrf)]).await;
    assert_eq!((s, loc.as_str()), (303, "/login"));
    assert_eq!(get(&c, &format!("{}/schedule", p.url), &ada).await.0, 303);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_logins_are_refused_and_rate_limited() {
    let dir = TempDir::new("ratelimit");
    let p = lpc_portal(&dir);
    let c = client();
    let r = login_response(&c, &p.url, BOB.0, "wrong-code-999").await;
    assert_eq!(r.status(), 401);
    assert!(set_cookie(&r, "venue_session").is_none());
    let r = login_response(&c, &p.url, "nobody@example.org", BOB.1).await;
    assert_eq!(r.status(), 401);
    // No CSRF token, a wrong one, or no pre-login cookie: 403.
    let form = c.get(format!("{}/login", p.url)).send().await.unwrap();
    let pre = set_cookie(&form, "venue_login").unwrap();
    for (cookie, csrf) in [(pre.as_str(), ""), (pre.as_str(), "00"), ("", "00")] {
        let r = c
            .post(format!("{}/login", p.url))
            .header("cookie", cookie)
            .form(&[("email", BOB.0), ("code", BOB.1), ("csrf", csrf)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
    }
    // Four more failures for Bob (five in all) from this address throttle
    // this address for Bob, even with the right code...
    for _ in 0..4 {
        assert_eq!(
            login_response(&c, &p.url, BOB.0, "wrong-code-999")
                .await
                .status(),
            401
        );
    }
    let r = login_response(&c, &p.url, BOB.0, BOB.1).await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    // ...but Bob logs in from anywhere else.
    let r = login_from(&c, &p.url, BOB.0, BOB.1, "203.0.113.9").await;
    assert_eq!(r.status(), 303);
    // ...but not other people's.
    login(&c, &p.url, DAN.0, DAN.1).await;
    // And one address cannot try more than 30 times.
    let mut limited = false;
    for i in 0..30 {
        let r = login_response(&c, &p.url, &format!("guess{i}@example.org"), "guess-code").await;
        if r.status() == 429 {
            limited = true;
            break;
        }
    }
    assert!(limited, "no per-address limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csrf_is_enforced_on_every_post_and_ics_exports() {
    let dir = TempDir::new("csrf");
    let p = lpc_portal(&dir);
    let c = client();
    let ada = login(&c, &p.url, ADA.0, ADA.1).await;
    let bob = login(&c, &p.url, BOB.0, BOB.1).await;
    let bobs = session_csrf(&c, &p.url, &bob).await;
    let mine = session_csrf(&c, &p.url, &ada).await;
    assert_ne!(mine, bobs);
    let guid = conference::Event::load(&lpc_event()).unwrap().sessions[3]
        .guid
        .clone();
    for (path, fields) in [
        ("/logout", vec![]),
        ("/picks", vec![("guid", guid.as_str()), ("picked", "1")]),
        ("/settings", vec![("tz", "Europe/Berlin")]),
        ("/rooms/hackroom-1/join", vec![]),
    ] {
        for token in [None, Some(""), Some("0123"), Some(bobs.as_str())] {
            let mut form = fields.clone();
            if let Some(t) = token {
                form.push(("csrf", t));
            }
            let (s, _, _) = post(&c, &format!("{}{path}", p.url), &ada, &form).await;
            assert_eq!(s, 403, "POST {path} with csrf {token:?}");
        }
    }
    // Still logged in, nothing picked.
    let (s, _, ics) = get(&c, &format!("{}/my.ics", p.url), &ada).await;
    assert_eq!(s, 200);
    assert_eq!(ics.matches("BEGIN:VEVENT").count(), 0);
    // With the token: pick one session, set a time zone.
    let (s, loc, _) = post(
        &c,
        &format!("{}/picks", p.url),
        &ada,
        &[("csrf", &mine), ("guid", &guid), ("picked", "1")],
    )
    .await;
    assert_eq!(s, 303);
    assert!(loc.ends_with(&format!("#s-{guid}")));
    let (s, _, ics) = get(&c, &format!("{}/my.ics", p.url), &ada).await;
    assert_eq!(s, 200);
    assert_eq!(ics.matches("BEGIN:VEVENT").count(), 1);
    assert!(ics.contains(&format!("UID:{guid}@lpc.example.org")));
    let (s, _, _) = post(
        &c,
        &format!("{}/settings", p.url),
        &ada,
        &[("csrf", &mine), ("tz", "Europe/Berlin")],
    )
    .await;
    assert_eq!(s, 303);
    let (_, _, html) = get(&c, &format!("{}/schedule", p.url), &ada).await;
    assert!(
        html.contains("16:00–16:45 CEST"),
        "the attendee's own time zone is not shown"
    );
    let (s, _, ics) = get(&c, &format!("{}/schedule.ics", p.url), &ada).await;
    assert_eq!(s, 200);
    assert!(ics.starts_with("BEGIN:VCALENDAR\r\n"));
    assert_eq!(ics.matches("BEGIN:VEVENT").count(), 21);
    assert!(ics.contains("SUMMARY:BoF: <b>kernel</b> CI & test reporting"));
    assert!(ics.contains("DTSTART:20200824T140000Z"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_gives_signed_urls_that_bbb_accepts_and_rejects_with_a_wrong_secret() {
    let dir = TempDir::new("join");
    let fake = FakeBbb::start("fake-bbb-secret-1", &[Checksum::Sha256]).await;
    let old = FakeBbb::start("fake-bbb-secret-2", &[Checksum::Sha1]).await;
    // The sha1 server carries a big old meeting, so new rooms go to the other one.
    old.add_meeting("elsewhere", 90, 80, 0, 3_600_000);
    let event = write_live_event(dir.path());
    let config = write_config(
        dir.path(),
        0.2,
        &[
            ("bbb-a", &fake.url(), "fake-bbb-secret-1", "sha256"),
            ("bbb-b", &old.url(), "fake-bbb-secret-2", "sha1"),
        ],
        "public_url = \"https://portal.live.example.org\"\n",
    );
    let state = dir.path().join("state");
    import_tickets(&state, TICKETS);
    let p = Portal::start(&event, &state, Some(&config));
    let c = client();
    // Let both servers be polled once.
    for _ in 0..100 {
        if fake.calls("getMeetings") > 0 && old.calls("getMeetings") > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let bob = login(&c, &p.url, BOB.0, BOB.1).await;
    let csrf = session_csrf(&c, &p.url, &bob).await;
    let (s, url, _) = post(
        &c,
        &format!("{}/rooms/main-track/join", p.url),
        &bob,
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(s, 303, "{}", p.log());
    assert!(
        url.starts_with(&format!("{}/join?", fake.url())),
        "joined elsewhere: {url}"
    );
    assert!(url.contains("role=VIEWER") && url.contains("fullName=Bob"));
    assert_eq!(
        url.split_once("checksum=").unwrap().1.len(),
        64,
        "sha256 checksum"
    );
    // The meeting was created with the room's settings.
    let m = fake
        .meeting("live-main-track")
        .expect("create reached the fake BBB");
    assert_eq!(
        m.create_params["logoutURL"],
        "https://portal.live.example.org/"
    );
    assert_eq!(m.create_params["name"], "Main Track");
    assert_eq!(m.create_params["lockSettingsDisableCam"], "true");
    assert_eq!(m.create_params["muteOnStart"], "true");
    // The fake accepts the URL...
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(
        fake.state.lock().unwrap().joins.last().unwrap(),
        &("live-main-track".into(), "Bob".into(), "VIEWER".into())
    );
    // ...and refuses it signed with another secret, or altered.
    let query = url.split_once('?').unwrap().1;
    let unsigned = query.rsplit_once("&checksum=").unwrap().0;
    let resigned = format!(
        "{}/join?{unsigned}&checksum={}",
        fake.url(),
        bbb::checksum("join", unsigned, "not-the-secret", Checksum::Sha256)
    );
    let body = c.get(&resigned).send().await.unwrap().text().await.unwrap();
    assert!(
        body.contains("<returncode>FAILED</returncode>") && body.contains("checksumError"),
        "{body}"
    );
    let altered = url.replace("role=VIEWER", "role=MODERATOR");
    let body = c.get(&altered).send().await.unwrap().text().await.unwrap();
    assert!(body.contains("checksumError"), "{body}");
    assert_eq!(fake.rejected(), 2);

    // Ada is the running session's speaker (ticket name = schedule person): moderator.
    let ada = login(&c, &p.url, ADA.0, ADA.1).await;
    let acsrf = session_csrf(&c, &p.url, &ada).await;
    let (s, url, _) = post(
        &c,
        &format!("{}/rooms/main-track/join", p.url),
        &ada,
        &[("csrf", &acsrf)],
    )
    .await;
    assert_eq!(s, 303);
    assert!(url.contains("role=MODERATOR"), "{url}");
    // Staff are moderators everywhere, and only they enter the staff room.
    let carol = login(&c, &p.url, CAROL.0, CAROL.1).await;
    let ccsrf = session_csrf(&c, &p.url, &carol).await;
    let (s, url, _) = post(
        &c,
        &format!("{}/rooms/staff/join", p.url),
        &carol,
        &[("csrf", &ccsrf)],
    )
    .await;
    assert_eq!(s, 303);
    assert!(url.contains("role=MODERATOR") && url.contains("meetingID=live-staff"));
    assert_eq!(c.get(&url).send().await.unwrap().status(), 302);
    assert_eq!(
        post(
            &c,
            &format!("{}/rooms/staff/join", p.url),
            &bob,
            &[("csrf", &csrf)]
        )
        .await
        .0,
        403
    );
    assert_eq!(
        post(
            &c,
            &format!("{}/rooms/green-room/join", p.url),
            &bob,
            &[("csrf", &csrf)]
        )
        .await
        .0,
        403
    );
    // A session room with nothing running soon is closed to attendees.
    assert_eq!(
        post(
            &c,
            &format!("{}/rooms/later-track/join", p.url),
            &bob,
            &[("csrf", &csrf)]
        )
        .await
        .0,
        403
    );
    assert_eq!(
        post(
            &c,
            &format!("{}/rooms/no-such-room/join", p.url),
            &bob,
            &[("csrf", &csrf)]
        )
        .await
        .0,
        404
    );
    // Jitsi is not configured here.
    assert_eq!(
        post(
            &c,
            &format!("{}/rooms/jitsi-corner/join", p.url),
            &bob,
            &[("csrf", &csrf)]
        )
        .await
        .0,
        503
    );

    // The status page shows the polled meetings; no page view called BBB.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (s, _, html) = get(&c, &format!("{}/status", p.url), &carol).await;
    assert_eq!(s, 200);
    assert!(html.contains("bbb-a") && html.contains("bbb-b"));
    assert!(html.contains("elsewhere (not an event room)"));
    let creates = fake.calls("create");
    assert!(
        (2..=3).contains(&creates),
        "{creates} creates for two meetings and three joins"
    );
    // No secret on any page.
    for page in ["/", "/status", "/timetable", "/schedule", "/staff"] {
        let (_, _, html) = get(&c, &format!("{}{page}", p.url), &carol).await;
        assert!(
            !html.contains("fake-bbb-secret") && !html.contains("a-session-secret"),
            "{page} shows a secret"
        );
    }
    assert!(!p.log().contains("fake-bbb-secret"), "a secret in the log");
    assert!(!p.log().contains("checksum="), "a signed URL in the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_portal_with_the_wrong_secret_is_refused() {
    let dir = TempDir::new("wrongsecret");
    let fake = FakeBbb::start("right-secret", &[Checksum::Sha1, Checksum::Sha256]).await;
    let event = write_live_event(dir.path());
    let config = write_config(
        dir.path(),
        0.2,
        &[("bbb-a", &fake.url(), "wrong-secret", "sha1")],
        "",
    );
    let state = dir.path().join("state");
    import_tickets(&state, TICKETS);
    let p = Portal::start(&event, &state, Some(&config));
    let c = client();
    let bob = login(&c, &p.url, BOB.0, BOB.1).await;
    let csrf = session_csrf(&c, &p.url, &bob).await;
    let (s, _, html) = post(
        &c,
        &format!("{}/rooms/hallway/join", p.url),
        &bob,
        &[("csrf", &csrf)],
    )
    .await;
    assert!(
        s == 502 || s == 503,
        "join with a wrong secret answered {s}"
    );
    assert!(html.contains("BigBlueButton") || html.contains("server"));
    assert!(fake.rejected() >= 1);
    assert_eq!(fake.calls("create"), 0);
    // After two refused polls the server is down on the status page.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let carol = login(&c, &p.url, CAROL.0, CAROL.1).await;
    let (_, _, html) = get(&c, &format!("{}/status", p.url), &carol).await;
    assert!(html.contains("class=\"down\""), "server not shown down");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jitsi_tokens_and_turn_credentials() {
    let dir = TempDir::new("jitsi");
    let event = write_live_event(dir.path());
    let jwt_secret = dir.write("jwt", "jitsi-jwt-secret\n");
    let turn_secret = dir.write("turn", "turn-rest-secret\n");
    let extra = format!(
        "[jitsi]\ndomain = \"meet.live.example.org\"\napp_id = \"venue\"\nsecret_file = \"{}\"\n[turn]\nuris = [\"turn:turn.live.example.org:3478?transport=udp\"]\nsecret_file = \"{}\"\nttl_seconds = 3600\n",
        jwt_secret.display(),
        turn_secret.display()
    );
    let config = write_config(dir.path(), 10.0, &[], &extra);
    let state = dir.path().join("state");
    import_tickets(&state, TICKETS);
    let p = Portal::start(&event, &state, Some(&config));
    let c = client();
    let dan = login(&c, &p.url, DAN.0, DAN.1).await;
    let csrf = session_csrf(&c, &p.url, &dan).await;
    let (s, url, _) = post(
        &c,
        &format!("{}/rooms/jitsi-corner/join", p.url),
        &dan,
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(s, 303);
    let token = url
        .strip_prefix("https://meet.live.example.org/live-jitsi-corner?jwt=")
        .expect(&url);
    let now = chrono::Utc::now().timestamp();
    let claims = conference::protocol::jwt::decode_hs256(b"jitsi-jwt-secret", token, now).unwrap();
    assert_eq!(claims["room"], "live-jitsi-corner");
    assert_eq!(claims["aud"], "venue");
    assert_eq!(claims["sub"], "meet.live.example.org");
    assert_eq!(claims["context"]["user"]["name"], "dan");
    assert_eq!(claims["context"]["user"]["moderator"], false);
    assert!(
        claims["exp"].as_i64().unwrap() - now <= 300,
        "not short-lived"
    );
    assert!(conference::protocol::jwt::decode_hs256(b"other", token, now).is_err());
    // BBB rooms say their server is not configured.
    let (s, _, html) = post(
        &c,
        &format!("{}/rooms/hallway/join", p.url),
        &dan,
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(s, 503);
    assert!(html.contains("not configured"));
    // TURN credentials.
    let (s, _, json) = get(&c, &format!("{}/turn", p.url), &dan).await;
    assert_eq!(s, 200);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let user = v["username"].as_str().unwrap();
    let (exp, who) = user.split_once(':').unwrap();
    assert!((exp.parse::<i64>().unwrap() - now - 3600).abs() < 10);
    assert!(who.starts_with("venue-"));
    assert_eq!(
        v["password"],
        conference::protocol::turn::password("turn-rest-secret", user)
    );
    assert_eq!(
        v["uris"][0],
        "turn:turn.live.example.org:3478?transport=udp"
    );
}

/// The poll rate does not depend on how many people look at the portal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bbb_is_polled_at_the_same_rate_for_one_or_many_clients() {
    let dir = TempDir::new("polls");
    let fake = FakeBbb::start("poll-secret", &[Checksum::Sha256]).await;
    fake.add_meeting("live-hallway", 12, 4, 2, 3_600_000);
    let event = write_live_event(dir.path());
    let config = write_config(
        dir.path(),
        0.25,
        &[("bbb-a", &fake.url(), "poll-secret", "sha256")],
        "",
    );
    let state = dir.path().join("state");
    import_tickets(&state, TICKETS);
    let p = Portal::start(&event, &state, Some(&config));
    let c = client();
    let carol = login(&c, &p.url, CAROL.0, CAROL.1).await;

    async fn load(
        c: &reqwest::Client,
        base: &str,
        cookie: &str,
        clients: usize,
        secs: f64,
    ) -> (u64, usize) {
        let until = std::time::Instant::now() + Duration::from_secs_f64(secs);
        let mut tasks = Vec::new();
        for i in 0..clients {
            let (c, cookie, url) = (
                c.clone(),
                cookie.to_owned(),
                format!("{base}{}", if i % 2 == 0 { "/status" } else { "/" }),
            );
            tasks.push(tokio::spawn(async move {
                let mut n = 0;
                while std::time::Instant::now() < until {
                    let r = c.get(&url).header("cookie", &cookie).send().await.unwrap();
                    assert_eq!(r.status(), 200);
                    let _ = r.bytes().await;
                    n += 1;
                }
                n
            }));
        }
        let mut views = 0;
        for t in tasks {
            views += t.await.unwrap();
        }
        (0, views)
    }
    let window = 2.0;
    let before = fake.calls("getMeetings");
    let (_, one_views) = load(&c, &p.url, &carol, 1, window).await;
    let one = fake.calls("getMeetings") - before;
    let before = fake.calls("getMeetings");
    let (_, many_views) = load(&c, &p.url, &carol, 100, window).await;
    let many = fake.calls("getMeetings") - before;
    eprintln!("polls in {window} s: {one} with 1 client ({one_views} views), {many} with 100 clients ({many_views} views)");
    let expected = (window / 0.25) as u64;
    for n in [one, many] {
        assert!(
            n + 3 >= expected && n <= expected + 2,
            "{n} polls in {window} s at one per 0.25 s"
        );
    }
    // Every one of the 100 clients was served while the polls were counted.
    assert!(many_views >= 100, "only {many_views} views by 100 clients");
    assert!(one.abs_diff(many) <= 2);
    assert_eq!(
        fake.calls("create") + fake.calls("join"),
        0,
        "a page view called BBB"
    );
    // What the status page shows comes from the poll.
    let (_, _, html) = get(&c, &format!("{}/status", p.url), &carol).await;
    assert!(
        html.contains("<td class=\"n\">12</td>"),
        "participants of the hallway"
    );
}

#[test]
fn tickets_cli_adds_and_imports_all_or_nothing() {
    let dir = TempDir::new("cli");
    let state = dir.path().join("state");
    let run = |args: &[&str]| {
        std::process::Command::new(bin())
            .args(args)
            .arg("--state")
            .arg(&state)
            .output()
            .unwrap()
    };
    let out = run(&[
        "tickets",
        "add",
        "New@Example.org",
        "--staff",
        "--name",
        "New Person",
    ]);
    assert!(out.status.success());
    let code = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(code.len(), 19, "{code}");
    let store = portal::store::Store::open(&state).unwrap();
    let t = store
        .check_login("new@example.org", &code)
        .unwrap()
        .expect("the printed code logs in");
    assert!(t.is_staff());
    assert_eq!(t.display_name(), "New Person");
    assert!(store
        .check_login("new@example.org", "not-the-code")
        .unwrap()
        .is_none());
    // A bad row: an error naming the line, and nothing imported.
    let bad = dir.write(
        "bad.csv",
        "email,code,role\nx@example.org,xxxx-yyyy,attendee\ny@example.org,yyyy-zzzz,speaker\n",
    );
    let out = run(&["tickets", "import", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 3") && err.contains("speaker"), "{err}");
    assert!(store
        .check_login("x@example.org", "xxxx-yyyy")
        .unwrap()
        .is_none());
    let wrong_header = dir.write("h.csv", "mail,code\nx@example.org,xxxx-yyyy\n");
    let out = run(&["tickets", "import", wrong_header.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("email,code,role"));
    let good = dir.write(
        "good.csv",
        "email,code,role\nx@example.org,xxxx-yyyy,attendee\n",
    );
    assert!(run(&["tickets", "import", good.to_str().unwrap()])
        .status
        .success());
    assert_eq!(store.ticket_count().unwrap(), (2, 1));
}

/// The value of the `value` attribute of the element with `id`.
fn value_of(html: &str, id: &str) -> String {
    let i = html
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id}"));
    let v = i + html[i..].find("value=\"").unwrap() + "value=\"".len();
    html[v..v + html[v..].find('"').unwrap()].replace("&amp;", "&")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_codes_throttle_the_attacker_not_the_owner() {
    let dir = TempDir::new("throttle");
    let state = dir.path().join("state");
    import_tickets(
        &state,
        &format!("{TICKETS}ann@example.org,ann-ticket-0005,attendee,Ann Speaker\n"),
    );
    let p = Portal::start(&lpc_event(), &state, None);
    let c = client();
    let attacker = "192.0.2.66";
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let r = login_from(&c, &p.url, "ann@example.org", "guessed-code-1", attacker).await;
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429]);
    // Ann, from her own address, logs in with her code.
    let r = login_from(
        &c,
        &p.url,
        "ann@example.org",
        "ann-ticket-0005",
        "198.51.100.20",
    )
    .await;
    assert_eq!(r.status(), 303, "the owner was locked out");
    assert!(set_cookie(&r, "venue_session").is_some());
    // The attacking address stays throttled for Ann, even with her code...
    let r = login_from(&c, &p.url, "ann@example.org", "ann-ticket-0005", attacker).await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    // ...and after 30 failures in all, for everyone.
    let mut tries = 0;
    loop {
        let r = login_from(
            &c,
            &p.url,
            &format!("guess{tries}@example.org"),
            "guess-code",
            attacker,
        )
        .await;
        if r.status() == 429 {
            break;
        }
        assert_eq!(r.status(), 401);
        tries += 1;
        assert!(tries <= 25, "no per-address limit");
    }
    assert_eq!(
        tries, 25,
        "the address limit counts the failures for Ann too"
    );
    let r = login_from(&c, &p.url, DAN.0, DAN.1, attacker).await;
    assert_eq!(r.status(), 429);
    // Others are not affected.
    assert_eq!(
        login_from(&c, &p.url, DAN.0, DAN.1, "198.51.100.21")
            .await
            .status(),
        303
    );
}

fn curl(url: &str) -> (String, String) {
    let out = std::process::Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", url])
        .output()
        .expect("curl (apt-get install -y curl)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.to_owned(), body.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calendar_feeds_need_no_cookie_and_die_when_regenerated() {
    let dir = TempDir::new("feeds");
    let p = lpc_portal(&dir);
    let c = client();
    let ada = login(&c, &p.url, ADA.0, ADA.1).await;
    let csrf = session_csrf(&c, &p.url, &ada).await;
    let guid = conference::Event::load(&lpc_event()).unwrap().sessions[5]
        .guid
        .clone();
    post(
        &c,
        &format!("{}/picks", p.url),
        &ada,
        &[("csrf", &csrf), ("guid", &guid), ("picked", "1")],
    )
    .await;
    let (s, _, html) = get(&c, &format!("{}/settings", p.url), &ada).await;
    assert_eq!(s, 200);
    let feed = value_of(&html, "feed-url");
    assert!(feed.starts_with(&format!("{}/feeds/", p.url)), "{feed}");
    // A calendar client without cookies.
    let (code, ics) = curl(&feed);
    assert_eq!(code, "200", "{ics}");
    assert!(ics.starts_with("BEGIN:VCALENDAR\r\n"));
    assert_eq!(ics.matches("BEGIN:VEVENT").count(), 1);
    assert!(ics.contains(&format!("UID:{guid}@lpc.example.org")));
    // The same address twice; a guessed or altered one is 404.
    let (_, _, again) = get(&c, &format!("{}/settings", p.url), &ada).await;
    assert_eq!(value_of(&again, "feed-url"), feed);
    let altered = format!("{}0/my.ics", feed.trim_end_matches("/my.ics"));
    assert_eq!(curl(&altered).0, "404");
    let other_ticket = feed.replacen("/feeds/1-", "/feeds/2-", 1);
    assert_eq!(curl(&other_ticket).0, "404");
    // Regenerating needs the CSRF token, then kills the old address.
    let (s, _, _) = post(
        &c,
        &format!("{}/settings/feed", p.url),
        &ada,
        &[("csrf", "nope")],
    )
    .await;
    assert_eq!(s, 403);
    assert_eq!(curl(&feed).0, "200");
    let (s, loc, _) = post(
        &c,
        &format!("{}/settings/feed", p.url),
        &ada,
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!((s, loc.as_str()), (303, "/settings#calendar"));
    assert_eq!(curl(&feed).0, "404");
    let (_, _, html) = get(&c, &format!("{}/settings", p.url), &ada).await;
    let new_feed = value_of(&html, "feed-url");
    assert_ne!(new_feed, feed);
    assert_eq!(curl(&new_feed).0, "200");
    // The whole schedule is not public in this event...
    assert_eq!(curl(&format!("{}/schedule.ics", p.url)).0, "303");
    // ...and a revoked ticket's feed is gone.
    let state = dir.path().join("state");
    let (ok, _, err) = run(&[
        "tickets",
        "revoke",
        ADA.0,
        "--state",
        state.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert_eq!(curl(&new_feed).0, "404");
    // Her session ends too (within the portal's two-second cache).
    let mut status = 0;
    for _ in 0..40 {
        status = get(&c, &format!("{}/", p.url), &ada).await.0;
        if status == 303 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 303, "a revoked ticket's session lives on");
    let (ok, _, err) = run(&[
        "tickets",
        "revoke",
        ADA.0,
        "--state",
        state.to_str().unwrap(),
    ]);
    assert!(
        !ok && err.contains("no ticket for ada@example.org"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_schedule_feed_needs_no_ticket() {
    let dir = TempDir::new("public-ics");
    let event = write_live_event(dir.path());
    let mut text = std::fs::read_to_string(&event).unwrap();
    text.push_str("\n[portal]\npublic_schedule = true\n");
    std::fs::write(&event, text).unwrap();
    let state = dir.path().join("state");
    import_tickets(&state, TICKETS);
    let p = Portal::start(&event, &state, None);
    let (code, ics) = curl(&format!("{}/schedule.ics", p.url));
    assert_eq!(code, "200");
    assert_eq!(ics.matches("BEGIN:VEVENT").count(), 3);
    // Only the schedule: personal pages still need a login.
    assert_eq!(curl(&format!("{}/my.ics", p.url)).0, "303");
    assert_eq!(curl(&format!("{}/timetable", p.url)).0, "303");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jitsi_rooms_and_bridges_show_the_statistics() {
    use common::fake_jitsi::FakeJitsi;
    let dir = TempDir::new("jitsi-stats");
    let event = write_live_event(dir.path());
    let fake = FakeJitsi::start("meet.live.example.org").await;
    fake.set_room("live-jitsi-corner", 3);
    fake.set_room("some-other-room", 40);
    fake.set_bridge(2, 7, 0.35);
    let jwt_secret = dir.write("jwt", "jitsi-jwt-secret\n");
    let extra = format!(
        "[jitsi]\ndomain = \"meet.live.example.org\"\napp_id = \"venue\"\nsecret_file = \"{}\"\nroom_size_url = \"{}\"\n[[jitsi.bridge]]\nname = \"jvb-1\"\nstats_url = \"{}\"\n[[jitsi.bridge]]\nname = \"jvb-gone\"\nstats_url = \"http://127.0.0.1:9/colibri/stats\"\n",
        jwt_secret.display(),
        fake.url("/room-size"),
        fake.url("/colibri/stats"),
    );
    let config = write_config(dir.path(), 0.2, &[], &extra);
    let state = dir.path().join("state");
    import_tickets(&state, TICKETS);
    let p = Portal::start(&event, &state, Some(&config));
    let c = client();
    let dan = login(&c, &p.url, DAN.0, DAN.1).await;
    let carol = login(&c, &p.url, CAROL.0, CAROL.1).await;
    let people = |html: &str| -> String {
        let i = html
            .find("id=\"room-jitsi-corner\"")
            .expect("the Jitsi room's row");
        let j = i + html[i..].find("people\">").unwrap() + "people\">".len();
        html[j..j + html[j..].find('<').unwrap()].to_owned()
    };
    let mut seen = String::new();
    for _ in 0..50 {
        let (_, _, html) = get(&c, &format!("{}/", p.url), &dan).await;
        seen = people(&html);
        if seen == "3" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen, "3", "the Jitsi room's count");
    fake.set_room("live-jitsi-corner", 5);
    for _ in 0..50 {
        let (_, _, html) = get(&c, &format!("{}/", p.url), &dan).await;
        seen = people(&html);
        if seen == "5" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen, "5", "the count does not follow the statistics");
    // Nobody in the room: prosody answers 404, the portal shows 0.
    fake.state.lock().unwrap().rooms.clear();
    for _ in 0..50 {
        let (_, _, html) = get(&c, &format!("{}/", p.url), &dan).await;
        seen = people(&html);
        if seen == "0" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen, "0");
    // Staff see the bridges with their load; the unreachable one is down.
    let mut html = String::new();
    for _ in 0..50 {
        html = get(&c, &format!("{}/status", p.url), &carol).await.2;
        if html.contains("35 %") && html.matches("class=\"down\"").count() >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let bridges = &html[html.find("id=\"jitsi-bridges\"").expect("a bridge table")..];
    let bridges = &bridges[..bridges.find("</table>").unwrap()];
    assert!(
        bridges.contains("jvb-1") && bridges.contains("35 %"),
        "{bridges}"
    );
    assert!(bridges.contains("<td class=\"n\">7</td>"), "{bridges}");
    assert!(
        bridges.contains("jvb-gone") && bridges.contains("class=\"down\""),
        "{bridges}"
    );
    // Attendees do not see the status page; page views do not call Jitsi.
    assert_eq!(get(&c, &format!("{}/status", p.url), &dan).await.0, 403);
    let before = fake.calls();
    for _ in 0..20 {
        get(&c, &format!("{}/", p.url), &dan).await;
    }
    assert!(fake.calls() - before < 10, "page views call Jitsi");
}

const PROPOSALS_CSV: &str = "id,title,abstract,track,speakers\n\
P1,Tracing with BPF,How we trace,Networking,Ada Lovelace\n\
P2,Rust in the kernel,Why and how,Kernel,Bob\n\
P3,io_uring deep dive,,Kernel,Somebody Else\n\
P4,<b>Bold</b> claims,Escaping matters,Networking,\n\
P5,Scheduler latency,,Kernel,\n\
P6,XDP in practice,,Networking,\n\
P7,Memory tiering,,Kernel,\n\
P8,Netfilter futures,,Networking,\n";

fn proposals_in_order(html: &str) -> Vec<String> {
    html.match_indices("id=\"p-")
        .map(|(i, _)| {
            let s = &html[i + 6..];
            s[..s.find('"').unwrap()].to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn talk_vote_limits_orders_and_counts() {
    let dir = TempDir::new("vote");
    let event = write_live_event(dir.path());
    let mut text = std::fs::read_to_string(&event).unwrap();
    text.push_str("\n[vote]\nvotes_per_ticket = 3\n");
    std::fs::write(&event, text).unwrap();
    let state = dir.path().join("state");
    import_tickets(&state, TICKETS);
    let st = state.to_str().unwrap();
    // A bad file is refused whole, naming the line.
    let bad = dir.write("bad.csv", "id,title\nP1,Fine\nP2,\n");
    let (ok, _, err) = run(&["proposals", "import", bad.to_str().unwrap(), "--state", st]);
    assert!(!ok && err.contains("line 3"), "{err}");
    let file = dir.write("proposals.csv", PROPOSALS_CSV);
    let (ok, out, err) = run(&["proposals", "import", file.to_str().unwrap(), "--state", st]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "imported 8 proposals");
    let p = Portal::start(&event, &state, None);
    let c = client();
    let ada = login(&c, &p.url, ADA.0, ADA.1).await;
    let bob = login(&c, &p.url, BOB.0, BOB.1).await;
    let carol = login(&c, &p.url, CAROL.0, CAROL.1).await;
    let ada_csrf = session_csrf(&c, &p.url, &ada).await;
    let carol_csrf = session_csrf(&c, &p.url, &carol).await;
    let vote = |cookie: &str, csrf: &str, id: &str, on: bool| {
        let (cookie, csrf, id) = (cookie.to_owned(), csrf.to_owned(), id.to_owned());
        let c = c.clone();
        let url = format!("{}/vote", p.url);
        async move {
            post(
                &c,
                &url,
                &cookie,
                &[
                    ("csrf", &csrf),
                    ("proposal", &id),
                    ("vote", if on { "1" } else { "0" }),
                ],
            )
            .await
            .0
        }
    };
    // Closed until staff open it (no times in event.toml).
    let (_, _, html) = get(&c, &format!("{}/vote", p.url), &ada).await;
    assert!(html.contains("id=\"vote-closed\""));
    assert_eq!(vote(&ada, &ada_csrf, "P1", true).await, 403);
    // Only staff open it, with the CSRF token.
    let ada_switch = post(
        &c,
        &format!("{}/staff/vote", p.url),
        &ada,
        &[("csrf", &ada_csrf), ("action", "open")],
    )
    .await;
    assert_eq!(ada_switch.0, 403);
    let (s, _, _) = post(
        &c,
        &format!("{}/staff/vote", p.url),
        &carol,
        &[("csrf", "x"), ("action", "open")],
    )
    .await;
    assert_eq!(s, 403);
    let (s, _, _) = post(
        &c,
        &format!("{}/staff/vote", p.url),
        &carol,
        &[("csrf", &carol_csrf), ("action", "open")],
    )
    .await;
    assert_eq!(s, 303);
    // Each ticket sees every proposal once, in its own stable order.
    let (_, _, a1) = get(&c, &format!("{}/vote", p.url), &ada).await;
    let (_, _, a2) = get(&c, &format!("{}/vote", p.url), &ada).await;
    let (_, _, b1) = get(&c, &format!("{}/vote", p.url), &bob).await;
    let (oa, ob) = (proposals_in_order(&a1), proposals_in_order(&b1));
    assert_eq!(oa, proposals_in_order(&a2));
    let mut sorted = oa.clone();
    sorted.sort();
    assert_eq!(sorted, ["P1", "P2", "P3", "P4", "P5", "P6", "P7", "P8"]);
    assert_ne!(oa, ob, "two tickets see the same order");
    assert!(a1.contains("&lt;b&gt;Bold&lt;/b&gt; claims"));
    // Track filter.
    let (_, _, kernel) = get(&c, &format!("{}/vote?track=Kernel", p.url), &ada).await;
    let mut k = proposals_in_order(&kernel);
    k.sort();
    assert_eq!(k, ["P2", "P3", "P5", "P7"]);
    // Three votes, one per proposal; then no more.
    assert_eq!(vote(&ada, &ada_csrf, "P1", true).await, 303);
    assert_eq!(vote(&ada, &ada_csrf, "P1", true).await, 303);
    assert_eq!(vote(&ada, &ada_csrf, "P2", true).await, 303);
    assert_eq!(vote(&ada, &ada_csrf, "P3", true).await, 303);
    assert_eq!(vote(&ada, &ada_csrf, "P4", true).await, 409);
    assert_eq!(vote(&ada, &ada_csrf, "P9", true).await, 404);
    assert_eq!(vote(&ada, "", "P4", true).await, 403);
    let bob_csrf = session_csrf(&c, &p.url, &bob).await;
    assert_eq!(
        vote(&bob, &ada_csrf, "P1", true).await,
        403,
        "another session's token"
    );
    // Changing a vote: take one back, give it to another.
    assert_eq!(vote(&ada, &ada_csrf, "P3", false).await, 303);
    assert_eq!(vote(&ada, &ada_csrf, "P4", true).await, 303);
    assert_eq!(vote(&bob, &bob_csrf, "P1", true).await, 303);
    assert_eq!(vote(&bob, &bob_csrf, "P5", true).await, 303);
    // Attendees get no results.
    for path in [
        "/staff/vote",
        "/staff/vote/results.csv",
        "/staff/vote/results.json",
    ] {
        assert_eq!(
            get(&c, &format!("{}{path}", p.url), &ada).await.0,
            403,
            "{path}"
        );
    }
    let (s, _, json) = get(&c, &format!("{}/staff/vote/results.json", p.url), &carol).await;
    assert_eq!(s, 200);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let votes = |v: &serde_json::Value, id: &str| {
        v["proposals"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == id)
            .unwrap()["votes"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(v["open"], true);
    assert_eq!(v["voters"], 2);
    assert_eq!(
        (
            votes(&v, "P1"),
            votes(&v, "P2"),
            votes(&v, "P3"),
            votes(&v, "P4"),
            votes(&v, "P5")
        ),
        (2, 1, 0, 1, 1)
    );
    let track = |v: &serde_json::Value, t: &str| {
        let t = v["tracks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["track"] == t)
            .unwrap();
        (t["votes"].as_u64().unwrap(), t["voters"].as_u64().unwrap())
    };
    assert_eq!(track(&v, "Networking"), (3, 2));
    assert_eq!(track(&v, "Kernel"), (2, 2));
    // Re-importing keeps the votes; revoking Bob's ticket takes his.
    let (ok, _, err) = run(&["proposals", "import", file.to_str().unwrap(), "--state", st]);
    assert!(ok, "{err}");
    let (ok, _, err) = run(&["tickets", "revoke", BOB.0, "--state", st]);
    assert!(ok, "{err}");
    let (_, _, json) = get(&c, &format!("{}/staff/vote/results.json", p.url), &carol).await;
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["voters"], 1);
    assert_eq!((votes(&v, "P1"), votes(&v, "P5")), (1, 0));
    assert_eq!(track(&v, "Kernel"), (1, 1));
    // Closed: no more changes.
    let (s, _, _) = post(
        &c,
        &format!("{}/staff/vote", p.url),
        &carol,
        &[("csrf", &carol_csrf), ("action", "close")],
    )
    .await;
    assert_eq!(s, 303);
    assert_eq!(vote(&ada, &ada_csrf, "P4", false).await, 403);
    let (_, _, csv) = get(&c, &format!("{}/staff/vote/results.csv", p.url), &carol).await;
    assert!(csv.starts_with("id,title,track,speakers,votes\n"), "{csv}");
    assert!(
        csv.contains("P1,Tracing with BPF,Networking,Ada Lovelace,1\n"),
        "{csv}"
    );
}
