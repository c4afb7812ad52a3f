//! `fake-hcloud --rehearsal --env-file FILE`: one command starts the
//! rehearsal (test hosts, zone, DNS, Pebble) and writes what `venue` needs;
//! sourced by sh, every value works. Also the clock flags and VENUE_CLOCK.
//! Needs root (test hosts) and Debian's pebble and dig.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use conference::clock::Clock;
use serde_json::{json, Value};

const FAKE: &str = env!("CARGO_BIN_EXE_fake-hcloud");
const BBB: &str = env!("CARGO_BIN_EXE_fake-bbb");

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "venue-{name}-{}-{}",
        std::process::id(),
        Utc::now().timestamp_micros()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A started fake-hcloud, stopped with SIGTERM (as Ctrl-C would) when dropped.
struct Fake {
    child: Option<Child>,
}

impl Fake {
    fn start(args: &[&str], env: &[(&str, &str)]) -> Fake {
        let child = Command::new(FAKE)
            .args(args)
            .env_remove("VENUE_CLOCK")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Fake { child: Some(child) }
    }

    /// Waits for the env file; panics with the fake's output if it exits.
    fn wait_for(&mut self, file: &Path) {
        let started = Instant::now();
        while !file.exists() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                let out = self.child.take().unwrap().wait_with_output().unwrap();
                panic!(
                    "fake-hcloud exited ({status}): {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "no {} after 60 s",
                file.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(&mut self) -> Output {
        let child = self.child.take().unwrap();
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        child.wait_with_output().unwrap()
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
    }
}

/// What `. FILE` exports, as sh sees it: a shell with nothing else set.
fn sourced(file: &Path) -> BTreeMap<String, String> {
    let out = Command::new("sh")
        .args(["-c", ". \"$1\" && env", "sh"])
        .arg(file)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| !["PATH", "PWD", "SHLVL", "_", "OLDPWD"].contains(k))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn pem_certs(pem: &str) -> Vec<String> {
    pem.split_inclusive("-----END CERTIFICATE-----\n")
        .filter(|c| c.contains("BEGIN CERTIFICATE"))
        .map(str::to_owned)
        .collect()
}

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

async fn get(http: &reqwest::Client, url: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = http.get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn one_command_writes_what_venue_needs_and_every_value_works() {
    let dir = scratch("rehearsal-env");
    let file = dir.join("rehearsal.env");
    // Any file stands for venue-portal: the test reads what is written, no
    // host runs it.
    let portal = dir.join("venue-portal");
    std::fs::write(&portal, "").unwrap();
    let hosts = dir.join("hosts");
    let mut fake = Fake::start(
        &[
            "--rehearsal",
            "--listen",
            "127.0.0.1:0",
            "--env-file",
            file.to_str().unwrap(),
            "--portal",
            portal.to_str().unwrap(),
            "--bbb",
            BBB,
            "--hosts-dir",
            hosts.to_str().unwrap(),
            "--clock",
            "2030-01-01T08:00:00Z",
            "--speed",
            "600",
        ],
        &[],
    );
    let started = Instant::now();
    fake.wait_for(&file);
    eprintln!(
        "rehearsal ready in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let env = sourced(&file);
    let keys: Vec<&str> = env.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "HCLOUD_ENDPOINT",
            "HCLOUD_TOKEN",
            "VENUE_ACME_DIRECTORY",
            "VENUE_ACME_ROOT",
            "VENUE_CLOCK",
            "VENUE_RESOLVER",
            "VENUE_TESTBED_BBB",
            "VENUE_TESTBED_PORTAL",
        ]
    );
    assert_eq!(
        env["VENUE_TESTBED_PORTAL"],
        portal.canonicalize().unwrap().to_str().unwrap()
    );
    assert_eq!(
        env["VENUE_TESTBED_BBB"],
        Path::new(BBB).canonicalize().unwrap().to_str().unwrap()
    );

    // The API, with the token.
    let http = reqwest::Client::new();
    let endpoint = &env["HCLOUD_ENDPOINT"];
    let token = &env["HCLOUD_TOKEN"];
    let (s, v) = get(&http, &format!("{endpoint}/servers"), Some(token)).await;
    assert_eq!((s, &v["servers"]), (200, &json!([])));
    let (s, _) = get(&http, &format!("{endpoint}/servers"), None).await;
    assert_eq!(s, 401);

    // The clock: venue reads what the fake writes.
    let clock: Clock = env["VENUE_CLOCK"].parse().unwrap();
    assert!(
        env["VENUE_CLOCK"].starts_with("2030-01-01T08:00:00Z*600@"),
        "{}",
        env["VENUE_CLOCK"]
    );
    let before = clock.now();
    let r = http
        .post(format!("{endpoint}/primary_ips"))
        .bearer_auth(token)
        .json(&json!({"name": "probe", "type": "ipv4", "location": "fsn1", "assignee_type": "server"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let ip: Value = r.json().await.unwrap();
    let after = clock.now();
    let created = t(ip["primary_ip"]["created"].as_str().unwrap());
    // The API writes whole seconds.
    assert!(
        before.timestamp() <= created.timestamp() && created <= after,
        "{before} <= {created} <= {after}"
    );
    let base = endpoint.trim_end_matches("/v1");
    let (s, bill) = get(&http, &format!("{base}/testbed/bill"), Some(token)).await;
    assert_eq!(s, 200, "{bill}");
    assert_eq!(bill["bill"]["clock"], env["VENUE_CLOCK"].as_str());
    assert_eq!(bill["bill"]["resources"][0]["name"], "probe");

    // The ACME directory, trusting the bundle's first root only (all that
    // venue's ACME client reads of it); the second signs what Pebble issues.
    let roots = std::fs::read_to_string(&env["VENUE_ACME_ROOT"]).unwrap();
    let certs = pem_certs(&roots);
    assert_eq!(certs.len(), 2, "{roots}");
    assert_ne!(certs[0], certs[1]);
    let acme = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(certs[0].as_bytes()).unwrap())
        .build()
        .unwrap();
    let (s, dir_doc) = get(&acme, &env["VENUE_ACME_DIRECTORY"], None).await;
    assert_eq!(s, 200);
    assert!(dir_doc["newOrder"].is_string(), "{dir_doc}");
    // Without the bundle, Pebble is not trusted.
    let plain = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .build()
        .unwrap();
    assert!(plain
        .get(&env["VENUE_ACME_DIRECTORY"])
        .send()
        .await
        .is_err());

    // The resolver answers for the rehearsal's zone.
    let (ip_addr, port) = env["VENUE_RESOLVER"].rsplit_once(':').unwrap();
    assert_eq!(ip_addr, "127.0.0.1");
    let out = Command::new("dig")
        .args([
            "+short",
            "+time=2",
            "+tries=2",
            &format!("@{ip_addr}"),
            "-p",
            port,
        ])
        .args(["example.org", "NS"])
        .output()
        .expect("dig (apt-get install dnsutils)");
    let ns = String::from_utf8_lossy(&out.stdout);
    assert!(ns.contains("hydrogen.ns.hetzner.com."), "{ns}");

    // What it printed is what it wrote; stopping removes the roots it made.
    let out = fake.stop();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        std::fs::read_to_string(&file).unwrap()
    );
    assert!(!Path::new(&env["VENUE_ACME_ROOT"]).exists());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_missing_service_binary_is_named_and_nothing_starts() {
    let dir = scratch("rehearsal-missing");
    let file = dir.join("rehearsal.env");
    let out = Command::new(FAKE)
        .args(["--rehearsal", "--listen", "127.0.0.1:0", "--env-file"])
        .arg(&file)
        .args(["--portal", "/nonexistent/venue-portal", "--bbb", BBB])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("/nonexistent/venue-portal") && err.contains("--portal"),
        "{err}"
    );
    assert!(!file.exists());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn venue_clock_from_the_environment_is_the_fakes_and_the_flag_wins() {
    let dir = scratch("rehearsal-clock");
    let shared = Clock::accelerated(t("2031-06-01T12:00:00Z"), 60.0).to_string();
    let file = dir.join("a.env");
    let mut fake = Fake::start(
        &[
            "--listen",
            "127.0.0.1:0",
            "--env-file",
            file.to_str().unwrap(),
        ],
        &[("VENUE_CLOCK", &shared)],
    );
    fake.wait_for(&file);
    let env = sourced(&file);
    assert_eq!(env["VENUE_CLOCK"], shared);
    // Without --dns and --acme there is no resolver or ACME to name.
    assert!(!env.contains_key("VENUE_RESOLVER") && !env.contains_key("VENUE_ACME_ROOT"));
    drop(fake);

    let file = dir.join("b.env");
    let mut fake = Fake::start(
        &[
            "--listen",
            "127.0.0.1:0",
            "--env-file",
            file.to_str().unwrap(),
            "--clock",
            "2032-01-01T00:00:00Z",
            "--speed",
            "2",
        ],
        &[("VENUE_CLOCK", &shared)],
    );
    fake.wait_for(&file);
    let c = &sourced(&file)["VENUE_CLOCK"];
    assert!(c.starts_with("2032-01-01T00:00:00Z*2@"), "{c}");
    drop(fake);

    // Real time: an empty VENUE_CLOCK, so a shell's earlier one goes.
    let file = dir.join("c.env");
    let mut fake = Fake::start(
        &[
            "--listen",
            "127.0.0.1:0",
            "--env-file",
            file.to_str().unwrap(),
        ],
        &[],
    );
    fake.wait_for(&file);
    assert!(std::fs::read_to_string(&file)
        .unwrap()
        .contains("export VENUE_CLOCK=''\n"));
    drop(fake);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_clocks_are_refused_naming_what_is_wrong() {
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let out = Command::new(FAKE)
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env_remove("VENUE_CLOCK")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} {env:?} was accepted");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = run(&["--clock", "tomorrow"], &[]);
    assert!(e.contains("RFC 3339") && e.contains("tomorrow"), "{e}");
    let e = run(&["--speed", "10"], &[]);
    assert!(e.contains("--clock"), "{e}");
    let e = run(&["--clock", "2030-01-01T00:00:00Z", "--speed", "0"], &[]);
    assert!(e.contains("positive"), "{e}");
    let e = run(&[], &[("VENUE_CLOCK", "2030-01-01T00:00:00Z*fast@now")]);
    assert!(e.contains("VENUE_CLOCK") && e.contains("speed"), "{e}");
}
