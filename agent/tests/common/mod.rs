//! Shared by the cloud tests: a fake cloud, a scratch copy of an example
//! event, an in-process client, and what the fake holds for an event.
#![allow(dead_code)]

pub mod dice;

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use venue_agent::cloud::retry::Backoff;
use venue_agent::cloud::{Client, ClientConfig};
use venue_testbed::spec::{self, Spec};
use venue_testbed::{FakeCloud, FakeConfig, FakeHandle};

pub const ACTION_MS: u64 = 15;

/// An RFC 3339 time, in UTC.
pub fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

pub fn fake() -> (String, FakeHandle) {
    fake_with(FakeConfig {
        action_duration: Duration::from_millis(ACTION_MS),
        ..FakeConfig::default()
    })
}

pub fn fake_with(cfg: FakeConfig) -> (String, FakeHandle) {
    FakeCloud::start(cfg)
}

/// A fresh directory under the system's temp dir.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "venue-{name}-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed) * 1000
        + std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_micros() as u64
}

/// Copies hosts/<name>/ (event.toml, its schedule, and what its systems.nix
/// imports, such as the testbed's services/) into a scratch dir.
pub fn example_event(name: &str) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../hosts")
        .join(name);
    let dir = scratch(name);
    copy_tree(&src, &dir);
    dir.join("event.toml")
}

fn copy_tree(src: &Path, dst: &Path) {
    for entry in std::fs::read_dir(src).unwrap() {
        let p = entry.unwrap().path();
        let to = dst.join(p.file_name().unwrap());
        if p.is_dir() {
            std::fs::create_dir_all(&to).unwrap();
            copy_tree(&p, &to);
        } else if p.is_file() {
            std::fs::copy(&p, &to).unwrap();
        }
    }
}

pub fn client(url: &str, token: &str) -> Client {
    client_polling(url, token, Duration::from_millis(10))
}

/// A client whose waits start polling after `poll_start`.
pub fn client_polling(url: &str, token: &str, poll_start: Duration) -> Client {
    Client::new(ClientConfig {
        endpoint: url.to_owned(),
        token: token.to_owned(),
        backoff: Backoff {
            base: Duration::from_millis(2),
            cap: Duration::from_millis(40),
            attempts: 12,
        },
        reserve: 20,
        timeout: Duration::from_secs(10),
        poll_start,
    })
    .unwrap()
}

fn has_event(v: &Value, event: &str) -> bool {
    v["labels"]["venue/event"] == event
}

/// (servers, primary IPs, firewalls, SSH keys) labelled for `event` in the fake.
pub fn held(fake: &FakeHandle, event: &str) -> (Vec<Value>, Vec<Value>, Vec<Value>, Vec<Value>) {
    fake.with_state(|s| {
        let f = |v: Vec<Value>| {
            v.into_iter()
                .filter(|x| has_event(x, event))
                .collect::<Vec<_>>()
        };
        (
            f(s.servers()),
            f(s.primary_ips()),
            f(s.firewalls()),
            f(s.ssh_keys()),
        )
    })
}

pub fn held_count(fake: &FakeHandle, event: &str) -> usize {
    let (a, b, c, d) = held(fake, event);
    a.len() + b.len() + c.len() + d.len()
}

/// Every request the agent sent, and every answer, fits the OpenAPI spec.
pub fn assert_spec_clean(fake: &FakeHandle) {
    let mut spec = Spec::load(&spec::default_path())
        .expect("the OpenAPI spec (shared/reference beside the repo)");
    let xs = fake.exchanges();
    let errors = spec.violations(&xs);
    assert!(
        errors.is_empty(),
        "{} of {} exchanges break the spec:\n{}",
        errors.len(),
        xs.len(),
        errors.join("\n")
    );
}

/// The stdout of a `venue` run that must have succeeded; its output otherwise.
pub fn ok(out: &std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "venue failed:\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The event's names for a test: a zone `example.org` in the fake (the
/// testbed event's `[dns]`), the fake's DNS server, and Debian's Pebble
/// resolving through it. Pebble stops when this is dropped.
pub struct Names {
    pub dns: std::net::SocketAddr,
    pub pebble: venue_testbed::pebble::Pebble,
}

impl Names {
    pub fn start(fake: &FakeHandle, dir: &Path) -> Names {
        fake.with_state(|s| {
            s.add_zone("example.org");
        });
        let dns = fake.start_dns();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let pebble = rt
            .block_on(venue_testbed::pebble::Pebble::start(
                dns,
                &dir.join("pebble"),
            ))
            .expect("pebble starts (apt-get install pebble)");
        Names { dns, pebble }
    }

    /// What `venue` needs to talk to Pebble.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("VENUE_ACME_DIRECTORY", self.pebble.directory.clone()),
            (
                "VENUE_ACME_ROOT",
                self.pebble.acme_root.display().to_string(),
            ),
        ]
    }

    /// What a real resolver (dig) gets for `name`/`kind` from the fake's DNS.
    pub fn dig(&self, name: &str, kind: &str) -> Vec<String> {
        let out = std::process::Command::new("dig")
            .args(["+short", "+time=2", "+tries=2", "@127.0.0.1", "-p"])
            .arg(self.dns.port().to_string())
            .args([name, kind])
            .output()
            .expect("dig (apt-get install dnsutils)");
        assert!(out.status.success(), "dig {name} {kind}: {out:?}");
        let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim().trim_matches('"').to_owned())
            .filter(|l| !l.is_empty())
            .collect();
        v.sort();
        v
    }
}

/// Nix on this machine, offline (no binary cache can be reached).
pub const OFFLINE_NIX: &str =
    "experimental-features = nix-command flakes\nsandbox = false\nbuild-users-group =\nsubstituters =";

/// A binary built beside `venue` (`cargo build --bins`): the testbed's hosts
/// run venue-portal and fake-bbb.
pub fn sibling_binary(name: &str) -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_venue"))
        .parent()
        .unwrap()
        .join(name);
    assert!(
        bin.is_file(),
        "{} is missing: the testbed's hosts run it; `cargo build --bins` first",
        bin.display()
    );
    bin
}

/// `venue ARGS` against the fake cloud at `url`, with offline Nix and the
/// testbed's real services (venue-portal, fake-bbb) on its hosts.
pub fn testbed_venue(url: &str, env: &[(&str, String)], args: &[&str]) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_venue"));
    c.args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("HCLOUD_ENDPOINT", url)
        .env("HCLOUD_TOKEN", "fake-token")
        .env("VENUE_CLOUD_POLL_MS", "10")
        .env("VENUE_TESTBED_PORTAL", sibling_binary("venue-portal"))
        .env("VENUE_TESTBED_BBB", sibling_binary("fake-bbb"))
        .env("NIX_CONFIG", OFFLINE_NIX)
        .stdin(std::process::Stdio::null());
    c
}

/// Runs `script` with `input` on its stdin in a test host's mount and
/// network namespaces (its own /nix and /var/lib/venue), as its sshd would.
pub fn on_test_host(netns: &str, script: &str, input: &str) -> std::process::Output {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let out = Command::new("ip")
        .args(["netns", "pids", netns])
        .output()
        .unwrap();
    let sshd = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse::<u32>().ok())
        .find(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "sshd")
        })
        .expect("the host's sshd");
    let mut child = Command::new("nsenter")
        .args(["-t", &sshd.to_string(), "-m", "-n", "sh", "-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// Reboots a test host: its boot's sshd stops, and the host's boot loop
/// kills what that boot started and boots again (what its hw/mode says).
pub fn reboot_test_host(netns: &str) {
    let out = on_test_host(netns, "kill $(cat /run/sshd.pid)", "");
    assert!(out.status.success(), "reboot {netns}: {out:?}");
}

/// `GET http://ADDRESS/PATH` (port 80): the status code, or None when
/// nothing answers within two seconds.
pub fn http_status(address: &str, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let addr: std::net::SocketAddr = format!("{address}:80").parse().ok()?;
    let mut tcp = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    tcp.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        tcp,
        "GET {path} HTTP/1.0\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = String::new();
    let _ = tcp.read_to_string(&mut head);
    head.split_whitespace().nth(1)?.parse().ok()
}

/// Polls `f` until it is true or `secs` have passed; false then.
pub fn eventually(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if f() {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The SHA-256 of a file, in hex, as the archive computes it.
pub fn sha256_hex(path: &Path) -> String {
    venue_agent::archive::sha256_file(path).unwrap_or_else(|e| panic!("{e:#}"))
}

/// What each record of the state directory's journal says, in order.
pub fn journal(state: &Path) -> Vec<String> {
    std::fs::read_to_string(state.join("journal.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["what"].as_str().map(str::to_owned))
        .collect()
}

/// The archive in `archive` (`<state>/archive`) is complete: every manifest
/// entry's copy is on disk with the entry's size and SHA-256, and every
/// file below a host's directory is in the manifest (no stray or
/// half-copied `.part` file). Returns the manifest's entries per host.
pub fn assert_archive_complete(
    archive: &Path,
) -> std::collections::BTreeMap<String, Vec<venue_agent::archive::manifest::Entry>> {
    let manifest =
        venue_agent::archive::manifest::Manifest::load(archive).unwrap_or_else(|e| panic!("{e:#}"));
    let mut per_host: std::collections::BTreeMap<String, Vec<_>> = Default::default();
    for e in manifest.files {
        let local = archive.join(&e.host).join(&e.path);
        assert!(
            local.is_file(),
            "{} is in the manifest but not on disk",
            local.display()
        );
        assert_eq!(
            e.size,
            std::fs::metadata(&local).unwrap().len(),
            "{}",
            local.display()
        );
        assert_eq!(e.sha256, sha256_hex(&local), "{}", local.display());
        per_host.entry(e.host.clone()).or_default().push(e);
    }
    fn files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let p = entry.path();
            if p.is_dir() {
                files(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    for entry in std::fs::read_dir(archive).unwrap().flatten() {
        let host_dir = entry.path();
        if !host_dir.is_dir() {
            continue;
        }
        let host = entry.file_name().to_string_lossy().into_owned();
        let mut on_disk = Vec::new();
        files(&host_dir, &mut on_disk);
        for f in on_disk {
            let rel = f
                .strip_prefix(&host_dir)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            assert!(
                per_host
                    .get(&host)
                    .is_some_and(|es| es.iter().any(|e| e.path == rel)),
                "{} is in the archive but not in its manifest",
                f.display()
            );
        }
    }
    per_host
}
