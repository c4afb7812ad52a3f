//! `venue check` against the rehearsal: after `venue up` of
//! hosts/testbed/event.toml (real services on the test hosts, see
//! hosts/testbed/services), every probe passes, through the fake's DNS
//! (`--resolver`) and Pebble's certificate. Then each host is broken on
//! purpose and the matching probe fails, naming the host and the cause, with
//! a non-zero exit: coturn stopped, another TURN secret on the host, the
//! BBB server with another secret, the portal down, a certificate about to
//! expire. `--watch` reports coturn's failure and its recovery within one
//! interval. After `venue down`, the check fails.
//!
//! Needs root, Nix, sshd, iproute2, pebble, dig, nginx, coturn, prosody
//! (scripts/install-deps) and the built venue-portal and fake-bbb binaries
//! (`cargo build --bins`).

mod common;

use common::{ok, Names};

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use serde_json::Value;
use venue_testbed::netns::NetnsHosts;
use venue_testbed::{FakeCloud, FakeConfig};

const DOMAIN: &str = "testbed.example.org";

fn venue_cmd(url: &str, env: &[(&'static str, String)], args: &[&str]) -> Command {
    common::testbed_venue(url, env, args)
}

/// Runs `script` in a test host's mount and network namespaces (its own
/// /nix and /var/lib/venue), as its sshd would.
fn on_host(netns: &str, script: &str) -> Output {
    let out = common::on_test_host(netns, script, "");
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Restarts a host's services as its activation does.
const RESTART: &str = "sh /nix/var/nix/profiles/system/services/bin/start >/dev/null 2>&1";

struct Rehearsal {
    dir: PathBuf,
    url: String,
    env: Vec<(&'static str, String)>,
    event: String,
    state: String,
    resolver: String,
    hosts: Arc<NetnsHosts>,
    _names: Names,
    _fake: venue_testbed::FakeHandle,
}

impl Rehearsal {
    fn check(&self, extra: &[&str]) -> (Option<i32>, Value, String) {
        let mut args = vec![
            "check",
            &self.event,
            "--state",
            &self.state,
            "--resolver",
            &self.resolver,
            "--json",
        ];
        args.extend_from_slice(extra);
        let out = venue_cmd(&self.url, &self.env, &args).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
        (out.status.code(), json, stderr)
    }

    fn netns(&self, role: &str) -> String {
        let fleet: Value = serde_json::from_str(
            &std::fs::read_to_string(Path::new(&self.state).join("fleet.json")).unwrap(),
        )
        .unwrap();
        let name = fleet["servers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["role"] == role)
            .unwrap()["name"]
            .as_str()
            .unwrap()
            .to_owned();
        self.hosts.with_host(&name, |h| h.netns.clone()).unwrap()
    }
}

fn failed(report: &Value) -> Vec<(String, String, String)> {
    report["probes"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .filter(|p| p["ok"] == false)
        .map(|p| {
            (
                p["host"].as_str().unwrap().to_owned(),
                p["probe"].as_str().unwrap().to_owned(),
                p["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Asserts a failed run whose failures are exactly `want` (probe, and a
/// cause its message holds), each message naming the host and its address.
fn assert_found(got: (Option<i32>, Value, String), want: &[(&str, &str)]) {
    let (code, report, stderr) = got;
    assert_eq!(code, Some(1), "a failed probe exits non-zero: {stderr}");
    assert_eq!(report["ok"], false);
    let f = failed(&report);
    let mut names: Vec<&str> = f.iter().map(|(_, p, _)| p.as_str()).collect();
    names.sort();
    let mut wanted: Vec<&str> = want.iter().map(|(p, _)| *p).collect();
    wanted.sort();
    assert_eq!(names, wanted, "failures: {f:#?}");
    for (host, probe, message) in &f {
        let cause = want.iter().find(|(p, _)| p == probe).unwrap().1;
        assert!(
            message.contains(&format!("on {host} (10.233.")) && message.contains(cause),
            "{probe}: {message}"
        );
    }
}

#[test]
fn check_passes_on_the_rehearsal_and_finds_each_breakage() {
    let dir = common::scratch("check-e2e");
    let hosts = Arc::new(
        NetnsHosts::new(&dir.join("hosts"))
            .expect("test hosts need root: run as root after scripts/install-deps"),
    );
    let (url, fake) = FakeCloud::start(FakeConfig {
        action_duration: Duration::from_millis(50),
        hook: hosts.clone(),
        ..FakeConfig::default()
    });
    let names = Names::start(&fake, &dir);
    let mut env = names.env();
    // The root that signs what Pebble issues: the hosts' certificates.
    env.push((
        "VENUE_CHECK_ROOT",
        names.pebble.issuer_root.display().to_string(),
    ));
    let event = common::example_event("testbed");
    let r = Rehearsal {
        url,
        env,
        event: event.display().to_string(),
        state: dir.join("state").display().to_string(),
        resolver: names.dns.to_string(),
        hosts,
        dir: dir.clone(),
        _names: names,
        _fake: fake,
    };
    ok(
        &venue_cmd(&r.url, &r.env, &["up", &r.event, "--state", &r.state])
            .output()
            .unwrap(),
    );

    // --- Everything answers: first as a table for humans.
    let started = Instant::now();
    // The table, with the fake's DNS server from VENUE_RESOLVER (what the
    // rehearsal's env file sets) instead of --resolver.
    let out = venue_cmd(&r.url, &r.env, &["check", &r.event, "--state", &r.state])
        .env("VENUE_RESOLVER", &r.resolver)
        .output()
        .unwrap();
    let wall = started.elapsed();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{table}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(table.starts_with("HOST "), "{table}");
    assert!(table.contains("all 24 probes passed"), "{table}");
    eprintln!(
        "{table}venue check: one round in {:.2} s",
        wall.as_secs_f64()
    );
    let bad = venue_cmd(&r.url, &r.env, &["check", &r.event, "--state", &r.state])
        .env("VENUE_RESOLVER", "ns.example.org")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success() && said.contains("VENUE_RESOLVER=ns.example.org"),
        "{said}"
    );
    let (code, report, stderr) = r.check(&[]);
    assert_eq!(code, Some(0), "{stderr}\n{:#?}", failed(&report));
    let probes: Vec<(String, String)> = report["probes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            assert_eq!(p["ok"], true, "{p}");
            for k in ["host", "role", "probe", "message"] {
                assert!(p[k].is_string(), "{p}");
            }
            assert!(p["seconds"].is_f64(), "{p}");
            (
                p["role"].as_str().unwrap().to_owned(),
                p["probe"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for (role, probe) in [
        ("portal", format!("dns {DOMAIN}")),
        ("portal", format!("tls {DOMAIN}")),
        ("portal", "portal healthz".into()),
        ("portal", "portal login page".into()),
        ("portal", "portal join".into()),
        ("bbb", "bbb api".into()),
        ("bbb", "bbb meeting".into()),
        ("bbb", "load".into()),
        ("jitsi", "jitsi web".into()),
        ("jitsi", "jitsi bosh".into()),
        ("jitsi", "jitsi token".into()),
        ("jitsi", "jitsi no token".into()),
        ("jitsi", "jitsi guest".into()),
        ("coturn", "turn udp".into()),
        ("coturn", "turn tls".into()),
        ("coturn", "turn wrong secret".into()),
    ] {
        assert!(
            probes.contains(&(role.to_owned(), probe.clone())),
            "no {role} {probe} in {probes:?}"
        );
    }
    // DNS and TLS for each of the four hosts' names and the domain.
    assert_eq!(
        probes.iter().filter(|(_, p)| p.starts_with("dns ")).count(),
        5
    );
    assert_eq!(
        probes.iter().filter(|(_, p)| p.starts_with("tls ")).count(),
        5
    );
    // No secret in what the check prints.
    let secrets: Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(&r.state).join("secrets.json")).unwrap(),
    )
    .unwrap();
    let printed = report.to_string() + &stderr;
    for (name, value) in secrets.as_object().unwrap() {
        assert!(!printed.contains(value.as_str().unwrap()), "{name} printed");
    }

    // --- A stale record: the coturn host's name points elsewhere.
    let coturn_ip = set_a_record(&r.url, "testbed-coturn-1.testbed", "192.0.2.99");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = r.check(&[]);
        if got.0 == Some(1) {
            assert_found(
                got,
                &[(
                    "dns testbed-coturn-1.testbed.example.org",
                    &format!("resolves to 192.0.2.99, not only to {coturn_ip} as fleet.json says"),
                )],
            );
            break;
        }
        assert!(Instant::now() < deadline, "the stale record was never seen");
        std::thread::sleep(Duration::from_millis(300));
    }
    set_a_record(&r.url, "testbed-coturn-1.testbed", &coturn_ip);

    // --- coturn stopped.
    let coturn = r.netns("coturn");
    on_host(&coturn, "kill $(cat /var/lib/venue/run/coturn.pid)");
    assert_found(
        r.check(&[]),
        &[
            ("turn udp", "UDP 3478: connection refused"),
            ("turn tls", "TCP 5349 cannot connect"),
            ("turn wrong secret", "UDP 3478"),
        ],
    );
    on_host(&coturn, RESTART);

    // --- Another TURN secret on the host.
    on_host(
        &coturn,
        &format!("cp /var/lib/venue/secrets/turn-secret /tmp/turn-secret.good && chmod 600 /var/lib/venue/secrets/turn-secret && echo another-secret > /var/lib/venue/secrets/turn-secret && {RESTART}"),
    );
    assert_found(
        r.check(&[]),
        &[
            ("turn udp", "the host has another TURN secret"),
            ("turn tls", "the host has another TURN secret"),
        ],
    );
    on_host(
        &coturn,
        &format!("cat /tmp/turn-secret.good > /var/lib/venue/secrets/turn-secret && {RESTART}"),
    );

    // --- The BBB server with another secret.
    let bbb = r.netns("bbb");
    on_host(
        &bbb,
        &format!("cp /var/lib/venue/secrets/bbb-secret /tmp/bbb-secret.good && chmod 600 /var/lib/venue/secrets/bbb-secret && echo another-secret > /var/lib/venue/secrets/bbb-secret && {RESTART}"),
    );
    let cause = "checksumError: the host has another secret";
    assert_found(
        r.check(&[]),
        &[
            ("bbb api", cause),
            ("bbb meeting", cause),
            ("load", cause),
            // The portal cannot open the BBB room either, and says so (502
            // from its create, or 503 once its poll saw the server fail).
            ("portal join", "gave no Join URL: HTTP 50"),
        ],
    );
    on_host(
        &bbb,
        &format!("cat /tmp/bbb-secret.good > /var/lib/venue/secrets/bbb-secret && {RESTART}"),
    );

    // --- The portal down (nginx still answers, with 502).
    let portal = r.netns("portal");
    on_host(&portal, "kill $(cat /var/lib/venue/run/portal.pid)");
    assert_found(
        r.check(&[]),
        &[
            ("portal healthz", "HTTP 502"),
            ("portal login page", "HTTP 502"),
            ("portal join", "HTTP 502"),
        ],
    );
    on_host(&portal, RESTART);
    let (code, report, stderr) = r.check(&[]);
    assert_eq!(code, Some(0), "repaired: {stderr} {:#?}", failed(&report));

    // --- --watch: coturn stops, then comes back.
    watch_sees_coturn_stop_and_recover(&r, &coturn);

    // --- A certificate about to expire on the portal host.
    expiring_certificate(&r, &portal);

    // --- After `venue down`, nothing answers.
    ok(&venue_cmd(
        &r.url,
        &r.env,
        &["down", &r.event, "--state", &r.state, "--yes", "--discard"],
    )
    .output()
    .unwrap());
    let (code, report, stderr) = r.check(&[]);
    assert_eq!(code, Some(1), "{stderr}");
    // The records went with the servers: every name fails to resolve.
    let f = failed(&report);
    let dns: Vec<_> = f.iter().filter(|(_, p, _)| p.starts_with("dns ")).collect();
    assert_eq!(dns.len(), 5, "{f:#?}");
    for (_, _, message) in dns {
        assert!(
            message.contains("has no address") && message.contains(&r.resolver),
            "{message}"
        );
    }
    let _ = std::fs::remove_dir_all(&r.dir);
}

/// Sets the A record of `rel` (in example.org) through the fake's API, as
/// someone with the zone's token could; returns the value it had.
fn set_a_record(url: &str, rel: &str, value: &str) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = reqwest::Client::new();
        let zones: Value = c
            .get(format!("{url}/zones?name=example.org"))
            .bearer_auth("fake-token")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = zones["zones"][0]["id"].clone();
        let set = format!("{url}/zones/{id}/rrsets/{rel}/A");
        let before: Value = c
            .get(&set)
            .bearer_auth("fake-token")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let old = before["rrset"]["records"][0]["value"]
            .as_str()
            .unwrap_or_else(|| panic!("no A record at {set}: {before}"))
            .to_owned();
        let r = c
            .post(format!("{set}/actions/set_records"))
            .bearer_auth("fake-token")
            .json(&serde_json::json!({"records": [{"value": value}]}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        old
    })
}

fn watch_sees_coturn_stop_and_recover(r: &Rehearsal, coturn: &str) {
    let interval = Duration::from_secs(3);
    let mut child = venue_cmd(
        &r.url,
        &r.env,
        &[
            "check",
            &r.event,
            "--state",
            &r.state,
            "--resolver",
            &r.resolver,
            "--watch",
            "3",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let (tx, rx) = mpsc::channel::<(Instant, String)>();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send((Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    let wait_for = |what: &str, within: Duration| -> (Instant, String) {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok((at, line)) if line.contains(what) => return (at, line),
                Ok(_) => {}
                Err(_) => panic!("--watch printed no `{what}` within {within:?}"),
            }
        }
    };
    wait_for("probes passed", Duration::from_secs(60));

    let broken = Instant::now();
    on_host(coturn, "kill $(cat /var/lib/venue/run/coturn.pid)");
    let (at, line) = wait_for("failing", interval * 4);
    // The next round starts within one interval; the round itself takes a
    // few seconds here (the probe ticket goes over SSH).
    assert!(
        at - broken <= interval + Duration::from_secs(8),
        "failure reported after {:?}: {line}",
        at - broken
    );
    assert!(line.contains("coturn on testbed-coturn-1"), "{line}");

    let fixed = Instant::now();
    on_host(coturn, RESTART);
    let (at, line) = loop {
        let (at, line) = wait_for("recovered", interval * 4);
        if line.contains("turn udp") {
            break (at, line);
        }
    };
    assert!(
        at - fixed <= interval + Duration::from_secs(8),
        "recovery reported after {:?}: {line}",
        at - fixed
    );
    let _ = child.kill();
    let _ = child.wait();
}

fn expiring_certificate(r: &Rehearsal, portal: &str) {
    // A CA of the test's own (trusted beside Pebble's root), and a
    // certificate for the portal's names that ends tomorrow.
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "check e2e CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca, rcgen::KeyPair::generate().unwrap()).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut leaf =
        rcgen::CertificateParams::new(vec![DOMAIN.to_owned(), format!("*.{DOMAIN}")]).unwrap();
    let end = (chrono::Utc::now() + chrono::Duration::days(1)).date_naive();
    use chrono::Datelike;
    leaf.not_after = rcgen::date_time_ymd(end.year(), end.month() as u8, end.day() as u8);
    let cert = leaf.signed_by(&key, &ca).unwrap();
    let roots = r.dir.join("roots.pem");
    let pebble_root = r
        .env
        .iter()
        .find(|(k, _)| *k == "VENUE_CHECK_ROOT")
        .unwrap()
        .1
        .clone();
    std::fs::write(
        &roots,
        std::fs::read_to_string(pebble_root).unwrap() + "\n" + &ca.pem(),
    )
    .unwrap();
    let staged = r.dir.join("short.pem");
    std::fs::write(&staged, cert.pem() + &key.serialize_pem()).unwrap();
    // The host's tls-watch reloads nginx when the chain changes.
    on_host(
        portal,
        &format!(
            "cd /var/lib/venue/secrets && cp tls-fullchain.pem /tmp/chain.good && cp tls-key.pem /tmp/key.good && \
             chmod 600 tls-fullchain.pem tls-key.pem && \
             printf '%s' '{}' > tls-key.pem && printf '%s' '{}' > tls-fullchain.pem.new && mv tls-fullchain.pem.new tls-fullchain.pem",
            key.serialize_pem(),
            cert.pem()
        ),
    );
    let mut env = r.env.clone();
    env.retain(|(k, _)| *k != "VENUE_CHECK_ROOT");
    env.push(("VENUE_CHECK_ROOT", roots.display().to_string()));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = venue_cmd(
            &r.url,
            &env,
            &[
                "check",
                &r.event,
                "--state",
                &r.state,
                "--resolver",
                &r.resolver,
                "--json",
            ],
        )
        .output()
        .unwrap();
        let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let f = failed(&report);
        let tls: Vec<_> = f.iter().filter(|(_, p, _)| p.starts_with("tls ")).collect();
        if tls.len() == 2 {
            assert_eq!(out.status.code(), Some(1));
            for (host, _, message) in tls {
                assert!(
                    message.contains(&format!("portal on {host} (10.233."))
                        && message.contains("expires in 0 days"),
                    "{message}"
                );
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the short-lived certificate was never reported: {f:#?}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    on_host(
        portal,
        "cd /var/lib/venue/secrets && cat /tmp/key.good > tls-key.pem && cat /tmp/chain.good > tls-fullchain.pem",
    );
}
