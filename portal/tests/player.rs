//! The Watch page is the only page with a script, and its scripts are the
//! portal's own player: hls.js as published on npm (by its sha256) and
//! watch.js. Every other page keeps its no-script CSP.

mod common;

use common::*;
use sha2::{Digest, Sha256};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_watch_page_carries_a_script_and_only_the_portals_own() {
    let dir = TempDir::new("player");
    let event = write_live_event(dir.path());
    let text = std::fs::read_to_string(&event).unwrap();
    std::fs::write(
        &event,
        text.replacen(
            "peak = 80\nwebcams = false\n",
            "peak = 80\nwebcams = false\naudience = \"stream\"\n",
            1,
        ),
    )
    .unwrap();
    let config = write_config(
        dir.path(),
        1.0,
        &[],
        "[stream]\nurls = [\"https://edge-1.live.example.org/hls\"]\n",
    );
    let state = dir.path().join("state");
    import_tickets(&state, TICKETS);
    let p = Portal::start(&event, &state, Some(&config));
    let c = client();
    let staff = login(&c, &p.url, "carol@example.org", "carol-ticket-03").await;

    for path in [
        "/",
        "/timetable",
        "/schedule",
        "/staff",
        "/status",
        "/settings",
        "/staff/vote",
        "/login",
        "/no-such-page",
    ] {
        let r = c
            .get(format!("{}{path}", p.url))
            .header("cookie", &staff)
            .send()
            .await
            .unwrap();
        let csp = r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned();
        let body = r.text().await.unwrap();
        assert!(csp.starts_with("default-src 'none';"), "{path}: {csp}");
        assert!(!csp.contains("script-src"), "{path} allows scripts: {csp}");
        assert!(!body.contains("<script"), "{path} carries a script");
        assert!(!body.contains("/assets/"), "{path} refers to the player");
    }

    let r = c
        .get(format!("{}/rooms/main-track/watch", p.url))
        .header("cookie", &staff)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("script-src 'self';")
            && csp.contains("connect-src https://edge-1.live.example.org;")
            && csp.contains("media-src https://edge-1.live.example.org blob:;"),
        "{csp}"
    );
    let body = r.text().await.unwrap();
    assert_eq!(body.matches("<script").count(), 2, "{body}");
    assert!(body.contains("<script src=\"/assets/hls.js-1.7.4/hls.light.min.js\" defer></script>"));
    assert!(body.contains("<script src=\"/assets/watch.js\" defer></script>"));

    // The assets: exactly the vendored bytes, as scripts, not sniffable as
    // anything else; another version is not there.
    let r = c
        .get(format!("{}/assets/hls.js-1.7.4/hls.light.min.js", p.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert!(r.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("immutable"));
    let bytes = r.bytes().await.unwrap();
    assert_eq!(
        conference::protocol::hex(&Sha256::digest(&bytes)),
        "482cccb3a224554f64d8c2cf0d335dba4a3819bdb726afbfddfe15de4c277d82"
    );
    let r = c
        .get(format!("{}/assets/watch.js", p.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("canPlayType"));
    for other in [
        "/assets/hls.js-1.7.3/hls.light.min.js",
        "/assets/hls.js-1.7.4/hls.min.js",
        "/assets/",
        "/assets/hls.light.min.js",
    ] {
        let r = c
            .get(format!("{}{other}", p.url))
            .header("cookie", &staff)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{other}");
    }
}
