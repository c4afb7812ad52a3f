//! `venue archive`, `venue status` and `venue down` on the rehearsal
//! (hosts/testbed: fake-hcloud whose servers are network-namespace test
//! hosts with real sshd): the bbb host holds sample recordings of known
//! SHA-256, the portal host a real venue-portal database with tickets and
//! picks. Nothing may be deleted before it is archived and verified; a
//! failed archive keeps its server; a crash between any two steps loses
//! nothing and copies nothing twice. Needs root, Nix, sshd, iproute2.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};
use venue_testbed::netns::NetnsHosts;
use venue_testbed::{FakeCloud, FakeConfig, FakeHandle};

const BBB: &str = "testbed-bbb-1";
const PORTAL: &str = "testbed-portal-1";

/// hosts/testbed/systems.nix's recordings: (path below /var/bigbluebutton, size).
const RECORDINGS: &[(&str, u64)] = &[
    ("published/presentation/6e35e3b2778883f5db637d7a5dba0a427f692e91-1764579600000/metadata.xml", 1500),
    ("published/presentation/6e35e3b2778883f5db637d7a5dba0a427f692e91-1764579600000/video/webcams.webm", 393216),
    ("published/presentation/6e35e3b2778883f5db637d7a5dba0a427f692e91-1764579600000/deskshare/deskshare.webm", 262144),
    ("published/presentation/a1f0c2d8e4b6a8c0e2f4a6b8c0d2e4f6a8b0c2d4-1764583200000/metadata.xml", 1400),
    ("published/presentation/a1f0c2d8e4b6a8c0e2f4a6b8c0d2e4f6a8b0c2d4-1764583200000/video/webcams.webm", 327680),
    ("recording/raw/c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2-1764586800000/events.xml", 4000),
    ("recording/raw/c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2-1764586800000/audio/audio.opus", 196608),
];

/// The content systems.nix gives a sample file: block i is sha256("<path>:<i>").
fn sample(path: &str, size: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while (out.len() as u64) < size {
        out.extend_from_slice(&Sha256::digest(format!("{path}:{i}")));
        i += 1;
    }
    out.truncate(size as usize);
    out
}

fn sha(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Where each recording goes in the archive, and its known SHA-256.
fn expected_recordings() -> BTreeMap<String, (u64, String)> {
    RECORDINGS
        .iter()
        .map(|(path, size)| {
            let rel = match path.strip_prefix("published/") {
                Some(rest) => format!("recordings-published/{rest}"),
                None => format!(
                    "recordings-raw/{}",
                    path.strip_prefix("recording/raw/").unwrap()
                ),
            };
            (rel, (*size, sha(&sample(path, *size))))
        })
        .collect()
}

fn portal_binary() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_venue"))
        .parent()
        .unwrap()
        .join("venue-portal");
    assert!(
        bin.is_file(),
        "{} is missing: the rehearsal's portal host runs it; `cargo build -p venue-portal` first",
        bin.display()
    );
    bin
}

fn venue(
    url: &str,
    names: &[(&'static str, String)],
    args: &[&str],
    env: &[(&str, &str)],
) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_venue"));
    cmd.args(args)
        .env("HCLOUD_ENDPOINT", url)
        .env("HCLOUD_TOKEN", "fake-token")
        .env("VENUE_CLOUD_POLL_MS", "10")
        .env("VENUE_TESTBED_PORTAL", portal_binary())
        .env("NIX_CONFIG", "experimental-features = nix-command flakes\nsandbox = false\nbuild-users-group =\nsubstituters =")
        .stdin(std::process::Stdio::null());
    for (k, v) in names {
        cmd.env(k, v);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run venue")
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// A rented, deployed rehearsal.
struct Rehearsal {
    dir: PathBuf,
    // The event's DNS zone and ACME (Pebble) that `up` needs.
    names: common::Names,
    hosts: Arc<NetnsHosts>,
    url: String,
    fake: FakeHandle,
    event: PathBuf,
    state: PathBuf,
}

impl Rehearsal {
    fn up(name: &str) -> Rehearsal {
        Rehearsal::start(name, &[])
    }

    /// `venue up --no-deploy`: the servers are rented (still "Ubuntu"),
    /// venue has put nothing of its own on them.
    fn rent(name: &str) -> Rehearsal {
        Rehearsal::start(name, &["--no-deploy"])
    }

    fn start(name: &str, up_args: &[&str]) -> Rehearsal {
        let dir = common::scratch(name);
        let hosts = Arc::new(
            NetnsHosts::new(&dir.join("hosts"))
                .expect("test hosts need root: run as root after scripts/install-deps"),
        );
        let (url, fake) = FakeCloud::start(FakeConfig {
            action_duration: Duration::from_millis(50),
            hook: hosts.clone(),
            ..FakeConfig::default()
        });
        let event = common::example_event("testbed");
        let state = dir.join("state");
        let names = common::Names::start(&fake, &dir);
        let r = Rehearsal {
            names,
            dir,
            hosts,
            url,
            fake,
            event,
            state,
        };
        let mut args = vec!["up", r.e(), "--state", r.s()];
        args.extend_from_slice(up_args);
        common::ok(&r.venue(&args, &[]));
        assert_eq!(r.hosts.names().len(), 4, "bbb, jitsi, coturn, portal");
        r
    }
    fn e(&self) -> &str {
        self.event.to_str().unwrap()
    }
    fn s(&self) -> &str {
        self.state.to_str().unwrap()
    }
    fn venue(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        venue(&self.url, &self.names.env(), args, env)
    }
    fn servers(&self) -> Vec<String> {
        let mut names: Vec<String> = self.fake.with_state(|s| {
            s.servers()
                .iter()
                .map(|v| v["name"].as_str().unwrap().to_owned())
                .collect()
        });
        names.sort();
        names
    }
    fn archive(&self) -> PathBuf {
        self.state.join("archive")
    }
    fn host_dir(&self, host: &str) -> PathBuf {
        self.hosts.with_host(host, |h| h.dir.clone()).unwrap()
    }
    fn bytes_sent(&self, host: &str) -> u64 {
        self.hosts.with_host(host, |h| h.bytes_sent()).unwrap()
    }
    /// Journal lines of `venue` saying it copied a file: (host: path, bytes).
    fn copies(&self) -> Vec<(String, u64)> {
        std::fs::read_to_string(self.state.join("journal.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|v| {
                let what = v["what"].as_str()?.to_owned();
                let (file, rest) = what.split_once(" (")?;
                let file = file.replacen(": copied ", ": ", 1);
                if !what.contains(": copied ") {
                    return None;
                }
                let bytes = rest.strip_suffix(" bytes)")?.parse().ok()?;
                Some((file, bytes))
            })
            .collect()
    }
}

impl Drop for Rehearsal {
    fn drop(&mut self) {
        self.hosts.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Every recording is in the archive with its known sum, and in the manifest.
fn assert_recordings_archived(archive: &Path) {
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(archive.join("manifest.json")).unwrap())
            .unwrap();
    for (rel, (size, sum)) in expected_recordings() {
        let local = archive.join(BBB).join(&rel);
        let bytes = std::fs::read(&local).unwrap_or_else(|e| panic!("{}: {e}", local.display()));
        assert_eq!(sha(&bytes), sum, "{rel}");
        let entry = manifest["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["host"] == BBB && e["path"] == rel.as_str())
            .unwrap_or_else(|| panic!("{rel} is not in the manifest: {manifest}"));
        assert_eq!(entry["size"], size);
        assert_eq!(entry["sha256"], sum.as_str());
    }
}

/// The archived portal database opens, is intact, and holds the rehearsal's
/// three tickets and four picks.
fn assert_portal_restorable(archive: &Path) {
    let db = rusqlite::Connection::open_with_flags(
        archive.join(PORTAL).join("portal.sqlite"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let check: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let count = |table: &str| -> i64 {
        db.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(count("tickets"), 3);
    assert_eq!(count("picks"), 4);
}

#[test]
fn down_archives_recordings_and_the_portal_database_then_deletes_everything() {
    let r = Rehearsal::up("archive-e2e");
    let total: u64 = RECORDINGS.iter().map(|(_, s)| s).sum();

    // status: everything is still to archive.
    let status: Value = serde_json::from_str(&common::ok(
        &r.venue(&["status", r.e(), "--json", "--state", r.s()], &[]),
    ))
    .unwrap();
    let pending: BTreeMap<String, Value> = status["archive"]
        .as_array()
        .unwrap_or_else(|| panic!("no archive section: {status}"))
        .iter()
        .map(|p| (p["host"].as_str().unwrap().to_owned(), p.clone()))
        .collect();
    assert_eq!(pending[BBB]["files"], RECORDINGS.len(), "{status}");
    assert_eq!(pending[BBB]["bytes"], total, "{status}");
    assert_eq!(pending[PORTAL]["dumps"], 1, "{status}");
    assert_eq!(pending["testbed-coturn-1"]["files"], 0, "{status}");
    assert!(pending.values().all(|p| p["error"].is_null()), "{status}");

    // archive: every file crosses once...
    let before = r.bytes_sent(BBB);
    let first: Value = serde_json::from_str(&common::ok(
        &r.venue(&["archive", r.e(), "--state", r.s(), "--json"], &[]),
    ))
    .unwrap();
    let sent = r.bytes_sent(BBB) - before;
    assert!(sent >= total, "the bbb host sent {sent} bytes for {total}");
    let bbb = first
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == BBB)
        .unwrap();
    assert_eq!(bbb["copied_bytes"], total, "{first}");
    assert_recordings_archived(&r.archive());
    assert_portal_restorable(&r.archive());

    // ...and a second run sends none of them again (only the SSH exchange
    // and listings: far less than the smallest large recording).
    let before = r.bytes_sent(BBB);
    let again: Value = serde_json::from_str(&common::ok(
        &r.venue(&["archive", r.e(), "--state", r.s(), "--json"], &[]),
    ))
    .unwrap();
    let resent = r.bytes_sent(BBB) - before;
    println!(
        "bbb host sent {sent} bytes for {total} bytes of recordings; {resent} bytes on the re-run"
    );
    assert!(
        resent < 64 * 1024,
        "a re-run made the bbb host send {resent} bytes"
    );
    for h in again.as_array().unwrap() {
        assert_eq!(h["copied_files"], 0, "{again}");
        assert_eq!(h["outcome"], "archived", "{again}");
    }

    // A recording published after that is what status shows and what down sends.
    // A name with a space and a quote: it crosses the remote shell intact.
    let late = "presentation/ffff0000ffff0000ffff0000ffff0000ffff0000-1764590400000/video/web cams 'late'.webm";
    let late_file = r
        .host_dir(BBB)
        .join("var-lib-venue/bbb/bigbluebutton/published")
        .join(late);
    std::fs::create_dir_all(late_file.parent().unwrap()).unwrap();
    std::fs::write(&late_file, sample(late, 100_000)).unwrap();
    let status = text(&r.venue(&["status", r.e(), "--state", r.s()], &[]));
    assert!(status.contains("1 files, 97.7 KiB"), "{status}");

    let copies_before = r.copies().len();
    let down = r.venue(&["down", r.e(), "--yes", "--state", r.s()], &[]);
    let out = common::ok(&down);
    let new: Vec<(String, u64)> = r.copies()[copies_before..].to_vec();
    assert_eq!(
        new,
        [(format!("{BBB}: recordings-published/{late}"), 100_000)],
        "{out}"
    );
    assert_recordings_archived(&r.archive());
    assert_portal_restorable(&r.archive());
    assert_eq!(
        sha(&std::fs::read(
            r.archive()
                .join(BBB)
                .join("recordings-published")
                .join(late)
        )
        .unwrap()),
        sha(&sample(late, 100_000))
    );

    // Then nothing is left in the cloud.
    assert_eq!(common::held_count(&r.fake, "testbed"), 0);
    assert!(r.hosts.names().is_empty());
}

/// A tmpfs mounted over a directory for the test's lifetime.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount a tmpfs on {}", dir.display());
        Tmpfs(dir.to_owned())
    }
    fn resize(&self, size: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Takes a test host's link down (or up again): it stops answering.
fn set_link(r: &Rehearsal, host: &str, up: bool) {
    let netns = r.hosts.with_host(host, |h| h.netns.clone()).unwrap();
    let links = Command::new("ip")
        .args(["-n", &netns, "-o", "link", "show"])
        .output()
        .unwrap();
    let links = String::from_utf8_lossy(&links.stdout).into_owned();
    let dev = links
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|d| d.split('@').next().unwrap())
        .find(|d| *d != "lo")
        .unwrap();
    let ok = Command::new("ip")
        .args([
            "-n",
            &netns,
            "link",
            "set",
            dev,
            if up { "up" } else { "down" },
        ])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

#[test]
fn a_failed_archive_keeps_its_server_and_the_retry_completes() {
    let r = Rehearsal::up("archive-fail");
    // The organiser's disk: room for the portal's database, not for the recordings.
    let disk = Tmpfs::mount(&r.archive(), "512k");
    // And the TURN server does not answer.
    set_link(&r, "testbed-coturn-1", false);

    let down = r.venue(
        &["down", r.e(), "--yes", "--state", r.s()],
        &[("VENUE_ARCHIVE_CONNECT_SECONDS", "3")],
    );
    let out = text(&down);
    println!("{out}");
    assert!(!down.status.success(), "{out}");
    assert!(out.contains("not enough space in"), "{out}");
    assert!(out.contains("did not accept SSH connections"), "{out}");
    let retry = format!("venue down {} --state {} --yes", r.e(), r.s());
    assert!(
        out.contains(&format!(
            "kept 2 server(s) whose archive is not complete: {BBB}, testbed-coturn-1"
        )) && out.contains(&retry),
        "{out}"
    );
    assert_eq!(r.servers(), [BBB, "testbed-coturn-1"], "{out}");
    assert_portal_restorable(&r.archive());
    // Nothing of the recordings was left half-written on the full disk.
    assert!(!r.archive().join(BBB).exists() || walk(&r.archive().join(BBB)).is_empty());

    // Fixed: a bigger disk, the link back. The command it named completes.
    disk.resize("64m");
    set_link(&r, "testbed-coturn-1", true);
    let args: Vec<&str> = retry.split(' ').skip(1).collect();
    common::ok(&r.venue(&args, &[]));
    assert_recordings_archived(&r.archive());
    assert_portal_restorable(&r.archive());
    assert_eq!(common::held_count(&r.fake, "testbed"), 0);
    drop(disk);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn a_crash_after_any_step_loses_nothing_and_copies_nothing_twice() {
    let r = Rehearsal::up("archive-crash");
    let all = [
        "testbed-bbb-1",
        "testbed-coturn-1",
        "testbed-jitsi-1",
        PORTAL,
    ];
    // Each run crashes right after the step named (the N-th step whose
    // description holds the text): after copies, after verified hosts, after
    // deletions. Then one run goes through.
    let crashes = [
        "1:: copied ",
        "1:: copied ",
        "2:: copied ",
        "1:: verified ",
        "3:: verified ",
        // The deletions are sent together: this crashes once they are out.
        "1:deleting server ",
    ];
    for spec in crashes {
        let out = r.venue(
            &["down", r.e(), "--yes", "--state", r.s()],
            &[("VENUE_TEST_CRASH_AFTER", spec)],
        );
        let log = text(&out);
        assert!(!out.status.success(), "{spec}: did not crash: {log}");
        let what = log
            .lines()
            .find_map(|l| l.split_once("crashing after: ").map(|(_, w)| w.to_owned()))
            .unwrap_or_else(|| panic!("{spec}: failed without the crash: {log}"));
        assert!(
            what.contains(spec.split_once(':').unwrap().1),
            "{spec}: {what}"
        );
        // Whatever is gone was archived completely before.
        let left = r.servers();
        for host in all.iter().filter(|h| !left.contains(&h.to_string())) {
            match *host {
                BBB => assert_recordings_archived(&r.archive()),
                PORTAL => assert_portal_restorable(&r.archive()),
                _ => {}
            }
        }
    }
    common::ok(&r.venue(&["down", r.e(), "--yes", "--state", r.s()], &[]));
    assert_recordings_archived(&r.archive());
    assert_portal_restorable(&r.archive());
    assert_eq!(common::held_count(&r.fake, "testbed"), 0);

    // Each file crossed the network once, whole: the bytes venue received
    // add up to exactly one copy of each.
    let copies = r.copies();
    let mut per_file: BTreeMap<&str, u32> = BTreeMap::new();
    for (file, _) in &copies {
        *per_file.entry(file.as_str()).or_default() += 1;
    }
    assert!(per_file.values().all(|n| *n == 1), "{per_file:?}");
    let received: u64 = copies.iter().map(|(_, b)| b).sum();
    let db = std::fs::metadata(r.archive().join(PORTAL).join("portal.sqlite"))
        .unwrap()
        .len();
    let total: u64 = RECORDINGS.iter().map(|(_, s)| s).sum::<u64>() + db;
    assert_eq!(received, total, "{copies:?}");
    assert_eq!(copies.len(), RECORDINGS.len() + 1, "{copies:?}");
}

/// A recording whose content is archived but whose time changed on the host
/// (the event run again, the host rebuilt from a snapshot) is recorded with
/// its new time, not copied again, and the archive completes.
#[test]
fn a_recording_with_a_new_time_is_recorded_again_not_copied() {
    let r = Rehearsal::up("archive-mtime");
    common::ok(&r.venue(&["archive", r.e(), "--state", r.s()], &[]));
    let (path, size) = RECORDINGS[1];
    let rel = format!(
        "recordings-published/{}",
        path.strip_prefix("published/").unwrap()
    );
    let on_host = r
        .host_dir(BBB)
        .join("var-lib-venue/bbb/bigbluebutton")
        .join(path);
    let touched = Command::new("touch")
        .args(["-m", "-d", "2026-12-02 10:00:00 UTC"])
        .arg(&on_host)
        .status()
        .unwrap();
    assert!(touched.success());
    let copies_before = r.copies().len();
    let before = r.bytes_sent(BBB);
    let again: Value = serde_json::from_str(&common::ok(
        &r.venue(&["archive", r.e(), "--state", r.s(), "--json"], &[]),
    ))
    .unwrap();
    let bbb = again
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == BBB)
        .unwrap();
    assert_eq!(bbb["outcome"], "archived", "{again}");
    assert_eq!(bbb["copied_files"], 0, "{again}");
    assert_eq!(r.copies().len(), copies_before, "nothing copied again");
    let resent = r.bytes_sent(BBB) - before;
    assert!(resent < size, "the bbb host sent {resent} bytes again");
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(r.archive().join("manifest.json")).unwrap())
            .unwrap();
    let entry = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["host"] == BBB && e["path"] == rel.as_str())
        .unwrap();
    assert_eq!(entry["mtime"], 1_796_205_600i64, "{entry}");
    assert_recordings_archived(&r.archive());

    // And `down` deletes the server: nothing is left to archive.
    common::ok(&r.venue(&["down", r.e(), "--yes", "--state", r.s()], &[]));
    assert_eq!(common::held_count(&r.fake, "testbed"), 0);
}

/// After `up --no-deploy` venue has put nothing on the servers: `down`
/// deletes them all, also one that does not answer.
#[test]
fn down_after_up_without_deploy_releases_even_a_silent_server() {
    let r = Rehearsal::rent("archive-nodeploy");
    assert_eq!(r.servers().len(), 4);
    set_link(&r, "testbed-coturn-1", false);
    let down = r.venue(
        &["down", r.e(), "--yes", "--state", r.s()],
        &[("VENUE_ARCHIVE_CONNECT_SECONDS", "3")],
    );
    let out = text(&down);
    assert!(down.status.success(), "{out}");
    assert!(out.contains("venue never put a system on it"), "{out}");
    assert_eq!(r.servers(), Vec::<String>::new(), "{out}");
    assert_eq!(common::held_count(&r.fake, "testbed"), 0);
}
