//! The BBB pool file, end to end: the portal binary with a pool file naming
//! fake BigBlueButton servers, rewritten while it runs as `venue autopilot`
//! does (written beside, renamed into place).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::fake_bbb::FakeBbb;
use common::*;
use conference::protocol::bbb::Checksum;
use serde_json::Value;

const ADA: (&str, &str) = ("ada@example.org", "ada-ticket-0001");
const CAROL: (&str, &str) = ("carol@example.org", "carol-ticket-03");
const API_SECRET: &str = "pool-api-secret-for-tests-0123";

/// A portal with static server `a` (busy with 60 people, so new rooms go
/// elsewhere when there is an elsewhere) and the pool file in `dir`.
struct Setup {
    dir: TempDir,
    a: FakeBbb,
    b: FakeBbb,
    portal: Portal,
    pool: PathBuf,
    c: reqwest::Client,
}

async fn setup(name: &str, busy_a: bool, pool: Option<&[(&str, &FakeBbb, bool)]>) -> Setup {
    let dir = TempDir::new(name);
    let a = FakeBbb::start("secret-a", &[Checksum::Sha256]).await;
    let b = FakeBbb::start("secret-b", &[Checksum::Sha256]).await;
    if busy_a {
        a.add_meeting("elsewhere", 60, 0, 0, 3_600_000);
    }
    let event = write_live_event(dir.path());
    let pool_path = dir.path().join("pool.json");
    let api_secret = dir.write("pool-api-secret", &format!("{API_SECRET}\n"));
    dir.write("bbb-secret-b", "secret-b\n");
    let config = write_config(
        dir.path(),
        0.2,
        &[("bbb-a", &a.url(), "secret-a", "sha256")],
        &format!(
            "pool_file = \"{}\"\npool_api_secret_file = \"{}\"\n",
            pool_path.display(),
            api_secret.display()
        ),
    );
    if let Some(entries) = pool {
        write_pool(&pool_path, entries, None);
    }
    let state = dir.path().join("state");
    import_tickets(&state, TICKETS);
    let portal = Portal::start(&event, &state, Some(&config));
    Setup {
        a,
        b,
        portal,
        pool: pool_path,
        c: client(),
        dir,
    }
}

/// Writes the pool file beside and renames it into place. Every server's
/// secret is in `<dir>/bbb-secret-<letter>` (the name's last character).
fn write_pool(path: &Path, entries: &[(&str, &FakeBbb, bool)], updated: Option<&str>) {
    let dir = path.parent().unwrap();
    let bbb: Vec<Value> = entries
        .iter()
        .map(|(name, fake, draining)| {
            serde_json::json!({
                "name": name,
                "url": format!("{}/", fake.url()),
                "secret_file": dir.join(format!("bbb-secret-{}", name.chars().last().unwrap())),
                "checksum": "sha256",
                "draining": draining,
            })
        })
        .collect();
    let mut doc = serde_json::json!({ "bbb": bbb });
    if let Some(u) = updated {
        doc["updated"] = u.into();
    }
    write_raw(path, &serde_json::to_string_pretty(&doc).unwrap());
}

fn write_raw(path: &Path, text: &str) {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

impl Setup {
    /// `GET /pool/api/servers` with `secret`: status and body.
    async fn api_with(&self, secret: Option<&str>) -> (u16, Value) {
        let mut r = self.c.get(format!("{}/pool/api/servers", self.portal.url));
        if let Some(s) = secret {
            r = r.bearer_auth(s);
        }
        let r = r.send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    async fn api(&self) -> Value {
        let (s, v) = self.api_with(Some(API_SECRET)).await;
        assert_eq!(s, 200, "{v}");
        v
    }

    /// Waits until `f` holds of the API's answer.
    async fn until(&self, what: &str, f: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..200 {
            let v = self.api().await;
            if f(&v) {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "timed out waiting for {what}: {}\n{}",
            self.api().await,
            self.portal.log()
        );
    }

    /// Joins room `slug` with the session `cookie` and follows the join URL
    /// as a browser does (BBB counts the participant); the join URL.
    async fn join(&self, cookie: &str, slug: &str) -> String {
        let csrf = session_csrf(&self.c, &self.portal.url, cookie).await;
        let (s, loc, body) = post(
            &self.c,
            &format!("{}/rooms/{slug}/join", self.portal.url),
            cookie,
            &[("csrf", &csrf)],
        )
        .await;
        assert_eq!(s, 303, "join {slug}: {body}\n{}", self.portal.log());
        let r = self.c.get(&loc).send().await.unwrap();
        assert_eq!(r.status(), 302, "BBB refused the join URL {loc}");
        loc
    }

    async fn status(&self, cookie: &str) -> String {
        let (s, _, html) = get(&self.c, &format!("{}/status", self.portal.url), cookie).await;
        assert_eq!(s, 200);
        html
    }
}

fn server_of<'a>(url: &str, servers: &[(&'a str, &FakeBbb)]) -> &'a str {
    servers
        .iter()
        .find(|(_, f)| url.starts_with(&format!("{}/join?", f.url())))
        .map(|(n, _)| *n)
        .unwrap_or_else(|| panic!("a join URL to no known server: {url}"))
}

fn entry<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    v["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_joins_the_pool_without_restart_and_logins_survive() {
    let t = setup("pool-add", false, None).await;
    let servers = [("bbb-a", &t.a), ("bbb-b", &t.b)];
    // The API needs its secret.
    assert_eq!(t.api_with(None).await.0, 401);
    assert_eq!(t.api_with(Some("wrong-secret-0123456789")).await.0, 401);
    let v = t.api().await;
    assert_eq!(v["pool_file"], t.pool.display().to_string());
    assert_eq!(v["servers"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["servers"][0]["source"], "static");

    let ada = login(&t.c, &t.portal.url, ADA.0, ADA.1).await;
    let carol = login(&t.c, &t.portal.url, CAROL.0, CAROL.1).await;
    assert_eq!(server_of(&t.join(&ada, "hallway").await, &servers), "bbb-a");
    assert_eq!(t.b.calls("getMeetings"), 0);

    write_pool(
        &t.pool,
        &[("bbb-b", &t.b, false)],
        Some("2026-12-01T08:00:00Z"),
    );
    let v = t
        .until("bbb-b up", |v| {
            entry(v, "bbb-b").is_some_and(|s| s["up"] == true && s["source"] == "pool")
        })
        .await;
    assert_eq!(v["updated"], "2026-12-01T08:00:00Z");
    assert!(t.b.calls("getMeetings") > 0);
    // The new room goes to the new, empty server; a holds the hallway.
    assert_eq!(server_of(&t.join(&carol, "staff").await, &servers), "bbb-b");
    assert!(t.b.meeting("live-staff").is_some(), "created on bbb-b");
    // The attendee's login from before the change still works.
    let (s, _, html) = get(&t.c, &format!("{}/", t.portal.url), &ada).await;
    assert_eq!(s, 200);
    assert!(html.contains("Ada Lovelace"));
    assert_eq!(server_of(&t.join(&ada, "hallway").await, &servers), "bbb-a");
    let html = t.status(&carol).await;
    assert!(html.contains("bbb-b") && html.contains("(pool)"), "{html}");
    assert_eq!(
        t.portal.log().matches("venue-portal listening").count(),
        1,
        "one start only"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_server_keeps_its_meeting_until_it_ends() {
    let t = setup("pool-drain", true, None).await;
    let servers = [("bbb-a", &t.a), ("bbb-b", &t.b)];
    write_pool(&t.pool, &[("bbb-b", &t.b, false)], None);
    t.until("bbb-b up", |v| {
        entry(v, "bbb-b").is_some_and(|s| s["up"] == true)
    })
    .await;
    let ada = login(&t.c, &t.portal.url, ADA.0, ADA.1).await;
    let carol = login(&t.c, &t.portal.url, CAROL.0, CAROL.1).await;
    assert_eq!(
        server_of(&t.join(&carol, "hallway").await, &servers),
        "bbb-b"
    );
    t.until("the hallway polled on bbb-b", |v| {
        entry(v, "bbb-b").is_some_and(|s| s["meetings"] == 1 && s["participants"] == 1)
    })
    .await;

    write_pool(
        &t.pool,
        &[("bbb-b", &t.b, true)],
        Some("2026-12-01T09:00:00Z"),
    );
    let v = t
        .until("the drain applied", |v| {
            v["updated"] == "2026-12-01T09:00:00Z"
        })
        .await;
    let b = entry(&v, "bbb-b").unwrap();
    assert_eq!(b["draining"], true, "{v}");
    assert_eq!(b["drained"], false, "a meeting runs there: {v}");
    assert!(b["draining_since"].is_string());
    // The running meeting keeps its server; a new room goes elsewhere,
    // even to the busier server.
    assert_eq!(server_of(&t.join(&ada, "hallway").await, &servers), "bbb-b");
    assert_eq!(server_of(&t.join(&carol, "staff").await, &servers), "bbb-a");
    assert!(t.b.meeting("live-staff").is_none());
    let html = t.status(&carol).await;
    assert!(
        html.contains("<span class=\"draining\">draining</span>"),
        "{html}"
    );
    t.until("both on bbb-b", |v| {
        entry(v, "bbb-b").is_some_and(|s| s["participants"] == 2 && s["drained"] == false)
    })
    .await;

    // The meeting ends: the server is drained, and the room's next meeting
    // goes elsewhere.
    t.b.state.lock().unwrap().meetings.clear();
    t.until("bbb-b drained", |v| {
        entry(v, "bbb-b").is_some_and(|s| s["drained"] == true && s["meetings"] == 0)
    })
    .await;
    assert_eq!(server_of(&t.join(&ada, "hallway").await, &servers), "bbb-a");
    assert!(t.a.meeting("live-hallway").is_some(), "created on bbb-a");
    assert!(
        t.b.meeting("live-hallway").is_none(),
        "not created again on bbb-b"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_pool_file_is_refused_and_the_pool_stays() {
    let t = setup("pool-broken", true, None).await;
    let servers = [("bbb-a", &t.a), ("bbb-b", &t.b)];
    write_pool(
        &t.pool,
        &[("bbb-b", &t.b, false)],
        Some("2026-12-01T10:00:00Z"),
    );
    t.until("bbb-b up", |v| {
        entry(v, "bbb-b").is_some_and(|s| s["up"] == true)
    })
    .await;

    // A syntax error on line 3.
    write_raw(
        &t.pool,
        "{\n  \"bbb\": [\n    {\"name\": \"bbb-c\",, }\n  ]\n}\n",
    );
    let v = t.until("the refusal", |v| v["error"].is_string()).await;
    let err = v["error"].as_str().unwrap();
    assert!(
        err.contains(&t.pool.display().to_string()) && err.contains("line 3, column"),
        "{err}"
    );
    assert!(entry(&v, "bbb-b").is_some(), "the pool changed: {v}");
    assert_eq!(v["updated"], "2026-12-01T10:00:00Z");
    let log = t.portal.log();
    assert!(
        log.contains("pool file refused") && log.contains("line 3, column"),
        "{log}"
    );
    // bbb-b is still polled and used.
    let before = t.b.calls("getMeetings");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(t.b.calls("getMeetings") > before);
    let carol = login(&t.c, &t.portal.url, CAROL.0, CAROL.1).await;
    assert_eq!(
        server_of(&t.join(&carol, "hallway").await, &servers),
        "bbb-b"
    );

    // Well-formed, but naming a secret file that cannot be read: nothing of
    // it is applied (bbb-b does not leave, bbb-c does not come).
    let missing = t.dir.path().join("bbb-secret-c");
    write_pool(
        &t.pool,
        &[("bbb-b", &t.b, true), ("bbb-c", &t.a, false)],
        None,
    );
    let v = t
        .until("the second refusal", |v| {
            v["error"].as_str().is_some_and(|e| e.contains("bbb-c"))
        })
        .await;
    let err = v["error"].as_str().unwrap();
    assert!(
        err.contains("bbb[1] (bbb-c)") && err.contains(&missing.display().to_string()),
        "{err}"
    );
    assert!(entry(&v, "bbb-c").is_none(), "{v}");
    assert_eq!(
        entry(&v, "bbb-b").unwrap()["draining"],
        false,
        "half applied: {v}"
    );
    assert!(t.portal.log().contains("bbb[1] (bbb-c)"));

    // A good file again clears the error.
    write_pool(
        &t.pool,
        &[("bbb-b", &t.b, false)],
        Some("2026-12-01T11:00:00Z"),
    );
    let v = t
        .until("the good file", |v| v["updated"] == "2026-12-01T11:00:00Z")
        .await;
    assert!(v["error"].is_null(), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_leaves_the_pool_is_not_polled_and_its_rooms_move() {
    let t = setup("pool-remove", true, Some(&[])).await;
    let servers = [("bbb-a", &t.a), ("bbb-b", &t.b)];
    // The file is there before the start: an empty pool, no error.
    let v = t.api().await;
    assert!(v["error"].is_null() && v["applied_at"].is_string(), "{v}");
    write_pool(&t.pool, &[("bbb-b", &t.b, false)], None);
    t.until("bbb-b up", |v| {
        entry(v, "bbb-b").is_some_and(|s| s["up"] == true)
    })
    .await;
    let ada = login(&t.c, &t.portal.url, ADA.0, ADA.1).await;
    let carol = login(&t.c, &t.portal.url, CAROL.0, CAROL.1).await;
    assert_eq!(
        server_of(&t.join(&carol, "hallway").await, &servers),
        "bbb-b"
    );

    write_pool(&t.pool, &[], None);
    t.until("bbb-b gone", |v| entry(v, "bbb-b").is_none()).await;
    let before = t.b.calls("getMeetings");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(t.b.calls("getMeetings"), before, "bbb-b is still polled");
    assert!(t.portal.log().contains("BBB server leaves the pool"));
    // Its room is placed anew, on the static server.
    assert_eq!(server_of(&t.join(&ada, "hallway").await, &servers), "bbb-a");
    assert!(t.a.meeting("live-hallway").is_some());
    let html = t.status(&carol).await;
    assert!(!html.contains("bbb-b"), "{html}");
}
