//! The whole rehearsal, as an organiser runs it: fake-hcloud whose servers
//! are real test hosts (network namespaces with sshd and their own /nix),
//! `venue up hosts/testbed/event.toml` renting and deploying the toy
//! systems, `venue status`, a re-deploy that copies nothing, and `venue
//! down` removing the hosts. The event's names are in the fake's zone and
//! resolve through its DNS; its certificate comes from Pebble, and every
//! host serves HTTPS with it. Needs root, Nix, sshd, iproute2, pebble, dig.

mod common;

use common::{ok, Names};

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use venue_testbed::netns::NetnsHosts;
use venue_testbed::{FakeCloud, FakeConfig};

fn venue(url: &str, env: &[(&str, String)], args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_venue"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("HCLOUD_ENDPOINT", url)
        .env("HCLOUD_TOKEN", "fake-token")
        .env("VENUE_CLOUD_POLL_MS", "10")
        // Debug logs: the secrets must not be in them either.
        .env("VENUE_LOG", "debug")
        .env("NIX_CONFIG", "experimental-features = nix-command flakes\nsandbox = false\nbuild-users-group =\nsubstituters =")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run venue")
}

fn http_get(address: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(
        &format!("{address}:80").parse().unwrap(),
        Duration::from_secs(3),
    )
    .unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let code = answer.split_whitespace().nth(1).unwrap().parse().unwrap();
    (
        code,
        answer.split("\r\n\r\n").nth(1).unwrap_or("").to_owned(),
    )
}

/// GET https://<name>/healthz at `address`, trusting only `root`: the
/// body, or the error (with its causes).
fn https_get(name: &str, address: &str, root: &[u8]) -> Result<String, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(root).unwrap())
            .resolve(name, format!("{address}:443").parse().unwrap())
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        // The HTTPS server starts with the switch: give it a moment.
        let mut last = String::new();
        for _ in 0..50 {
            match client.get(format!("https://{name}/healthz")).send().await {
                Ok(r) => return Ok(r.text().await.unwrap()),
                Err(e) => {
                    let mut msg = e.to_string();
                    let mut src = std::error::Error::source(&e);
                    while let Some(s) = src {
                        msg.push_str(&format!(": {s}"));
                        src = s.source();
                    }
                    // Connection refused: not listening yet. Anything else is the answer.
                    if !msg.contains("onnection refused") {
                        return Err(msg);
                    }
                    last = msg;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(last)
    })
}

/// The serial (upper-case hex) of the certificate `<host>.testbed.example.org` serves at `ip`.
fn served_serial(host: &str, ip: &str) -> String {
    let name = format!("{host}.testbed.example.org");
    for _ in 0..50 {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "openssl s_client -connect {ip}:443 -servername {name} </dev/null 2>/dev/null | openssl x509 -noout -serial"
            ))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        if let Some(serial) = text.trim().strip_prefix("serial=") {
            // Without leading zeros: DER adds a 00 byte to a serial whose
            // high bit is set, which openssl does not print.
            return serial.to_uppercase().trim_start_matches('0').to_owned();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{name} at {ip} serves no certificate");
}

fn netns_list() -> String {
    String::from_utf8(
        Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
}

#[test]
fn up_deploys_healthy_hosts_status_lists_them_down_removes_them() {
    let dir = common::scratch("testbed-e2e");
    let hosts = Arc::new(
        NetnsHosts::new(&dir.join("hosts"))
            .expect("test hosts need root: run as root after scripts/install-deps"),
    );
    let (url, fake) = FakeCloud::start(FakeConfig {
        action_duration: Duration::from_millis(50),
        hook: hosts.clone(),
        ..FakeConfig::default()
    });
    let names_ = Names::start(&fake, &dir);
    let env = names_.env();
    let event = common::example_event("testbed");
    let e = event.to_str().unwrap();
    let state = dir.join("state");
    let s = state.to_str().unwrap();

    // up: rent and deploy.
    let up = venue(&url, &env, &["up", e, "--state", s]);
    let mut logs =
        String::from_utf8_lossy(&up.stdout).into_owned() + &String::from_utf8_lossy(&up.stderr);
    let table = ok(&up);
    let fleet: Value =
        serde_json::from_str(&std::fs::read_to_string(state.join("fleet.json")).unwrap()).unwrap();
    let servers = fleet["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 4, "{fleet}");
    let mut names: Vec<String> = servers
        .iter()
        .map(|v| v["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "testbed-bbb-1",
            "testbed-coturn-1",
            "testbed-jitsi-1",
            "testbed-portal-1"
        ]
    );
    assert_eq!(hosts.names(), names, "every server is a running test host");
    for server in servers {
        let address = server["ipv4"].as_str().unwrap();
        let (code, body) = http_get(address, "/healthz");
        assert_eq!(code, 200, "{address}");
        assert!(body.starts_with(server["name"].as_str().unwrap()), "{body}");
        assert!(table.contains(address), "{table}");
    }
    // Installed with their secrets, the hosts may run healthy from their
    // first boot: deploy then finds them unchanged.
    assert_eq!(
        table.matches(" healthy ").count() + table.matches(" unchanged ").count(),
        4,
        "{table}"
    );

    // HTTPS at every name, resolved through the zone's DNS, with a chain
    // that verifies against Pebble's root (and only that root).
    let pebble_root = std::fs::read(&names_.pebble.issuer_root).unwrap();
    for server in servers {
        let name = format!("{}.testbed.example.org", server["name"].as_str().unwrap());
        let resolved = names_.dig(&name, "A");
        assert_eq!(resolved, vec![server["ipv4"].as_str().unwrap()], "{name}");
        let body = https_get(&name, &resolved[0], &pebble_root).unwrap();
        assert!(body.starts_with(server["name"].as_str().unwrap()), "{body}");
        if server["role"] == "portal" {
            let apex = names_.dig("testbed.example.org", "A");
            let body = https_get("testbed.example.org", &apex[0], &pebble_root).unwrap();
            assert!(body.starts_with(server["name"].as_str().unwrap()), "{body}");
        }
    }
    // The name is checked too: a name the certificate does not cover fails.
    let some = servers[0]["ipv4"].as_str().unwrap();
    let wrong = https_get("venue.example.net", some, &pebble_root).unwrap_err();
    assert!(wrong.contains("certificate"), "{wrong}");

    // status: the hosts with their addresses.
    let status: Value =
        serde_json::from_str(&ok(&venue(&url, &env, &["status", e, "--json"]))).unwrap();
    let listed = status["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "server")
        .count();
    assert_eq!(listed, 4, "{status}");
    let status_text = status.to_string();
    for server in servers {
        assert!(
            status_text.contains(server["ipv4"].as_str().unwrap()),
            "{status}"
        );
    }

    // A re-deploy of the unchanged fleet copies no store path.
    let again = venue(&url, &env, &["deploy", e, "--state", s, "--json"]);
    logs += &(String::from_utf8_lossy(&again.stdout).into_owned()
        + &String::from_utf8_lossy(&again.stderr));
    let again: Value = serde_json::from_str(&ok(&again)).unwrap();
    for r in again.as_array().unwrap() {
        assert_eq!(r["outcome"], "unchanged", "{r}");
        assert_eq!(r["copied_paths"], 0, "{r}");
    }

    // The secrets are in no log and in no host's store.
    let secrets: Value =
        serde_json::from_str(&std::fs::read_to_string(state.join("secrets.json")).unwrap())
            .unwrap();
    for value in secrets.as_object().unwrap().values() {
        let value = value.as_str().unwrap();
        assert!(!logs.contains(value), "a secret is in the output of venue");
        for name in &names {
            let store = hosts.with_host(name, |h| h.dir.join("nix/store")).unwrap();
            let hit = Command::new("grep")
                .args(["-rqF", value])
                .arg(&store)
                .status()
                .unwrap();
            // grep: 1 = searched, not found; 0 = found; 2 = could not search.
            assert_eq!(
                hit.code(),
                Some(1),
                "a secret is in {name}'s store, or it could not be searched"
            );
        }
    }

    // Neither the certificate's key nor the ACME account's key is in a log
    // or in any host's store (grep exits 1), and grep does search there (a
    // planted marker is found: exit 0).
    let key_line = std::fs::read_to_string(state.join("tls/key.pem"))
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .to_owned();
    let account: Value = serde_json::from_str(
        &std::fs::read_to_string(state.join("tls/acme-account.json")).unwrap(),
    )
    .unwrap();
    let account_key = account["credentials"]["key_pkcs8"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(key_line.len() > 40 && account_key.len() > 40);
    let log_file = dir.join("venue.log");
    std::fs::write(&log_file, &logs).unwrap();
    let grep = |needle: &str, path: &std::path::Path| {
        Command::new("grep")
            .args(["-rqF", needle])
            .arg(path)
            .status()
            .unwrap()
            .code()
    };
    let marker = "venue-planted-marker-7f3a";
    let first_store = hosts
        .with_host(&names[0], |h| h.dir.join("nix/store"))
        .unwrap();
    std::fs::write(first_store.join("planted"), marker).unwrap();
    std::fs::write(dir.join("venue.log.planted"), marker).unwrap();
    assert_eq!(
        grep(marker, &first_store),
        Some(0),
        "grep searches the store"
    );
    assert_eq!(grep(marker, &dir.join("venue.log.planted")), Some(0));
    std::fs::remove_file(first_store.join("planted")).unwrap();
    for needle in [&key_line, &account_key] {
        assert_eq!(
            grep(needle, &log_file),
            Some(1),
            "a key is in venue's output"
        );
        for name in &names {
            let store = hosts.with_host(name, |h| h.dir.join("nix/store")).unwrap();
            assert_eq!(grep(needle, &store), Some(1), "a key is in {name}'s store");
        }
    }

    // A renewed certificate reaches the running hosts with `venue deploy`:
    // without one in the state directory, `up --no-deploy` orders a new one;
    // `deploy` (nothing else changed) gets every host to serve it.
    let old_serial = served_serial(
        servers[0]["name"].as_str().unwrap(),
        servers[0]["ipv4"].as_str().unwrap(),
    );
    std::fs::remove_file(state.join("tls/fullchain.pem")).unwrap();
    ok(&venue(&url, &env, &["up", e, "--no-deploy", "--state", s]));
    assert_eq!(names_.pebble.orders(), 2);
    let pem = std::fs::read_to_string(state.join("tls/fullchain.pem")).unwrap();
    let new_serial = venue_agent::tls::files::inspect(&pem)
        .unwrap()
        .serial
        .replace(':', "")
        .to_uppercase()
        .trim_start_matches('0')
        .to_owned();
    assert_ne!(new_serial, old_serial);
    let deployed: Value = serde_json::from_str(&ok(&venue(
        &url,
        &env,
        &["deploy", e, "--state", s, "--json"],
    )))
    .unwrap();
    for r in deployed.as_array().unwrap() {
        assert_eq!(r["copied_paths"], 0, "only the certificate changed: {r}");
    }
    for server in servers {
        let name = server["name"].as_str().unwrap();
        let ip = server["ipv4"].as_str().unwrap();
        assert_eq!(
            served_serial(name, ip),
            new_serial,
            "{name} serves the new certificate"
        );
        https_get(&format!("{name}.testbed.example.org"), ip, &pebble_root).unwrap();
    }

    // down: nothing left, and the namespaces are gone.
    let namespaces: Vec<String> = names
        .iter()
        .map(|n| hosts.with_host(n, |h| h.netns.clone()).unwrap())
        .collect();
    ok(&venue(&url, &env, &["down", e, "--yes", "--state", s]));
    assert!(
        names_.dig("testbed.example.org", "A").is_empty(),
        "the event's records are gone"
    );
    assert_eq!(fake.with_state(|s| s.servers().len()), 0);
    assert!(hosts.names().is_empty());
    let left = netns_list();
    for ns in namespaces {
        assert!(!left.contains(&ns), "{ns} still exists: {left}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
