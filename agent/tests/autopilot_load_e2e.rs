//! `venue autopilot` acting on measured load, on the rehearsal: the
//! testbed event with one BigBlueButton server in the plan and `[autopilot]
//! bbb = { min = 1, max = 2 }`, at 60 times real time (fake-hcloud and the
//! agent share the clock; the servers are real test hosts running the real
//! portal and fake-bbb). More people on the planned server than it holds
//! (through BBB's own API: a meeting and joins) → a second server is rented,
//! deployed and in the portal's pool at the first check after; a meeting
//! started through the portal's Join goes there; the people on the first
//! server leave → the extra server drains, stays while its meeting runs,
//! and once the meeting ends is archived, verified and released. Asserted
//! from the fake's bill, the portal's pool API and the journal. Needs root,
//! Nix, sshd, iproute2, pebble, curl.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use conference::clock::Clock;
use conference::protocol::bbb::{self, Checksum};
use serde_json::Value;
use venue_testbed::netns::NetnsHosts;
use venue_testbed::{FakeCloud, FakeConfig};

use common::{t, Names};

/// Venue seconds per real second.
const SPEED: f64 = 60.0;
/// Between the autopilot's checks, venue seconds.
const INTERVAL: i64 = 300;
/// People put on the planned server: 130 listeners are 260 units, with
/// 20% headroom 312, above one server's 300.
const CROWD: usize = 130;

/// hosts/testbed/event.toml with a long day (09:00 to 19:00 UTC), a
/// one-hour warm-up, and the autopilot allowed a second BBB server.
fn load_event() -> std::path::PathBuf {
    let file = common::example_event("testbed");
    let text = std::fs::read_to_string(&file).unwrap();
    let text = text
        .replace(
            "image = \"ubuntu-24.04\"",
            "image = \"ubuntu-24.04\"\nwarmup_minutes = 60\ngrace_minutes = 30",
        )
        .replace(
            "open = \"10:00\"\nclose = \"12:00\"",
            "open = \"10:00\"\nclose = \"20:00\"",
        );
    let text = format!("{text}\n[autopilot]\nlead_minutes = 30\nbbb = {{ min = 1, max = 2 }}\n");
    assert!(text.contains("close = \"20:00\""), "{text}");
    std::fs::write(&file, text).unwrap();
    file
}

/// The autopilot's own lines (venue time first).
fn said(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("2026-"))
        .map(str::to_owned)
        .collect()
}

/// The venue time of the first line containing `what`.
fn when_said(log: &Path, what: &str) -> Option<DateTime<Utc>> {
    said(log)
        .iter()
        .find(|l| l.contains(what))
        .and_then(|l| l.split_whitespace().next().map(t))
}

struct Venue {
    state: std::path::PathBuf,
    issuer_root: String,
}

impl Venue {
    fn secret(&self, name: &str) -> String {
        let v: Value = serde_json::from_str(
            &std::fs::read_to_string(self.state.join("secrets.json")).unwrap(),
        )
        .unwrap();
        v[name].as_str().unwrap().to_owned()
    }

    fn address(&self, name: &str) -> String {
        let v: Value =
            serde_json::from_str(&std::fs::read_to_string(self.state.join("fleet.json")).unwrap())
                .unwrap();
        v["servers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .and_then(|s| s["ipv4"].as_str())
            .unwrap_or_else(|| panic!("{name} not in fleet.json: {v}"))
            .to_owned()
    }

    /// curl to the portal at its name, trusting Pebble's root.
    fn portal_curl(&self) -> std::process::Command {
        let mut c = std::process::Command::new("curl");
        c.args(["-sS", "--max-time", "10", "--cacert", &self.issuer_root])
            .arg("--resolve")
            .arg(format!(
                "testbed.example.org:443:{}",
                self.address("testbed-portal-1")
            ));
        c
    }

    /// The portal's GET /pool/api/servers, or None when it does not answer.
    fn pool(&self) -> Option<Value> {
        let out = self
            .portal_curl()
            .arg("-H")
            .arg(format!(
                "Authorization: Bearer {}",
                self.secret("capture-secret")
            ))
            .arg("https://testbed.example.org/pool/api/servers")
            .output()
            .unwrap();
        let v = serde_json::from_slice(&out.stdout).ok();
        if v.is_none() {
            eprintln!(
                "pool API: exit {:?}: {} {}",
                out.status.code(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        v
    }

    fn in_pool(&self, name: &str) -> Option<Value> {
        self.pool()?["servers"]
            .as_array()?
            .iter()
            .find(|s| s["name"] == name)
            .cloned()
    }

    /// One BBB API call on `server` (port 80, as the portal calls it).
    fn bbb(&self, server: &str, call: &str, params: &[(&str, &str)]) -> String {
        let base = format!("http://{}/bigbluebutton/api", self.address(server));
        let url = bbb::url(
            &base,
            call,
            params,
            &self.secret("bbb-secret"),
            Checksum::Sha256,
        );
        let out = std::process::Command::new("curl")
            .args(["-s", "--max-time", "10", &url])
            .output()
            .unwrap();
        let body = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            body.contains("SUCCESS") || call == "join",
            "{call} on {server}: {body}"
        );
        body
    }

    /// Logs in with the seeded staff ticket, presses Join for `slug`, and follows
    /// the Join URL to BBB (which counts the attendee). Returns that URL's
    /// host.
    fn join_through_portal(&self, slug: &str, dir: &Path) -> String {
        let jar = dir.join("cookies.txt");
        let jar = jar.to_str().unwrap();
        let csrf = |page: &str| -> String {
            let at = page.find("name=\"csrf\"").expect("a CSRF field");
            let rest = &page[at..];
            let v = rest.find("value=\"").unwrap() + 7;
            rest[v..v + rest[v..].find('"').unwrap()].to_owned()
        };
        let get = |path: &str| -> String {
            let out = self
                .portal_curl()
                .args(["-c", jar, "-b", jar])
                .arg(format!("https://testbed.example.org{path}"))
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let post = |path: &str, form: &[(&str, &str)]| -> String {
            let mut c = self.portal_curl();
            c.args([
                "-c",
                jar,
                "-b",
                jar,
                "-o",
                "/dev/null",
                "-w",
                "%{redirect_url}",
            ]);
            for (k, v) in form {
                c.arg("--data-urlencode").arg(format!("{k}={v}"));
            }
            let out = c
                .arg(format!("https://testbed.example.org{path}"))
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let login = get("/login");
        let to = post(
            "/login",
            &[
                // Staff: the portal's clock is the machine's (days after
                // the rehearsal's), when attendees' rooms are closed.
                ("email", "noc@example.org"),
                ("code", "noc1-2345-6789"),
                ("csrf", &csrf(&login)),
                ("next", "/"),
            ],
        );
        assert!(!to.is_empty(), "the login did not redirect");
        let welcome = get("/");
        let join = post(&format!("/rooms/{slug}/join"), &[("csrf", &csrf(&welcome))]);
        assert!(
            join.starts_with("http://"),
            "Join gave no BBB URL: {join:?}"
        );
        let out = std::process::Command::new("curl")
            .args([
                "-s",
                "--max-time",
                "10",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                &join,
            ])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "302",
            "BBB's join: {join}"
        );
        join.trim_start_matches("http://")
            .split(['/', ':'])
            .next()
            .unwrap()
            .to_owned()
    }
}

/// A server's lifetimes on the fake's bill: (created, deleted).
fn lives(
    fake: &venue_testbed::FakeHandle,
    name: &str,
) -> Vec<(DateTime<Utc>, Option<DateTime<Utc>>)> {
    fake.bill()
        .resources
        .iter()
        .filter(|r| r.kind == "server" && r.name == name)
        .map(|r| (t(&r.created), r.deleted.as_deref().map(t)))
        .collect()
}

fn wait_for<T>(what: &str, secs: u64, log: &Path, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {secs} s\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn an_extra_bbb_server_comes_under_load_and_goes_once_drained() {
    let dir = common::scratch("autopilot-load-e2e");
    let hosts = Arc::new(
        NetnsHosts::new(&dir.join("hosts"))
            .expect("test hosts need root: run as root after scripts/install-deps"),
    );
    // Just after every server's window opened (doors at 09:00 UTC, the
    // warm-up an hour before).
    let clock = Clock::accelerated(t("2026-12-01T08:01:00Z"), SPEED);
    let (url, fake) = FakeCloud::start(FakeConfig {
        action_duration: Duration::from_millis(50),
        hook: hosts.clone(),
        clock,
        ..FakeConfig::default()
    });
    let names = Names::start(&fake, &dir);
    let mut env = names.env();
    env.push(("VENUE_CLOCK", clock.to_string()));
    // The root that signs what Pebble issues: the hosts' certificates, which
    // the autopilot reads the portal's pool API and BBB through.
    let issuer_root = names.pebble.issuer_root.display().to_string();
    env.push(("VENUE_CHECK_ROOT", issuer_root.clone()));
    let event = load_event();
    let e = event.to_str().unwrap();
    let state = dir.join("state");
    let s = state.to_str().unwrap();
    let venue = Venue {
        state: state.clone(),
        issuer_root,
    };

    let plan: Value = serde_json::from_str(&common::ok(
        &common::testbed_venue(&url, &env, &["plan", e, "--json"])
            .output()
            .unwrap(),
    ))
    .unwrap();
    let bbb_planned: u64 = plan["servers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["role"] == "bbb")
        .map(|g| g["count"].as_u64().unwrap())
        .sum();
    assert_eq!(bbb_planned, 1, "{plan}");

    let log = dir.join("autopilot.log");
    let out = std::fs::File::create(&log).unwrap();
    let interval = INTERVAL.to_string();
    let mut child: Child = common::testbed_venue(
        &url,
        &env,
        &["autopilot", e, "--state", s, "--interval", &interval],
    )
    .stdout(out.try_clone().unwrap())
    .stderr(out)
    .spawn()
    .unwrap();
    let began = Instant::now();

    // The venue is up and the portal has its pool (one server).
    wait_for("the venue ready and its pool published", 240, &log, || {
        when_said(&log, "pool: 1 BigBlueButton servers to the portal")
    });
    wait_for("the portal polled testbed-bbb-1", 60, &log, || {
        venue.in_pool("testbed-bbb-1").filter(|s| s["up"] == true)
    });

    // More people on the planned server than it holds: a meeting of no
    // room (a workshop the schedule does not know), 130 joined.
    venue.bbb(
        "testbed-bbb-1",
        "create",
        &[
            ("meetingID", "overflow"),
            ("name", "Overflow"),
            ("attendeePW", "ap"),
            ("moderatorPW", "mp"),
        ],
    );
    for i in 0..CROWD {
        let name = format!("listener {i}");
        let body = venue.bbb(
            "testbed-bbb-1",
            "join",
            &[
                ("meetingID", "overflow"),
                ("fullName", &name),
                ("role", "VIEWER"),
                ("redirect", "false"),
            ],
        );
        assert!(body.contains("session_token"), "{body}");
    }
    let raised_venue = clock.now();
    let raised = Instant::now();

    // A second server, rented, deployed and in the pool: up, taking meetings.
    wait_for("testbed-bbb-2 up in the portal's pool", 300, &log, || {
        venue
            .in_pool("testbed-bbb-2")
            .filter(|s| s["up"] == true && s["draining"] == false)
    });
    // The portal's own configuration names every server of the fleet (as
    // modules/portal.nix does), so the redeploy put it there; the pool
    // file, with its draining flag, follows from the same tick.
    wait_for("the pool file with two servers", 60, &log, || {
        when_said(&log, "pool: 2 BigBlueButton servers to the portal")
    });
    // ... and the portal took that file and polled the new server since.
    wait_for(
        "the portal on the new pool file, testbed-bbb-2 polled",
        60,
        &log,
        || {
            let pool = venue.pool()?;
            let applied = pool["applied_at"].as_str().map(t)?;
            let s = pool["servers"]
                .as_array()?
                .iter()
                .find(|s| s["name"] == "testbed-bbb-2")?
                .clone();
            let answered = s["last_answer"].as_str().map(t)?;
            (s["up"] == true && answered > applied).then_some(())
        },
    );
    let in_pool_venue = clock.now();
    let in_pool_real = raised.elapsed();
    let added = when_said(&log, "load: adding testbed-bbb-2").expect("the add was said");
    let lines = said(&log);
    // Decided at the first check after the load rose (a check is at most
    // an interval away, plus the portal's 5 s poll), and published by the
    // tick that rented it: no check between the rent and the pool.
    assert!(
        added - raised_venue <= chrono::Duration::seconds(INTERVAL + 5 * SPEED as i64 + 60),
        "added at {added}, the load rose at {raised_venue}"
    );
    let add_at = lines
        .iter()
        .position(|l| l.contains("load: adding testbed-bbb-2"))
        .unwrap();
    let published_at = lines
        .iter()
        .skip(add_at)
        .position(|l| l.contains("pool: 2 BigBlueButton servers to the portal"))
        .expect("the pool was published with two servers")
        + add_at;
    assert!(
        !lines[add_at + 1..published_at]
            .iter()
            .any(|l| l.contains("load: meetings read") || l.contains("load: adding")),
        "{lines:#?}"
    );
    assert_eq!(
        lives(&fake, "testbed-bbb-2").len(),
        1,
        "one extra server rented"
    );
    let extras: Value =
        serde_json::from_str(&std::fs::read_to_string(state.join("autopilot.json")).unwrap())
            .unwrap();
    assert_eq!(extras["extra"], serde_json::json!(["testbed-bbb-2"]));

    // A meeting started through the portal goes to the new server, the one
    // that is not full.
    let bbb2 = venue.address("testbed-bbb-2");
    let host = venue.join_through_portal("main-stage", &dir);
    assert_eq!(
        host,
        bbb2,
        "Join placed the meeting on testbed-bbb-2: {:?}",
        venue.pool()
    );

    // The people on the first server leave: the extra drains (the plan's
    // server stays for its window anyway), and is kept while its meeting runs.
    venue.bbb(
        "testbed-bbb-1",
        "end",
        &[("meetingID", "overflow"), ("password", "mp")],
    );
    wait_for("testbed-bbb-2 drained by the autopilot", 120, &log, || {
        when_said(&log, "load: draining testbed-bbb-2")
    });
    wait_for("the portal sees testbed-bbb-2 draining", 60, &log, || {
        venue
            .in_pool("testbed-bbb-2")
            .filter(|s| s["draining"] == true)
    });
    let held_from = clock.now();
    while clock.now() < held_from + chrono::Duration::seconds(5 * INTERVAL) {
        let l = lives(&fake, "testbed-bbb-2");
        assert!(l[0].1.is_none(), "released under a live meeting: {l:?}");
        assert!(
            !said(&log)
                .iter()
                .any(|l| l.contains("releasing testbed-bbb-2")),
            "{}",
            std::fs::read_to_string(&log).unwrap()
        );
        let p = venue.in_pool("testbed-bbb-2").expect("still in the pool");
        assert_eq!(p["drained"], false, "{p}");
        assert_eq!(p["meetings"], 1, "{p}");
        std::thread::sleep(Duration::from_millis(500));
    }
    // The portal's meeting's peak was recorded for the plan.
    let measured: Value =
        serde_json::from_str(&std::fs::read_to_string(state.join("measured.json")).unwrap())
            .unwrap();
    assert!(
        measured["rooms"]["main-stage"]["peak"].as_u64() >= Some(1),
        "{measured}"
    );

    // The meeting ends: archived, verified, released, and out of the pool.
    let ended_venue = clock.now();
    let meeting = "testbed-main-stage";
    let info = venue.bbb("testbed-bbb-2", "getMeetingInfo", &[("meetingID", meeting)]);
    let mp = info
        .split("<moderatorPW>")
        .nth(1)
        .and_then(|s| s.split("</moderatorPW>").next())
        .unwrap()
        .to_owned();
    venue.bbb(
        "testbed-bbb-2",
        "end",
        &[("meetingID", meeting), ("password", &mp)],
    );
    let deleted = wait_for("testbed-bbb-2 released", 240, &log, || {
        lives(&fake, "testbed-bbb-2")[0].1
    });
    wait_for("the pool without testbed-bbb-2", 60, &log, || {
        venue.in_pool("testbed-bbb-2").is_none().then_some(())
    });
    assert!(deleted > ended_venue);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("released testbed-bbb-2 (archive verified)"),
        "{text}"
    );
    let journal = std::fs::read_to_string(state.join("journal.jsonl")).unwrap();
    let what: Vec<String> = journal
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| v["what"].as_str().unwrap_or("").to_owned())
        .collect();
    let verified = what
        .iter()
        .position(|w| w.starts_with("testbed-bbb-2: verified"))
        .expect("testbed-bbb-2's archive verified");
    let system = what
        .iter()
        .position(|w| w.starts_with("testbed-bbb-2: a venue system goes to"))
        .expect("testbed-bbb-2 got a venue system");
    assert!(system < verified, "verified after its system went there");
    // The planned server stayed throughout.
    assert!(lives(&fake, "testbed-bbb-1").iter().all(|l| l.1.is_none()));
    let held_real = raised.elapsed();

    child.kill().ok();
    child.wait().ok();
    let down = common::testbed_venue(&url, &env, &["down", e, "--state", s, "--yes", "--json"])
        .output()
        .unwrap();
    common::ok(&down);
    assert_eq!(common::held_count(&fake, "testbed"), 0);

    let mut billed: BTreeMap<String, f64> = BTreeMap::new();
    for r in fake.bill().resources {
        if r.kind == "server" {
            *billed.entry(r.name).or_default() += r.cost.parse::<f64>().unwrap();
        }
    }
    eprintln!(
        "autopilot load e2e: testbed-bbb-2 in the pool {:.0} venue min ({:.1} s real) after the load rose \
         (decided {:.0} venue min after); released {:.0} venue min after its meeting ended; \
         {:.0} s real in all (load phase {:.0} s); billed {:.4} EUR ({billed:?}) vs planned {} EUR for the whole day",
        (in_pool_venue - raised_venue).num_seconds() as f64 / 60.0,
        in_pool_real.as_secs_f64(),
        (added - raised_venue).num_seconds() as f64 / 60.0,
        (deleted - ended_venue).num_seconds() as f64 / 60.0,
        began.elapsed().as_secs_f64(),
        held_real.as_secs_f64(),
        billed.values().sum::<f64>(),
        plan["total_eur"]
    );
    let _ = std::fs::remove_dir_all(&dir);
}
