//! The Watch page of a streamed room, end to end in headless Chromium: the
//! stream (a real nginx-rtmp origin fed by ffmpeg's test pattern) plays
//! beside the room's chat on a real Synapse (the portal its OpenID Connect
//! provider and its `[chat]` homeserver), so viewers and the stage share one
//! conversation. Skips like tests/chat.rs without the Synapse virtualenv
//! (fails under CI); fails without chromium, chromedriver or ffmpeg.

mod common;

use std::path::PathBuf;
use std::time::Instant;

use common::chat::{chat_portal, homeserver, until, Mx, SERVER};
use common::chromium::{body_text, log_in, need, playing_time, Driver, Origin};
use common::oidc::{free_port, Browser};
use common::synapse::{enc, matrix_login, venv};
use common::{client, write_live_event, TempDir};
use serde_json::{json, Value};
/// Main Track's room as Element opens it (the event's domain is
/// live.example.org, Element's default URL https://chat.<domain>).
const ELEMENT_ROOM: &str = "https://chat.live.example.org/#/room/#main-track:venue.test";
const WIDTH: i64 = 1280;
const HEIGHT: i64 = 900;

/// The bounding rectangles of the Watch page's video and chat panel, the
/// viewport, and whether the element at each one's centre is itself (or
/// inside it): what a person sees, not only where the boxes are.
async fn layout(d: &Driver) -> Value {
    d.script(
        "function r(e) { var b = e.getBoundingClientRect();
           var at = document.elementFromPoint(b.left + b.width / 2, b.top + b.height / 2);
           return {left: b.left, top: b.top, right: b.right, bottom: b.bottom,
                   shown: at !== null && (at === e || e.contains(at))}; }
         return {video: r(document.getElementById('stream')), chat: r(document.getElementById('chat')),
                 width: window.innerWidth, height: window.innerHeight};",
    )
    .await
}

/// Both boxes whole in the viewport, uncovered, side by side (the chat to
/// the right of the player, their heights overlapping) and not overlapping.
fn assert_side_by_side(l: &Value) {
    let f = |who: &str, k: &str| {
        l[who][k]
            .as_f64()
            .unwrap_or_else(|| panic!("{who}.{k}: {l}"))
    };
    let (w, h) = (l["width"].as_f64().unwrap(), l["height"].as_f64().unwrap());
    for who in ["video", "chat"] {
        assert!(
            f(who, "left") >= 0.0
                && f(who, "top") >= 0.0
                && f(who, "right") <= w
                && f(who, "bottom") <= h,
            "the {who} is not whole in the {w}×{h} viewport: {l}"
        );
        assert!(
            f(who, "right") - f(who, "left") > 200.0 && f(who, "bottom") - f(who, "top") > 150.0,
            "the {who} is too small to use: {l}"
        );
        assert_eq!(l[who]["shown"], true, "the {who} is covered: {l}");
    }
    assert!(
        f("video", "right") <= f("chat", "left"),
        "the chat is not to the right of the video: {l}"
    );
    assert!(
        f("chat", "top") < f("video", "bottom") && f("video", "top") < f("chat", "bottom"),
        "the chat and the video are not side by side: {l}"
    );
}

/// The chat panel's lines as (sender, message).
async fn chat_lines(d: &Driver) -> Vec<(String, String)> {
    let v = d
        .script(
            "return Array.from(document.querySelectorAll('#chat ol.chat li')).map(li =>
               [li.querySelector('.who').innerText, li.querySelector('.msg').innerText])",
        )
        .await;
    serde_json::from_value(v).unwrap()
}

/// The player's state, for a failure's message.
async fn video_state(d: &Driver) -> Value {
    d.script(
        "var v = document.getElementById('stream');
         return {player: v.getAttribute('data-player'), paused: v.paused, readyState: v.readyState,
                 networkState: v.networkState, mediaError: v.error && [v.error.code, v.error.message],
                 currentTime: v.currentTime, src: v.currentSrc, buffered: v.buffered.length,
                 hash: location.hash, scrollY: window.scrollY}",
    )
    .await
}

/// Width and height of a PNG (its IHDR chunk).
fn png_size(png: &[u8]) -> (u32, u32) {
    assert!(
        png.len() > 24 && png.starts_with(b"\x89PNG\r\n\x1a\n") && &png[12..16] == b"IHDR",
        "not a PNG"
    );
    let n = |i: usize| u32::from_be_bytes(png[i..i + 4].try_into().unwrap());
    (n(16), n(20))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_page_plays_the_stream_beside_the_rooms_chat() {
    let Some(venv) = venv() else { return };
    need("/usr/bin/chromium", "chromium");
    need("/usr/bin/chromedriver", "chromium-driver");
    let t0 = Instant::now();
    let dir = TempDir::new("watch-chat");
    // Main Track is streamed, "Live <b>kernel</b> talk" on it now.
    let event = write_live_event(dir.path());
    let text = std::fs::read_to_string(&event).unwrap();
    let streamed = text.replacen(
        "peak = 80\nwebcams = false\n",
        "peak = 80\nwebcams = false\naudience = \"stream\"\n",
        1,
    );
    assert_ne!(text, streamed);
    std::fs::write(&event, streamed).unwrap();

    // The origin fills its playlist while Synapse starts.
    let origin = tokio::task::spawn_blocking({
        let d: PathBuf = dir.path().to_owned();
        move || Origin::start(&d)
    });
    let (sport, pport) = (free_port(), free_port());
    let (s, reg_secret) = homeserver(&venv, &dir, sport, pport).await;
    let origin = origin.await.expect("the origin");
    let p = chat_portal(&dir, &s, pport, &event, &reg_secret, "0.5", &origin.hls());
    let base = p.url().to_owned();
    let c = client();
    let logs = || format!("--- portal\n{}\n--- synapse\n{}", p.log(), s.log());
    let started = t0.elapsed();

    // The portal's sync made Main Track's room.
    let main_alias = format!("#main-track:{SERVER}");
    until("Main Track's room", 20, logs, || async {
        let r = c
            .get(format!(
                "{}/_matrix/client/v3/directory/room/{}",
                s.url,
                enc(&main_alias)
            ))
            .send()
            .await
            .ok()?;
        (r.status() == 200).then_some(())
    })
    .await;

    // Ada, a ticket holder (and Main Track's speaker), logs in to Matrix
    // through the portal's SSO and posts in the room as Element would.
    let (_, ada_token) = matrix_login(
        &s,
        &mut Browser::default(),
        &c,
        "ada@example.org",
        "ada-ticket-0001",
    )
    .await;
    let ada = Mx {
        c: c.clone(),
        url: s.url.clone(),
        token: ada_token,
    };
    // The alias resolves before the room's public join rule is in, so
    // her first try may be refused.
    let room_id = until("Ada in Main Track", 10, logs, || async {
        let (st, v) = ada
            .call(
                reqwest::Method::POST,
                &format!("/_matrix/client/v3/join/{}", enc(&main_alias)),
                Some(json!({})),
            )
            .await;
        (st == 200).then(|| v["room_id"].as_str().unwrap().to_owned())
    })
    .await;
    let from_ada = "Welcome, everyone watching the stream!";
    let (st, v) = ada
        .call(
            reqwest::Method::PUT,
            &format!(
                "/_matrix/client/v3/rooms/{}/send/m.room.message/ada-1",
                enc(&room_id)
            ),
            Some(json!({"msgtype": "m.text", "body": from_ada})),
        )
        .await;
    assert_eq!(st, 200, "Ada posts: {v}");

    // Bob, an attendee, in a desktop browser: Watch and Chat side by side
    // on the welcome page, Chat opening the room in Element.
    let d = Driver::start_sized(&dir.path().join("profile"), WIDTH as u32, HEIGHT as u32).await;
    d.set_viewport(WIDTH, HEIGHT).await;
    log_in(&d, &base, "bob@example.org", "bob-ticket-0002", "/").await;
    let beside = d
        .script(
            "var w = document.querySelector(\"a[href='/rooms/main-track/watch']\");
             var n = w && w.nextElementSibling;
             return n ? [n.innerText, n.getAttribute('href')] : null",
        )
        .await;
    assert_eq!(
        beside,
        json!(["Chat", ELEMENT_ROOM]),
        "the welcome page's Chat beside Watch"
    );
    d.click("a[href='/rooms/main-track/watch']").await;
    let at = d.wait_url(&format!("{base}/rooms/main-track/watch")).await;
    assert_eq!(at, format!("{base}/rooms/main-track/watch"));

    // The stream plays.
    let played = playing_time(&d).await;
    assert!(
        played > 2.0,
        "the stream did not play ({played} s): {}\n{}",
        video_state(&d).await,
        logs()
    );
    // The chat lists Ada's message under her name, and links the room in Element.
    let lines = chat_lines(&d).await;
    assert!(
        lines.contains(&("Ada Lovelace".to_owned(), from_ada.to_owned())),
        "the chat panel: {lines:?}\n{}",
        body_text(&d).await
    );
    let element = d
        .script(
            "return Array.from(document.querySelectorAll('#chat a')).map(a => [a.innerText, a.getAttribute('href')])",
        )
        .await;
    assert_eq!(
        element,
        json!([["Open in Element", ELEMENT_ROOM]]),
        "the chat panel's link"
    );
    assert_side_by_side(&layout(&d).await);
    d.screenshot("watch-chat-arrived").await;

    // Bob posts from the page: back on it after the redirect, his message
    // shown (as text), and in the room on Synapse for everyone else.
    let from_bob = "Can you <i>zoom</i> in on the slides & the code?";
    d.type_into("#chat-text", from_bob).await;
    d.click_and_load("form[action='/rooms/main-track/chat'] button[type=submit]")
        .await;
    assert_eq!(d.url().await, format!("{base}/rooms/main-track/watch#chat"));
    let lines = chat_lines(&d).await;
    assert_eq!(
        lines.last(),
        Some(&("Bob (via portal)".to_owned(), from_bob.to_owned())),
        "the chat panel after posting: {lines:?}"
    );
    assert!(
        lines.contains(&("Ada Lovelace".to_owned(), from_ada.to_owned())),
        "{lines:?}"
    );
    assert_eq!(
        d.script("return document.querySelectorAll('#chat i').length")
            .await,
        0,
        "a message made an element"
    );
    let (st, v) = ada
        .call(
            reqwest::Method::GET,
            &format!(
                "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=20",
                enc(&room_id)
            ),
            None,
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let want = format!("Bob (via portal): {from_bob}");
    let in_room = v["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["content"]["body"] == want.as_str())
        .unwrap_or_else(|| panic!("Bob's post is not in the room: {v}"));
    assert_eq!(
        in_room["sender"],
        format!("@portal:{SERVER}"),
        "posted by the portal's bot"
    );

    // After the reload the stream plays again beside the chat: what a person sees.
    let played = playing_time(&d).await;
    assert!(
        played > 2.0,
        "the stream did not play again ({played} s): {}",
        video_state(&d).await
    );
    let l = layout(&d).await;
    assert_side_by_side(&l);
    let png = d.png().await;
    assert_eq!(
        png_size(&png),
        (WIDTH as u32, HEIGHT as u32),
        "the screenshot is the viewport"
    );
    if let Some(dir) = std::env::var_os("VENUE_SCREENSHOT_DIR") {
        std::fs::write(PathBuf::from(dir).join("watch-chat-posted.png"), &png).unwrap();
    }
    eprintln!(
        "timings: services up in {:.1} s, whole test {:.1} s; player {}; layout {l}",
        started.as_secs_f64(),
        t0.elapsed().as_secs_f64(),
        video_state(&d).await["player"]
    );
}
