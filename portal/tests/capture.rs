//! Stage capture, portal side: which streamed rooms are live (schedule with
//! margins, staff overrides), the capture hosts' authenticated API, and
//! `venue-portal capture` starting and stopping one capture per room (a
//! child process here; systemd units on NixOS). The real capture engine
//! (Xvfb, PulseAudio, Chromium, ffmpeg) is in tests/capture_pipeline.rs.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::fake_bbb::FakeBbb;
use common::*;
use conference::protocol::bbb::Checksum;
use serde_json::Value;

const SECRET: &str = "capture-secret-for-tests-0123";

/// The live event with Main Track (a talk now) and Later Track (a talk in
/// three hours) streamed; the other rooms are not.
fn streamed_event(dir: &Path) -> PathBuf {
    let event = write_live_event(dir);
    let text = std::fs::read_to_string(&event).unwrap();
    let streamed = text
        .replacen(
            "peak = 80\nwebcams = false\n",
            "peak = 80\nwebcams = false\naudience = \"stream\"\n",
            1,
        )
        .replacen(
            "name = \"Later Track\"\nkind = \"session\"\nbackend = \"bbb\"\npeak = 40\n",
            "name = \"Later Track\"\nkind = \"session\"\nbackend = \"bbb\"\npeak = 40\naudience = \"stream\"\n",
            1,
        );
    assert_eq!(streamed.matches("audience = \"stream\"").count(), 2);
    std::fs::write(&event, streamed).unwrap();
    event
}

fn capture_config(dir: &Path, bbb: &str) -> PathBuf {
    let secret = dir.join("capture.secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    write_config(
        dir,
        0.2,
        &[("bbb-a", bbb, "capture-bbb-secret", "sha256")],
        &format!(
            "[capture]\nsecret_file = \"{}\"\nrtmp_url = \"rtmp://origin.test/live\"\nmargin_before_minutes = 5\nmargin_after_minutes = 10\n",
            secret.display()
        ),
    )
}

async fn api(c: &reqwest::Client, base: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = c.get(format!("{base}/capture/api/rooms"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn room<'a>(rooms: &'a Value, slug: &str) -> &'a Value {
    rooms["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["slug"] == slug)
        .unwrap_or_else(|| panic!("{slug} is not in {rooms}"))
}

async fn staff_capture(
    c: &reqwest::Client,
    base: &str,
    cookie: &str,
    room: &str,
    action: &str,
) -> u16 {
    let csrf = session_csrf(c, base, cookie).await;
    post(
        c,
        &format!("{base}/staff/capture"),
        cookie,
        &[("csrf", &csrf), ("room", room), ("action", action)],
    )
    .await
    .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schedule_and_staff_decide_which_stages_are_live() {
    let dir = TempDir::new("capture-api");
    let fake = FakeBbb::start("capture-bbb-secret", &[Checksum::Sha256]).await;
    let event = streamed_event(dir.path());
    let config = capture_config(dir.path(), &fake.url());
    let state = dir.path().join("state");
    import_tickets(&state, TICKETS);
    let p = Portal::start(&event, &state, Some(&config));
    let c = client();

    // The API: only with the secret.
    assert_eq!(api(&c, &p.url, None).await.0, 401);
    assert_eq!(
        api(&c, &p.url, Some("capture-secret-for-tests-0124"))
            .await
            .0,
        401
    );
    let r = c
        .get(format!("{}/capture/api/rooms", p.url))
        .header("authorization", format!("Basic {SECRET}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    // A ticket's session is not the capture secret either.
    let staff = login(&c, &p.url, "carol@example.org", "carol-ticket-03").await;
    assert_eq!(
        get(&c, &format!("{}/capture/api/rooms", p.url), &staff)
            .await
            .0,
        401
    );
    assert!(p
        .log()
        .contains("capture API call with a missing or wrong secret"));
    assert!(!p.log().contains(SECRET), "the secret is logged");

    let (s, rooms) = api(&c, &p.url, Some(SECRET)).await;
    assert_eq!(s, 200, "{rooms}");
    // Only the streamed rooms, the one in session live by the schedule.
    let slugs: Vec<_> = rooms["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["slug"].as_str().unwrap())
        .collect();
    assert_eq!(
        slugs,
        ["main-track", "later-track"],
        "a room that is not streamed is not captured"
    );
    let main = room(&rooms, "main-track");
    assert_eq!(
        (main["live"].as_bool(), main["why"].as_str()),
        (Some(true), Some("schedule"))
    );
    assert_eq!(main["rtmp_url"], "rtmp://origin.test/live/main-track");
    let later = room(&rooms, "later-track");
    assert_eq!(later["live"], false);
    // Its next change: the talk in three hours, minus the 5-minute margin.
    let next: chrono::DateTime<chrono::Utc> =
        later["next_change"].as_str().unwrap().parse().unwrap();
    let lead = next - chrono::Utc::now();
    assert!(
        lead > chrono::Duration::minutes(170) && lead < chrono::Duration::minutes(176),
        "{lead}"
    );

    // The join URL: a listen-only viewer of the stage, the meeting opened.
    let j = |slug: &str| {
        c.post(format!("{}/capture/api/rooms/{slug}/join", p.url))
            .bearer_auth(SECRET)
            .send()
    };
    let r = j("main-track").await.unwrap();
    assert_eq!(r.status(), 200);
    let url = r.json::<Value>().await.unwrap()["join_url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(url.starts_with(&format!("{}/join?", fake.url())), "{url}");
    for p in [
        "role=VIEWER",
        "userdata-bbb_force_listen_only=true",
        "excludeFromDashboard=true",
        "fullName=Stream",
    ] {
        assert!(url.contains(p), "{p} in {url}");
    }
    assert!(
        fake.meeting("live-main-track").is_some(),
        "the meeting was not created"
    );
    // Followed (redirects and all), it joins the stage as the viewer Stream.
    let page = reqwest::get(&url).await.unwrap().text().await.unwrap();
    assert!(
        page.contains("Joined live-main-track as VIEWER (Stream)"),
        "{page}"
    );
    assert_eq!(
        j("later-track").await.unwrap().status(),
        409,
        "not live: no join URL"
    );
    assert_eq!(j("hallway").await.unwrap().status(), 404);
    let r = c
        .post(format!("{}/capture/api/rooms/main-track/join", p.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // Staff: the staff room lists the captures and overrides them.
    let (_, _, html) = get(&c, &format!("{}/staff", p.url), &staff).await;
    assert!(
        html.contains("Stage captures") && html.contains("id=\"capture-main-track\""),
        "{html}"
    );
    assert_eq!(
        staff_capture(&c, &p.url, &staff, "main-track", "stop").await,
        303
    );
    let (_, rooms) = api(&c, &p.url, Some(SECRET)).await;
    let main = room(&rooms, "main-track");
    assert_eq!(
        (main["live"].as_bool(), main["why"].as_str()),
        (Some(false), Some("override"))
    );
    // Until the window ends: the talk's end (50 minutes from now) + 10.
    let until: chrono::DateTime<chrono::Utc> = main["until"].as_str().unwrap().parse().unwrap();
    let left = until - chrono::Utc::now();
    assert!(
        left > chrono::Duration::minutes(58) && left <= chrono::Duration::minutes(60),
        "{left}"
    );
    assert_eq!(j("main-track").await.unwrap().status(), 409);
    assert_eq!(
        staff_capture(&c, &p.url, &staff, "later-track", "start").await,
        303
    );
    let (_, rooms) = api(&c, &p.url, Some(SECRET)).await;
    assert_eq!(room(&rooms, "later-track")["live"], true);
    let (_, _, html) = get(&c, &format!("{}/staff", p.url), &staff).await;
    assert!(html.contains("Back to schedule"), "{html}");
    assert_eq!(
        staff_capture(&c, &p.url, &staff, "main-track", "schedule").await,
        303
    );
    assert_eq!(
        staff_capture(&c, &p.url, &staff, "later-track", "schedule").await,
        303
    );
    let (_, rooms) = api(&c, &p.url, Some(SECRET)).await;
    assert_eq!(room(&rooms, "main-track")["live"], true);
    assert_eq!(room(&rooms, "later-track")["live"], false);

    // Bad input: a clear refusal, nothing stored.
    assert_eq!(
        staff_capture(&c, &p.url, &staff, "hallway", "start").await,
        400
    );
    assert_eq!(
        staff_capture(&c, &p.url, &staff, "main-track", "pause").await,
        400
    );
    let (_, rooms2) = api(&c, &p.url, Some(SECRET)).await;
    assert_eq!(rooms, rooms2);
    // Attendees cannot; nor can a form without its token.
    let bob = login(&c, &p.url, "bob@example.org", "bob-ticket-0002").await;
    assert_eq!(
        staff_capture(&c, &p.url, &bob, "main-track", "stop").await,
        403
    );
    let (s, _, _) = post(
        &c,
        &format!("{}/staff/capture", p.url),
        &staff,
        &[("csrf", "x"), ("room", "main-track"), ("action", "stop")],
    )
    .await;
    assert_eq!(s, 403);
    let (_, rooms3) = api(&c, &p.url, Some(SECRET)).await;
    assert_eq!(rooms, rooms3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_portal_without_capture_has_no_capture_api() {
    let dir = TempDir::new("capture-none");
    let event = streamed_event(dir.path());
    let state = dir.path().join("state");
    import_tickets(&state, TICKETS);
    let p = Portal::start(&event, &state, None);
    let (s, v) = api(&client(), &p.url, Some(SECRET)).await;
    assert_eq!(s, 404);
    assert!(v["error"].as_str().unwrap().contains("[capture]"), "{v}");
}

/// `venue-portal capture --command <script>`, with OUT for the script.
struct ControllerProc(Child);

impl ControllerProc {
    fn start(
        base: &str,
        secret_file: &Path,
        script: &Path,
        dir: &Path,
        out: &Path,
        log: &Path,
    ) -> ControllerProc {
        let child = Command::new(bin())
            .args([
                "capture",
                "--portal",
                base,
                "--interval",
                "0.2",
                "--secret-file",
            ])
            .arg(secret_file)
            .arg("--command")
            .arg(script)
            .arg("--state")
            .arg(dir)
            .env("OUT", out)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        ControllerProc(child)
    }
}

impl Drop for ControllerProc {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        let _ = self.0.wait();
    }
}

async fn wait_for(what: &str, f: impl Fn() -> bool) {
    for _ in 0..100 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

fn read(p: PathBuf) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_starts_and_stops_one_capture_per_room() {
    let dir = TempDir::new("capture-ctl");
    let fake = FakeBbb::start("capture-bbb-secret", &[Checksum::Sha256]).await;
    let event = streamed_event(dir.path());
    let config = capture_config(dir.path(), &fake.url());
    let state = dir.path().join("state");
    import_tickets(&state, TICKETS);
    let p = Portal::start(&event, &state, Some(&config));
    let c = client();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    // A stand-in capture: it proves what it was given (its join URL joins
    // the fake BBB; the file is private) and records its start and stop.
    let script = dir.write(
        "capture.sh",
        "#!/bin/sh\nroom=$1\nd=$VENUE_CAPTURE_DIR\nstat -c %a \"$d/join-url\" > \"$OUT/$room.mode\"\n\
         curl -sL \"$(cat \"$d/join-url\")\" > \"$OUT/$room.joined\"\ncat \"$d/rtmp-url\" > \"$OUT/$room.rtmp\"\n\
         trap 'echo stopped >> \"$OUT/$room.log\"; exit 0' TERM\necho started >> \"$OUT/$room.log\"\n\
         while :; do sleep 0.1; done\n",
    );
    Command::new("chmod")
        .arg("+x")
        .arg(&script)
        .status()
        .unwrap();

    // A wrong secret: the controller says so and starts nothing.
    let wrong = dir.write("wrong.secret", "not-the-capture-secret-000\n");
    let log = dir.path().join("wrong.log");
    {
        let _ctl = ControllerProc::start(
            &p.url,
            &wrong,
            &script,
            &dir.path().join("run-wrong"),
            &out,
            &log,
        );
        wait_for("the refusal in the log", || {
            read(log.clone()).contains("401")
        })
        .await;
    }
    assert!(
        read(log.clone()).contains("the capture API needs"),
        "{}",
        read(log.clone())
    );
    assert_eq!(read(out.join("main-track.log")), "");

    let secret = dir.path().join("capture.secret");
    let run = dir.path().join("run");
    let log = dir.path().join("ctl.log");
    let ctl = ControllerProc::start(&p.url, &secret, &script, &run, &out, &log);
    wait_for("main-track's capture", || {
        read(out.join("main-track.log")) == "started\n"
    })
    .await;
    assert_eq!(read(out.join("main-track.mode")).trim(), "600");
    assert_eq!(
        read(out.join("main-track.rtmp")),
        "rtmp://origin.test/live/main-track"
    );
    let joined = read(out.join("main-track.joined"));
    assert!(
        joined.contains(">Joined live-main-track as VIEWER (Stream)<"),
        "{joined}"
    );
    let join_url = read(run.join("main-track/join-url"));
    assert!(
        !read(log.clone()).contains(&join_url),
        "the join URL is logged"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        read(out.join("later-track.log")),
        "",
        "later-track is not live"
    );
    assert_eq!(
        read(out.join("main-track.log")),
        "started\n",
        "started once"
    );

    // Staff stop main-track and start later-track.
    let staff = login(&c, &p.url, "carol@example.org", "carol-ticket-03").await;
    assert_eq!(
        staff_capture(&c, &p.url, &staff, "main-track", "stop").await,
        303
    );
    assert_eq!(
        staff_capture(&c, &p.url, &staff, "later-track", "start").await,
        303
    );
    wait_for("main-track stopped", || {
        read(out.join("main-track.log")) == "started\nstopped\n"
    })
    .await;
    wait_for("later-track started", || {
        read(out.join("later-track.log")) == "started\n"
    })
    .await;
    // Back to the schedule: main-track again, later-track off.
    assert_eq!(
        staff_capture(&c, &p.url, &staff, "main-track", "schedule").await,
        303
    );
    assert_eq!(
        staff_capture(&c, &p.url, &staff, "later-track", "schedule").await,
        303
    );
    wait_for("main-track restarted", || {
        read(out.join("main-track.log")) == "started\nstopped\nstarted\n"
    })
    .await;
    wait_for("later-track stopped", || {
        read(out.join("later-track.log")) == "started\nstopped\n"
    })
    .await;

    // The portal goes away: running captures are left alone.
    drop(p);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        read(out.join("main-track.log")),
        "started\nstopped\nstarted\n"
    );
    assert!(
        read(log.clone()).contains("captures left as they are"),
        "{}",
        read(log.clone())
    );
    // The controller's end stops its children.
    drop(ctl);
    wait_for("main-track stopped with the controller", || {
        read(out.join("main-track.log")).ends_with("started\nstopped\n")
            && read(out.join("main-track.log")).matches("stopped").count() == 2
    })
    .await;
}
