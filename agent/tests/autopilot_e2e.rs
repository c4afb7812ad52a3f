//! `venue autopilot` on the rehearsal, over two event days with overnight =
//! "release" (the night between them is the gap in the schedule), played
//! at 600 times real time: fake-hcloud and the agent share an accelerated
//! clock, the servers are real test hosts (network namespaces with sshd
//! and their own /nix). The autopilot is killed at five random moments of
//! the run (renting, installing, deploying, archiving, asleep: the seed is
//! printed, VENUE_TEST_KILL_SEED replays it), aborts once right after it
//! asked to delete a server, and is started again each time. From
//! the fake's own bill and the journal: every server existed only inside
//! its plan window (rent at its start, gone within the hour after its end),
//! no two servers of one name ever existed at once, every server that ran
//! a venue system was deleted only after its archive was verified, the
//! bill is within one started hour per server of `venue plan`'s total, and
//! nothing is left at the end. Needs root, Nix, sshd, iproute2, pebble.

mod common;

use std::collections::BTreeMap;
use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use conference::clock::Clock;
use serde_json::Value;
use venue_testbed::netns::NetnsHosts;
use venue_testbed::{Bill, FakeCloud, FakeConfig};

use common::dice::Dice;
use common::{t, Names};

/// Venue seconds per real second.
const SPEED: f64 = 600.0;

/// hosts/testbed/event.toml over two days, releasing the media servers
/// overnight. The warm-up is what the rented servers get to be installed
/// and deployed (seconds of real work are an hour of venue time here).
fn two_day_event() -> std::path::PathBuf {
    let file = common::example_event("testbed");
    let text = std::fs::read_to_string(&file).unwrap();
    let text = text
        .replace(
            "image = \"ubuntu-24.04\"",
            "image = \"ubuntu-24.04\"\novernight = \"release\"\nwarmup_minutes = 360\ngrace_minutes = 60\nportal_early_hours = 1",
        )
        .replace(
            "[[day]]\ndate = \"2026-12-01\"\nopen = \"10:00\"\nclose = \"12:00\"",
            "[[day]]\ndate = \"2026-12-01\"\nopen = \"10:00\"\nclose = \"12:00\"\n\n[[day]]\ndate = \"2026-12-02\"\nopen = \"10:00\"\nclose = \"12:00\"",
        );
    assert!(
        text.contains("2026-12-02") && text.contains("overnight"),
        "{text}"
    );
    std::fs::write(&file, text).unwrap();
    file
}

/// A window: from, to.
type Span = (DateTime<Utc>, DateTime<Utc>);

/// A server's lifetime on the bill.
#[derive(Debug)]
struct Life {
    name: String,
    id: u64,
    created: DateTime<Utc>,
    deleted: Option<DateTime<Utc>>,
    hours: u64,
    hourly: f64,
    cost: f64,
}

fn servers_on_bill(bill: &Bill) -> Vec<Life> {
    bill.resources
        .iter()
        .filter(|r| {
            r.kind == "server"
                && r.labels.get("venue/event").and_then(Value::as_str) == Some("testbed")
        })
        .map(|r| Life {
            name: r.name.clone(),
            id: r.id,
            created: t(&r.created),
            deleted: r.deleted.as_deref().map(t),
            hours: r.started_hours,
            hourly: r.price_hourly.parse().unwrap(),
            cost: r.cost.parse().unwrap(),
        })
        .collect()
}

/// How many times the autopilot is killed.
const KILLS: usize = 5;

/// The kill moments, in venue time, and the seed they were drawn from.
struct Kills {
    seed: u64,
    at: Vec<DateTime<Utc>>,
}

/// KILLS moments over the whole run, seeded from the time (or from
/// VENUE_TEST_KILL_SEED, to replay a failure): each is either within the
/// warm-up after a window opens (renting, installing, deploying: the
/// warm-up is what the plan gives them), just after a window ends
/// (archiving, deleting), or anywhere between the start and the end.
fn kill_moments(windows: &BTreeMap<String, Vec<Span>>, start: DateTime<Utc>) -> Kills {
    let seed = match std::env::var("VENUE_TEST_KILL_SEED") {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("VENUE_TEST_KILL_SEED={v}: not a number")),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    };
    eprintln!("autopilot e2e: kill seed {seed} (replay with VENUE_TEST_KILL_SEED={seed})");
    let spans: Vec<Span> = windows.values().flatten().copied().collect();
    let last = spans.iter().map(|w| w.1).max().unwrap();
    let mut rng = Dice::new(seed);
    let mut at: Vec<DateTime<Utc>> = (0..KILLS)
        .map(|_| {
            let w = spans[(rng.next() % spans.len() as u64) as usize];
            match rng.next() % 3 {
                0 => w.0 + rng.seconds(6 * 3600),
                // Before the run is done: its last release takes longer
                // than five venue minutes (half a real second).
                1 => w.1 + rng.seconds(if w.1 == last { 300 } else { 3600 }),
                _ => start + rng.seconds((last - start).num_seconds()),
            }
            .max(start)
        })
        .collect();
    at.sort();
    eprintln!("autopilot e2e: kills at {at:?}");
    Kills { seed, at }
}

#[test]
fn two_days_at_600x_with_kills_rent_and_release_by_the_plan() {
    let dir = common::scratch("autopilot-e2e");
    let hosts = Arc::new(
        NetnsHosts::new(&dir.join("hosts"))
            .expect("test hosts need root: run as root after scripts/install-deps"),
    );
    // Ten venue minutes before the portal's window opens (10:00 in Berlin
    // less the warm-up and the portal's early hour: 02:00 UTC).
    let clock = Clock::accelerated(t("2026-12-01T01:50:00Z"), SPEED);
    let (url, fake) = FakeCloud::start(FakeConfig {
        action_duration: Duration::from_millis(50),
        hook: hosts.clone(),
        clock,
        ..FakeConfig::default()
    });
    let names = Names::start(&fake, &dir);
    let mut env = names.env();
    env.push(("VENUE_CLOCK", clock.to_string()));
    let event = two_day_event();
    let e = event.to_str().unwrap();
    let state = dir.join("state");
    let s = state.to_str().unwrap();

    // The plan at the fake's (live) prices: windows and total.
    let plan: Value = serde_json::from_str(&common::ok(
        &common::testbed_venue(&url, &env, &["plan", e, "--json"])
            .output()
            .unwrap(),
    ))
    .unwrap();
    let mut windows: BTreeMap<String, Vec<Span>> = BTreeMap::new();
    for g in plan["servers"].as_array().unwrap() {
        let w: Vec<_> = g["windows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| {
                (
                    t(w["start"].as_str().unwrap()),
                    t(w["end"].as_str().unwrap()),
                )
            })
            .collect();
        assert_eq!(g["count"], 1, "{g}");
        windows.insert(format!("testbed-{}-1", g["role"].as_str().unwrap()), w);
    }
    assert_eq!(
        windows["testbed-bbb-1"].len(),
        2,
        "released overnight: {plan}"
    );
    assert_eq!(windows["testbed-portal-1"].len(), 1, "{plan}");

    let log = dir.join("autopilot.log");
    let start = |crash: bool| -> Child {
        let mut c = common::testbed_venue(
            &url,
            &env,
            &["autopilot", e, "--state", s, "--interval", "1800"],
        );
        if crash {
            c.env("VENUE_TEST_CRASH_AFTER", "1:deleting server");
        }
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        c.stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap()
    };
    let kills = kill_moments(&windows, clock.now());
    let said = || -> Vec<String> {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("2026-"))
            .map(str::to_owned)
            .collect()
    };
    // Every run, until one has, aborts right after its first delete
    // request (mid-release); each is started again at once.
    let mut child = start(true);
    let began = Instant::now();
    let mut next_kill = 0;
    let mut runs = 1;
    let mut aborted = false;
    let mut status_seen = false;
    let limit = Duration::from_secs(600);
    let finished = loop {
        if let Some(code) = child.try_wait().unwrap() {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if code.success() {
                break true;
            }
            // The planned abort: start again without it.
            assert!(
                !aborted && text.contains("VENUE_TEST_CRASH_AFTER"),
                "the autopilot failed: {code} (kill seed {})\n{text}",
                kills.seed
            );
            aborted = true;
            child = start(false);
            runs += 1;
            continue;
        }
        if let Some(at) = kills.at.get(next_kill) {
            if clock.now() >= *at {
                child.kill().unwrap();
                child.wait().unwrap();
                let doing = said().last().cloned().unwrap_or_default();
                eprintln!(
                    "kill {} at {} (drawn {at}); the autopilot's last line: {doing}",
                    next_kill + 1,
                    clock.now()
                );
                next_kill += 1;
                child = start(!aborted);
                runs += 1;
            }
        }
        if !status_seen && said().iter().any(|l| l.contains("venue ready")) {
            // `venue status` tells what comes next and what was done.
            let st = common::testbed_venue(&url, &env, &["status", e, "--json", "--state", s])
                .output()
                .unwrap();
            let st: Value = serde_json::from_str(&common::ok(&st)).unwrap();
            let ap = &st["autopilot"];
            assert!(!ap["next"].as_array().unwrap().is_empty(), "{ap}");
            assert!(
                ap["done"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|d| d.as_str().unwrap().contains("rented")),
                "{ap}"
            );
            status_seen = true;
        }
        if began.elapsed() > limit {
            child.kill().ok();
            panic!(
                "the autopilot did not finish in {limit:?} (kill seed {}):\n{}",
                kills.seed,
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(finished);
    let text = std::fs::read_to_string(&log).unwrap();
    let seed = kills.seed;
    assert_eq!(
        next_kill,
        kills.at.len(),
        "every kill happened (seed {seed})\n{text}"
    );
    assert!(aborted, "the run that aborts mid-release did\n{text}");
    assert_eq!(
        runs,
        1 + kills.at.len() + 1,
        "killed and started again: {runs} runs\n{text}"
    );
    assert!(status_seen);

    // Nothing is left: no server, address, firewall, key, record, host.
    assert_eq!(common::held_count(&fake, "testbed"), 0, "{text}");
    assert!(hosts.names().is_empty());
    assert!(names.dig("testbed.example.org", "A").is_empty());

    let lives = servers_on_bill(&fake.bill());
    let hour = chrono::Duration::hours(1);
    // Each server inside a window of its name: rented at or after its start
    // (the lead fits the warm-up), gone within the hour after its end.
    for l in &lives {
        let deleted = l.deleted.unwrap_or_else(|| panic!("{l:?} never deleted"));
        let w = windows[&l.name]
            .iter()
            .find(|(start, end)| l.created >= *start && l.created < *end)
            .unwrap_or_else(|| {
                panic!(
                    "{l:?} was rented outside its windows {:?}",
                    windows[&l.name]
                )
            });
        assert!(deleted <= w.1 + hour, "{l:?} outlived its window {w:?}");
    }
    // No two servers of one name at once.
    for a in &lives {
        for b in &lives {
            if a.id < b.id && a.name == b.name {
                let overlap = a.created < b.deleted.unwrap() && b.created < a.deleted.unwrap();
                assert!(!overlap, "duplicate {} : {a:?} {b:?}", a.name);
            }
        }
    }
    // Media servers twice (one per day), the portal and TURN once.
    let count = |n: &str| lives.iter().filter(|l| l.name == n).count();
    assert_eq!(count("testbed-bbb-1"), 2, "{lives:?}");
    assert_eq!(count("testbed-jitsi-1"), 2, "{lives:?}");
    assert_eq!(count("testbed-portal-1"), 1, "{lives:?}");
    assert_eq!(count("testbed-coturn-1"), 1, "{lives:?}");

    // The bill against the plan: within one started hour per server.
    let billed: f64 = lives.iter().map(|l| l.cost).sum();
    let slack: f64 = lives.iter().map(|l| l.hourly).sum();
    let planned = plan["total_eur"].as_f64().unwrap();
    assert!(
        (billed - planned).abs() <= slack + 1e-6,
        "billed {billed} EUR, planned {planned} EUR, slack {slack}: {lives:?}"
    );
    let planned_hours: u64 = plan["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["hours"].as_u64().unwrap())
        .sum();
    let billed_hours: u64 = lives.iter().map(|l| l.hours).sum();
    assert!(
        billed_hours <= planned_hours + lives.len() as u64,
        "{billed_hours} h billed, {planned_hours} h planned"
    );

    // Every server that got a venue system was deleted only after its
    // archive was verified since it was created.
    // A kill can tear the killed writer's own last line (readers skip it),
    // at most one per kill; never a whole record.
    let text = std::fs::read_to_string(state.join("journal.jsonl")).unwrap();
    let journal: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let torn = text.lines().count() - journal.len();
    assert!(
        torn <= kills.at.len(),
        "{torn} journal lines do not parse, more than the {} kills",
        kills.at.len()
    );
    let what = |v: &Value| v["what"].as_str().unwrap_or("").to_owned();
    // The journal is in real time, the bill in venue time: the clock's
    // written form `START*SPEED@ORIGIN` maps one to the other.
    let written = clock.to_string();
    let (start_text, rest) = written.split_once('*').unwrap();
    let origin = t(rest.split_once('@').unwrap().1);
    let real = |venue: DateTime<Utc>| {
        origin
            + chrono::Duration::microseconds(
                ((venue - t(start_text)).num_microseconds().unwrap() as f64 / SPEED) as i64,
            )
    };
    let at = |v: &Value| t(v["time"].as_str().unwrap());
    for l in &lives {
        let (from, to) = (real(l.created), real(l.deleted.unwrap()));
        let during: Vec<&Value> = journal
            .iter()
            .filter(|v| at(v) >= from && at(v) <= to)
            .collect();
        let got_system = during
            .iter()
            .any(|v| what(v).starts_with(&format!("{}: a venue system goes to", l.name)));
        // Verified after its system went there, before it was deleted.
        let system_at = during
            .iter()
            .position(|v| what(v).starts_with(&format!("{}: a venue system goes to", l.name)));
        let verified = system_at.is_some_and(|i| {
            during[i..]
                .iter()
                .any(|v| what(v).starts_with(&format!("{}: verified", l.name)))
        });
        assert!(
            !got_system || verified,
            "{} (id {}) deleted without a verified archive",
            l.name,
            l.id
        );
        if l.name == "testbed-bbb-1" || l.name == "testbed-portal-1" {
            assert!(got_system && verified, "{l:?} held data: archived first");
        }
    }
    // What the archive holds: the recordings and the portal's database.
    let manifest = std::fs::read_to_string(state.join("archive/manifest.json")).unwrap();
    assert!(manifest.contains("webcams.webm"), "{manifest}");
    assert!(state
        .join("archive/testbed-portal-1/portal.sqlite")
        .is_file());
    // The lead time was measured in venue time, for the next runs.
    assert!(
        journal
            .iter()
            .any(|v| what(v).starts_with("ready testbed-bbb-1: ")),
        "no lead time measured"
    );
    eprintln!(
        "autopilot e2e: {runs} runs, {:.0} s real, billed {billed:.4} EUR vs planned {planned:.4} EUR ({billed_hours} h vs {planned_hours} h)",
        began.elapsed().as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
