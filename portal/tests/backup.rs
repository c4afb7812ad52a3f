//! `venue-portal backup FILE` while the portal serves under load (wrk) and
//! other processes add tickets: every copy opens, passes SQLite's integrity
//! check and holds a consistent count of tickets (never fewer than a copy
//! taken before it). `venue down` relies on this copy before it deletes a
//! portal server. Needs wrk (scripts/install-deps).

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::{import_tickets, lpc_event, Portal, TempDir, TICKETS};

fn count_tickets(db: &Path) -> i64 {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap();
    let check: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok", "{}", db.display());
    c.query_row("SELECT count(*) FROM tickets", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn backup_while_serving_under_load_is_consistent() {
    let dir = TempDir::new("backup");
    let state = dir.path().join("state");
    import_tickets(&state, TICKETS);
    let portal = Portal::start(&lpc_event(), &state, None);

    // Load on the pages while the backups run.
    let wrk = Command::new("wrk")
        .args(["-t2", "-c16", "-d4s"])
        .arg(format!("{}/timetable", portal.url))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wrk (scripts/install-deps installs it)");
    // And writers: other processes adding tickets, each its own connection.
    let stop = AtomicBool::new(false);
    let added = AtomicUsize::new(0);
    let copies = std::thread::scope(|s| {
        s.spawn(|| {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                let out = Command::new(common::bin())
                    .args([
                        "tickets",
                        "add",
                        &format!("writer{i}@example.org"),
                        "--state",
                    ])
                    .arg(&state)
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "tickets add: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                added.fetch_add(1, Ordering::SeqCst);
            }
        });
        let mut copies = Vec::new();
        for i in 0..4 {
            std::thread::sleep(Duration::from_millis(600));
            let copy = dir.path().join(format!("copy-{i}.sqlite"));
            let out = Command::new(common::bin())
                .arg("backup")
                .arg(&copy)
                .arg("--state")
                .arg(&state)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "backup: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            copies.push(copy);
        }
        stop.store(true, Ordering::SeqCst);
        copies
    });
    let wrk = wrk.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&wrk.stdout).into_owned();
    assert!(wrk.status.success(), "{report}");
    assert!(
        !report.contains("Non-2xx"),
        "the portal failed under load: {report}"
    );
    let requests: u64 = report
        .lines()
        .find_map(|l| l.trim().split_once(" requests in "))
        .and_then(|(n, _)| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(requests > 0, "{report}");

    // Every copy is intact; each holds at least what the one before held.
    let counts: Vec<i64> = copies.iter().map(|c| count_tickets(c)).collect();
    let imported = TICKETS.lines().count() as i64 - 1;
    assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
    assert!(counts[0] >= imported, "{counts:?}");
    let total = imported + added.load(Ordering::SeqCst) as i64;
    assert!(*counts.last().unwrap() <= total, "{counts:?} of {total}");
    assert!(
        counts.last().unwrap() > &imported,
        "the writers added nothing before the last copy: {counts:?}"
    );
    // A copy after the writers stopped holds every ticket.
    let last = dir.path().join("last.sqlite");
    assert!(Command::new(common::bin())
        .arg("backup")
        .arg(&last)
        .arg("--state")
        .arg(&state)
        .output()
        .unwrap()
        .status
        .success());
    assert_eq!(count_tickets(&last), total);
    println!("wrk: {requests} requests during 4 backups; copies held {counts:?} tickets");
    drop(portal);
}

#[test]
fn backup_without_a_database_says_where_it_looked() {
    let dir = TempDir::new("backup-none");
    let out = Command::new(common::bin())
        .arg("backup")
        .arg(dir.path().join("copy.sqlite"))
        .arg("--state")
        .arg(dir.path().join("nothing"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no portal database at") && err.contains("nothing"),
        "{err}"
    );
    assert!(!dir.path().join("copy.sqlite").exists());
}
