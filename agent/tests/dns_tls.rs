//! The venue at its names, against fake-hcloud's zones, its own
//! DNS server (read with dig, a real resolver) and Debian's Pebble (a real
//! ACME server that validates DNS-01 through that DNS server): records for
//! every name, one certificate reused across `up`s, a crash mid-order that
//! resumes the same order, `down` removing exactly the event's records, and
//! a zone the token cannot see stopping `up` before anything is rented.
//! Servers here have documentation addresses; testbed_e2e.rs has real hosts
//! serving HTTPS with the certificate.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{ok, Names};
use serde_json::{json, Value};
use venue_testbed::{FakeConfig, FakeHandle};

fn venue_cmd(url: &str, env: &[(&str, String)], args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_venue"));
    c.args(args)
        .env("HCLOUD_ENDPOINT", url)
        .env("HCLOUD_TOKEN", "fake-token")
        .env("VENUE_CLOUD_POLL_MS", "10")
        .env("VENUE_LOG", "debug")
        .stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

fn venue(url: &str, env: &[(&str, String)], args: &[&str]) -> Output {
    venue_cmd(url, env, args).output().expect("run venue")
}

fn rrsets(fake: &FakeHandle) -> Vec<Value> {
    fake.with_state(|s| s.rrsets("example.org"))
}

fn event_rrsets(fake: &FakeHandle) -> Vec<Value> {
    rrsets(fake)
        .into_iter()
        .filter(|r| r["labels"]["venue/event"] == "testbed")
        .collect()
}

fn txt_left(fake: &FakeHandle) -> bool {
    rrsets(fake).iter().any(|r| r["type"] == "TXT")
}

fn fleet(state: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(state.join("fleet.json")).unwrap()).unwrap()
}

fn serial(state: &Path) -> String {
    let pem = std::fs::read_to_string(state.join("tls/fullchain.pem")).unwrap();
    venue_agent::tls::files::inspect(&pem).unwrap().serial
}

#[test]
fn records_for_every_name_one_certificate_reused_and_down_removes_only_the_events_records() {
    let dir = common::scratch("dns-tls");
    let (url, fake) = common::fake();
    let names = Names::start(&fake, &dir);
    let env = names.env();
    // A record someone else made in the zone before the event.
    let (status, _) = fake.with_state(|s| {
        s.answer(
            "POST",
            "/zones/example.org/rrsets",
            &vec![],
            &json!({"name": "www", "type": "A", "ttl": 300, "records": [{"value": "192.0.2.80"}]}),
        )
    });
    assert_eq!(status, 201);
    let event = common::example_event("testbed");
    let e = event.to_str().unwrap();
    let state = dir.join("state");
    let s = state.to_str().unwrap();

    let up = venue(&url, &env, &["up", e, "--no-deploy", "--state", s]);
    let out = ok(&up);
    assert!(out.contains("new from the ACME server"), "{out}");

    // Every host at <name>.<domain>, the portal also at the domain: what a
    // real resolver gets from the zone's DNS server.
    let fleet = fleet(&state);
    assert_eq!(fleet["tls"], true, "{fleet}");
    let servers = fleet["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 4);
    for server in servers {
        let name = format!("{}.testbed.example.org", server["name"].as_str().unwrap());
        assert_eq!(
            names.dig(&name, "A"),
            vec![server["ipv4"].as_str().unwrap()],
            "{name}"
        );
        assert_eq!(
            names.dig(&name, "AAAA"),
            vec![server["ipv6"].as_str().unwrap()],
            "{name}"
        );
        if server["role"] == "portal" {
            assert_eq!(
                names.dig("testbed.example.org", "A"),
                vec![server["ipv4"].as_str().unwrap()]
            );
        }
    }
    let ours = event_rrsets(&fake);
    assert_eq!(ours.len(), 10, "4 hosts and the domain, A and AAAA");
    assert!(ours.iter().all(|r| r["ttl"] == 60), "{ours:?}");
    assert!(!txt_left(&fake), "the challenge record is removed");
    assert!(
        names
            .dig("_acme-challenge.testbed.example.org", "TXT")
            .is_empty(),
        "nothing answers for the challenge name any more"
    );

    // One certificate for the domain and its wildcard, from Pebble, which
    // validated it through the fake's DNS; kept 0600.
    let pem = std::fs::read_to_string(state.join("tls/fullchain.pem")).unwrap();
    let info = venue_agent::tls::files::inspect(&pem).unwrap();
    assert!(info.covers("testbed.example.org"), "{:?}", info.names);
    use std::os::unix::fs::PermissionsExt;
    for f in ["tls/fullchain.pem", "tls/key.pem", "tls/acme-account.json"] {
        let mode = std::fs::metadata(state.join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    assert_eq!(names.pebble.orders(), 1);
    let log = std::fs::read_to_string(&names.pebble.log).unwrap();
    assert!(
        log.contains(&format!(
            "Using custom DNS resolver for ACME challenges: {}",
            names.dns
        )),
        "Pebble resolves through the fake's DNS"
    );

    // A second `up` reuses it: no new ACME order.
    let first = serial(&state);
    let again = ok(&venue(&url, &env, &["up", e, "--no-deploy", "--state", s]));
    assert!(again.contains("(reused)"), "{again}");
    assert_eq!(names.pebble.orders(), 1, "no second order");
    assert_eq!(serial(&state), first);

    // status lists the records.
    let status: Value =
        serde_json::from_str(&ok(&venue(&url, &env, &["status", e, "--json"]))).unwrap();
    assert_eq!(status["dns"].as_array().unwrap().len(), 10, "{status}");

    // down removes exactly the event's records; the other one stays.
    ok(&venue(
        &url,
        &env,
        &["down", e, "--yes", "--discard", "--state", s],
    ));
    assert!(event_rrsets(&fake).is_empty());
    assert_eq!(names.dig("www.example.org", "A"), vec!["192.0.2.80"]);
    assert!(names.dig("testbed.example.org", "A").is_empty());
    let left: Vec<(String, String)> = rrsets(&fake)
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().into(),
                r["type"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        left,
        vec![
            ("@".into(), "NS".into()),
            ("@".into(), "SOA".into()),
            ("www".into(), "A".into())
        ]
    );
    common::assert_spec_clean(&fake);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_crash_between_the_challenge_record_and_the_certificate_resumes_the_same_order() {
    let dir = common::scratch("dns-tls-crash");
    let (url, fake) = common::fake();
    let names = Names::start(&fake, &dir);
    let env = names.env();
    let event = common::example_event("testbed");
    let e = event.to_str().unwrap();
    let state = dir.join("state");
    let s = state.to_str().unwrap();

    let mut child = venue_cmd(&url, &env, &["up", e, "--no-deploy", "--state", s])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Once the address records are there, actions slow down, so that the
    // challenge record's action is still running when we kill.
    let started = Instant::now();
    let mut slowed = false;
    loop {
        let sets = rrsets(&fake);
        if !slowed
            && sets
                .iter()
                .filter(|r| r["labels"]["venue/event"] == "testbed")
                .count()
                >= 10
        {
            fake.set_action_duration(Duration::from_secs(3));
            slowed = true;
        }
        if sets.iter().any(|r| r["type"] == "TXT") {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "venue ended before writing the challenge record"
        );
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no challenge record"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        txt_left(&fake),
        "killed with the challenge record in the zone"
    );
    assert!(state.join("tls/pending-order.json").exists());
    assert!(!state.join("tls/fullchain.pem").exists());
    assert_eq!(names.pebble.orders(), 1);

    fake.set_action_duration(Duration::from_millis(common::ACTION_MS));
    let out = ok(&venue(&url, &env, &["up", e, "--no-deploy", "--state", s]));
    assert!(out.contains("new from the ACME server"), "{out}");
    assert_eq!(names.pebble.orders(), 1, "the same order, not a second one");
    assert!(!txt_left(&fake), "no challenge record left");
    assert!(!state.join("tls/pending-order.json").exists());
    let pem = std::fs::read_to_string(state.join("tls/fullchain.pem")).unwrap();
    assert!(venue_agent::tls::files::inspect(&pem)
        .unwrap()
        .covers("testbed.example.org"));
    let journal = std::fs::read_to_string(state.join("journal.jsonl")).unwrap();
    assert!(journal.contains("tls: resuming order"), "{journal}");
    common::assert_spec_clean(&fake);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_zone_the_token_cannot_see_is_one_clear_error_and_nothing_is_rented() {
    let dir = common::scratch("dns-tls-zone");
    // A fake whose project has no zone example.org.
    let (url, fake) = common::fake_with(FakeConfig {
        action_duration: Duration::from_millis(common::ACTION_MS),
        ..FakeConfig::default()
    });
    let event = common::example_event("testbed");
    let e = event.to_str().unwrap();
    let state = dir.join("state");
    let out = venue(
        &url,
        &[],
        &["up", e, "--no-deploy", "--state", state.to_str().unwrap()],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains("DNS zone example.org is not visible to the token in HCLOUD_TOKEN"),
        "{stderr}"
    );
    assert_eq!(common::held_count(&fake, "testbed"), 0);
    let writes: Vec<String> = fake
        .exchanges()
        .iter()
        .filter(|x| x.method != "GET")
        .map(|x| format!("{} {}", x.method, x.path))
        .collect();
    assert!(writes.is_empty(), "nothing is created: {writes:?}");

    // A zone kept in another project: its token from `[dns] token_env`.
    let text = std::fs::read_to_string(&event).unwrap().replace(
        "zone = \"example.org\"",
        "zone = \"example.org\"\ntoken_env = \"VENUE_TEST_DNS_TOKEN\"",
    );
    let other = dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    for file in ["systems.nix", "installer.nix"] {
        std::fs::copy(event.with_file_name(file), other.join(file)).unwrap();
    }
    std::fs::write(other.join("event.toml"), text).unwrap();
    let o = other.join("event.toml");
    let o = o.to_str().unwrap();
    let out = venue(&url, &[], &["up", o, "--no-deploy"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("token_env names VENUE_TEST_DNS_TOKEN, which is not set"),
        "{stderr}"
    );
    let wrong = [("VENUE_TEST_DNS_TOKEN", "not-the-token".to_owned())];
    let out = venue(&url, &wrong, &["up", o, "--no-deploy"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("the token in VENUE_TEST_DNS_TOKEN was refused"),
        "{stderr}"
    );
    assert_eq!(common::held_count(&fake, "testbed"), 0);

    // The same with the zone in place but a host name taken by a record
    // that is not the event's: refused before renting, the record intact.
    fake.with_state(|s| {
        s.add_zone("example.org");
        s.answer(
            "POST",
            "/zones/example.org/rrsets",
            &vec![],
            &json!({"name": "testbed-bbb-1.testbed", "type": "A", "records": [{"value": "192.0.2.7"}]}),
        )
    });
    let out = venue(
        &url,
        &[],
        &["up", e, "--no-deploy", "--state", state.to_str().unwrap()],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("testbed-bbb-1.testbed.example.org A (192.0.2.7)"),
        "{stderr}"
    );
    assert_eq!(common::held_count(&fake, "testbed"), 0);
    assert_eq!(rrsets(&fake).len(), 3, "SOA, NS and the other's record");
    common::assert_spec_clean(&fake);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_organisers_own_certificate_is_used_instead_of_acme() {
    let dir = common::scratch("dns-tls-own");
    let (url, fake) = common::fake();
    let event = common::example_event("testbed");
    // No [dns]: no zone, no ACME; the certificate comes from [tls].
    let text = std::fs::read_to_string(&event)
        .unwrap()
        .replace("[dns]\nzone = \"example.org\"\n", "")
        + "\n[tls]\ncertificate = \"own/fullchain.pem\"\nkey = \"own/key.pem\"\n";
    assert!(!text.contains("[dns]"));
    std::fs::write(&event, text).unwrap();
    let own = event.with_file_name("own");
    std::fs::create_dir_all(&own).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec![
        "testbed.example.org".to_owned(),
        "*.testbed.example.org".to_owned(),
    ])
    .unwrap()
    .self_signed(&key)
    .unwrap();
    std::fs::write(own.join("fullchain.pem"), cert.pem()).unwrap();
    std::fs::write(own.join("key.pem"), key.serialize_pem()).unwrap();

    let state = dir.join("state");
    let e = event.to_str().unwrap();
    let out = ok(&venue(
        &url,
        &[],
        &["up", e, "--no-deploy", "--state", state.to_str().unwrap()],
    ));
    assert!(out.contains("(from [tls] certificate)"), "{out}");
    assert_eq!(
        std::fs::read_to_string(state.join("tls/fullchain.pem")).unwrap(),
        cert.pem()
    );
    assert_eq!(
        std::fs::read_to_string(state.join("tls/key.pem")).unwrap(),
        key.serialize_pem()
    );
    assert_eq!(fleet(&state)["tls"], true, "the hosts use it");
    assert!(fake.with_state(|s| s.zones()).is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}
