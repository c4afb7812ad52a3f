//! Headless Chromium, driven through chromedriver (WebDriver), logs in with
//! the form, reads the timetable and presses Join, ending on the fake
//! BigBlueButton's client page. Needs Debian's `chromium` and
//! `chromium-driver`; fails, not skips, without them.

mod common;

use common::chromium::{body_text, log_in, need, playing_time, Driver, Origin};
use common::fake_bbb::FakeBbb;
use common::*;
use conference::protocol::bbb::Checksum;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_logs_in_reads_the_timetable_and_joins() {
    need("/usr/bin/chromium", "chromium");
    need("/usr/bin/chromedriver", "chromium-driver");
    let dir = TempDir::new("chromium");
    let fake = FakeBbb::start("browser-secret", &[Checksum::Sha256]).await;
    let event = write_live_event(dir.path());
    let config = write_config(
        dir.path(),
        0.5,
        &[("bbb-a", &fake.url(), "browser-secret", "sha256")],
        "",
    );
    let state = dir.path().join("state");
    import_tickets(&state, TICKETS);
    let p = Portal::start(&event, &state, Some(&config));
    let profile = dir.path().join("profile");
    let d = Driver::start(&profile).await;

    // Without a session the timetable sends the browser to the login form.
    d.go(&format!("{}/timetable", p.url)).await;
    assert!(
        d.url().await.contains("/login?next=%2Ftimetable"),
        "{}",
        d.url().await
    );
    d.screenshot("login").await;
    d.type_into("#email", "bob@example.org").await;
    d.type_into("#code", "bob-ticket-0002").await;
    d.click("form[action='/login'] button[type=submit]").await;
    // Back on the timetable, logged in.
    let at = d.wait_url(&format!("{}/timetable", p.url)).await;
    if at != format!("{}/timetable", p.url) {
        let text = d.script("return document.body.innerText").await;
        panic!(
            "after logging in the browser is at {at}: {text}\n{}",
            p.log()
        );
    }
    let text = d.script("return document.body.innerText").await;
    let text = text.as_str().unwrap();
    assert!(text.contains("Running now"), "{text}");
    // The title with HTML in it shows as text and makes no element.
    assert!(text.contains("Live <b>kernel</b> talk"), "{text}");
    assert_eq!(
        d.script("return document.querySelectorAll('main b').length")
            .await,
        0
    );
    assert!(text.contains("UTC"));
    // The page fits a phone's width (400 px window): no horizontal scrolling.
    let wide = d
        .script("return document.documentElement.scrollWidth > window.innerWidth")
        .await;
    assert_eq!(wide, false, "the timetable is wider than a phone");

    d.screenshot("timetable").await;
    d.go(&format!("{}/", p.url)).await;
    d.screenshot("welcome").await;
    d.go(&format!("{}/timetable", p.url)).await;
    // Join the running session: through the portal's redirect to the fake BBB.
    d.click("form[action='/rooms/main-track/join'] button")
        .await;
    d.wait_url(&format!(
        "http://{}/html5client/join?sessionToken=",
        fake.addr
    ))
    .await;
    let joined = d.script("var e = document.getElementById('joined'); return e ? e.innerText : document.body.innerText").await;
    assert_eq!(
        joined.as_str().unwrap(),
        "Joined live-main-track as VIEWER (Bob)"
    );
    assert!(d.url().await.starts_with(&format!(
        "http://{}/html5client/join?sessionToken=",
        fake.addr
    )));
    assert_eq!(fake.calls("create"), 1);
    assert_eq!(fake.calls("join"), 1);
}

async fn log_out(d: &Driver, base: &str) {
    d.click_and_load("form[action='/logout'] button").await;
    assert_eq!(d.url().await, format!("{base}/login"));
}

/// Presses the vote button of proposal `id` on the vote page.
async fn press(d: &Driver, base: &str, id: &str) {
    d.click_and_load(&format!("#p-{id} form[action='/vote'] button"))
        .await;
    assert!(d.url().await.starts_with(&format!("{base}/vote")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_talk_vote_end_to_end() {
    need("/usr/bin/chromium", "chromium");
    need("/usr/bin/chromedriver", "chromium-driver");
    let dir = TempDir::new("chromium-vote");
    let event = write_live_event(dir.path());
    let mut text = std::fs::read_to_string(&event).unwrap();
    let opened = chrono::Utc::now() - chrono::Duration::hours(1);
    text.push_str(&format!(
        "\n[vote]\nopens = {}\nvotes_per_ticket = 2\n",
        opened.format("%Y-%m-%dT%H:%M:%SZ")
    ));
    std::fs::write(&event, text).unwrap();
    let state = dir.path().join("state");
    import_tickets(&state, TICKETS);
    // pretalx's API answer for /submissions/.
    let pretalx = dir.write(
        "submissions.json",
        r#"{"count": 5, "next": null, "previous": null, "results": [
 {"code": "AAA111", "title": "Tracing with BPF", "abstract": "How we trace.", "track": {"en": "Networking"}, "speakers": [{"code": "S1", "name": "Ada Lovelace"}], "state": "submitted"},
 {"code": "BBB222", "title": "Rust in the kernel", "abstract": "Why and how.", "track": {"en": "Kernel"}, "speakers": [{"code": "S2", "name": "Bob"}], "state": "submitted"},
 {"code": "CCC333", "title": "io_uring deep dive", "abstract": "", "track": {"en": "Kernel"}, "speakers": [], "state": "submitted"},
 {"code": "DDD444", "title": "Netfilter futures", "abstract": null, "track": {"en": "Networking"}, "speakers": [], "state": "submitted"},
 {"code": "EEE555", "title": "Withdrawn", "abstract": null, "track": null, "speakers": [], "state": "withdrawn"}]}"#,
    );
    let st = state.to_str().unwrap().to_owned();
    let (ok, out, err) = run(&[
        "proposals",
        "import",
        pretalx.to_str().unwrap(),
        "--state",
        &st,
    ]);
    assert!(ok && out.contains("imported 4 proposals"), "{out}{err}");
    let p = Portal::start(&event, &state, None);
    let base = p.url.clone();
    let c = client();
    let profile = dir.path().join("profile");
    let d = Driver::start(&profile).await;

    // Ada votes twice, has no votes left, then changes one.
    log_in(&d, &base, "ada@example.org", "ada-ticket-0001", "/vote").await;
    let text = body_text(&d).await;
    assert!(text.contains("You have used 0 of your 2 votes"), "{text}");
    assert!(!text.contains("Withdrawn"));
    press(&d, &base, "AAA111").await;
    press(&d, &base, "BBB222").await;
    let text = body_text(&d).await;
    assert!(text.contains("You have used 2 of your 2 votes"), "{text}");
    let ccc = d
        .script("return document.querySelector('#p-CCC333').innerText")
        .await;
    assert!(ccc.as_str().unwrap().contains("no votes left"), "{ccc}");
    press(&d, &base, "BBB222").await; // take back
    press(&d, &base, "CCC333").await;
    d.screenshot("vote").await;
    let ada_page = body_text(&d).await;
    assert!(ada_page.contains("You have used 2 of your 2 votes"));
    log_out(&d, &base).await;

    // Bob votes for two; Dan votes through the form too, then loses his ticket.
    log_in(&d, &base, "bob@example.org", "bob-ticket-0002", "/vote").await;
    press(&d, &base, "AAA111").await;
    press(&d, &base, "BBB222").await;
    log_out(&d, &base).await;
    let dan = login(&c, &base, "dan@example.org", "dan-ticket-0004").await;
    let dan_csrf = session_csrf(&c, &base, &dan).await;
    for id in ["AAA111", "DDD444"] {
        let (s, _, _) = post(
            &c,
            &format!("{base}/vote"),
            &dan,
            &[("csrf", &dan_csrf), ("proposal", id), ("vote", "1")],
        )
        .await;
        assert_eq!(s, 303);
    }

    // Ada's page shows nothing of the others' votes while the vote is open.
    log_in(&d, &base, "ada@example.org", "ada-ticket-0001", "/vote").await;
    assert_eq!(
        body_text(&d).await,
        ada_page,
        "an attendee's page changed with others' votes"
    );
    log_out(&d, &base).await;

    // Staff revoke Dan's ticket, close the vote and download the CSV.
    log_in(&d, &base, "carol@example.org", "carol-ticket-03", "/staff").await;
    d.type_into("#revoke-email", "dan@example.org").await;
    d.click_and_load("form[action='/staff/tickets/revoke'] button")
        .await;
    assert_eq!(d.url().await, format!("{base}/staff"));
    assert_eq!(
        get(&c, &format!("{base}/vote"), &dan).await.0,
        303,
        "Dan's session lives on"
    );
    d.go(&format!("{base}/staff/vote")).await;
    assert!(body_text(&d).await.contains("The vote is open"));
    d.click_and_load("form[action='/staff/vote'] button").await;
    let text = body_text(&d).await;
    assert!(text.contains("The vote is closed"), "{text}");
    assert!(text.contains("2 of 3 tickets voted"), "{text}");
    d.screenshot("vote-results").await;
    let cookie = d.call("GET", "/cookie/venue_session", Value::Null).await;
    let session = format!("venue_session={}", cookie["value"].as_str().unwrap());
    let r = c
        .get(format!("{base}/staff/vote/results.csv"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .contains("live-vote.csv"));
    let csv = r.text().await.unwrap();
    assert_eq!(
        csv,
        "id,title,track,speakers,votes\n\
         AAA111,Tracing with BPF,Networking,Ada Lovelace,2\n\
         BBB222,Rust in the kernel,Kernel,Bob,1\n\
         CCC333,io_uring deep dive,Kernel,,1\n\
         DDD444,Netfilter futures,Networking,,0\n"
    );
    // Closed: Ada can no longer change her votes.
    log_out(&d, &base).await;
    log_in(&d, &base, "ada@example.org", "ada-ticket-0001", "/vote").await;
    let text = body_text(&d).await;
    assert!(text.contains("The vote is closed"), "{text}");
    assert_eq!(
        d.script("return document.querySelectorAll(\"form[action='/vote']\").length")
            .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_room_is_watched_and_its_stage_joined_by_its_speaker() {
    need("/usr/bin/chromium", "chromium");
    need("/usr/bin/chromedriver", "chromium-driver");
    let dir = TempDir::new("watch");
    let fake = FakeBbb::start("watch-secret", &[Checksum::Sha256]).await;
    let event = write_live_event(dir.path());
    // The main track is a stage and a stream (Ada speaks there now).
    let text = std::fs::read_to_string(&event).unwrap();
    let streamed = text.replacen(
        "peak = 80\nwebcams = false\n",
        "peak = 80\nwebcams = false\naudience = \"stream\"\n",
        1,
    );
    assert_ne!(text, streamed);
    std::fs::write(&event, streamed).unwrap();
    let origin = Origin::start(dir.path());
    let config = write_config(
        dir.path(),
        0.5,
        &[("bbb-a", &fake.url(), "watch-secret", "sha256")],
        &format!("[stream]\nurls = [\"{}\"]\n", origin.hls()),
    );
    let state = dir.path().join("state");
    import_tickets(&state, TICKETS);
    let p = Portal::start(&event, &state, Some(&config));
    let d = Driver::start(&dir.path().join("profile")).await;

    // An attendee: Watch, no Join, on the welcome page and the timetable.
    log_in(&d, &p.url, "bob@example.org", "bob-ticket-0002", "/").await;
    for page in ["/", "/timetable"] {
        d.go(&format!("{}{page}", p.url)).await;
        let watch = d
            .script(
                "return document.querySelectorAll(\"a[href='/rooms/main-track/watch']\").length",
            )
            .await;
        assert!(watch.as_u64().unwrap() >= 1, "{page}: no Watch link");
        let join = d
            .script("return document.querySelectorAll(\"form[action='/rooms/main-track/join']\").length")
            .await;
        assert_eq!(join, 0, "{page}: an attendee gets no Join on a stage");
        assert_eq!(
            d.script("return document.scripts.length").await,
            0,
            "{page} carries a script"
        );
    }
    d.click("a[href='/rooms/main-track/watch']").await;
    d.wait_url(&format!("{}/rooms/main-track/watch", p.url))
        .await;
    // Its only scripts: the portal's own player (hls.js and watch.js).
    let scripts = d
        .script("return Array.from(document.scripts).map(s => s.src)")
        .await;
    assert_eq!(
        scripts,
        json!([
            format!("{}/assets/hls.js-1.7.4/hls.light.min.js", p.url),
            format!("{}/assets/watch.js", p.url)
        ]),
        "the Watch page's scripts"
    );
    let src = d
        .script("return document.getElementById('stream').getAttribute('data-hls')")
        .await;
    assert_eq!(src, format!("{}/main-track.m3u8", origin.hls()));
    // The browser plays it (natively where it can, else with hls.js): the
    // video's time advances. Then hls.js, asked for, plays it too.
    let mut players = Vec::new();
    for query in ["", "?player=hls.js"] {
        d.go(&format!("{}/rooms/main-track/watch{query}", p.url))
            .await;
        let played = playing_time(&d).await;
        let player = d
            .script("return document.getElementById('stream').getAttribute('data-player')")
            .await;
        assert!(
            played > 2.0,
            "the stream did not play with {player} ({played} s)\n{}",
            p.log()
        );
        players.push(player);
    }
    assert_eq!(players[1], "hls.js", "?player=hls.js used {}", players[1]);
    assert!(
        players[0] == "native" || players[0] == "hls.js",
        "{}",
        players[0]
    );
    d.screenshot("watch").await;
    let text = body_text(&d).await;
    assert!(
        text.contains("Live <b>kernel</b> talk"),
        "the room's schedule: {text}"
    );
    assert!(text.contains("Chat"), "{text}");
    assert!(!text.contains("Join the stage"), "{text}");
    log_out(&d, &p.url).await;

    // Its speaker: the stage's Join on the Watch page, into the meeting as moderator.
    log_in(
        &d,
        &p.url,
        "ada@example.org",
        "ada-ticket-0001",
        "/rooms/main-track/watch",
    )
    .await;
    d.click("form[action='/rooms/main-track/join'] button")
        .await;
    d.wait_url(&format!(
        "http://{}/html5client/join?sessionToken=",
        fake.addr
    ))
    .await;
    let joined = d
        .script("var e = document.getElementById('joined'); return e ? e.innerText : document.body.innerText")
        .await;
    assert_eq!(
        joined.as_str().unwrap(),
        "Joined live-main-track as MODERATOR (Ada Lovelace)"
    );
}
