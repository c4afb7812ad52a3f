//! The whole rehearsal, as an organiser runs it: fake-hcloud whose servers
//! are real test hosts (network namespaces with sshd and their own /nix),
//! `venue up hosts/testbed/event.toml` renting and deploying the toy
//! systems, `venue status`, a re-deploy that copies nothing, and `venue
//! down` removing the hosts. Needs root, Nix, sshd, iproute2.

mod common;

use common::ok;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use venue_testbed::netns::NetnsHosts;
use venue_testbed::{FakeCloud, FakeConfig};

fn venue(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_venue"))
        .args(args)
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
    let event = common::example_event("testbed");
    let e = event.to_str().unwrap();
    let state = dir.join("state");
    let s = state.to_str().unwrap();

    // up: rent and deploy.
    let up = venue(&url, &["up", e, "--state", s]);
    let mut logs =
        String::from_utf8_lossy(&up.stdout).into_owned() + &String::from_utf8_lossy(&up.stderr);
    let table = ok(&up);
    let fleet: Value =
        serde_json::from_str(&std::fs::read_to_string(state.join("fleet.json")).unwrap()).unwrap();
    let servers = fleet["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 3, "{fleet}");
    let mut names: Vec<String> = servers
        .iter()
        .map(|v| v["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["testbed-coturn-1", "testbed-jitsi-1", "testbed-portal-1"]
    );
    assert_eq!(hosts.names(), names, "every server is a running test host");
    for server in servers {
        let address = server["ipv4"].as_str().unwrap();
        let (code, body) = http_get(address, "/healthz");
        assert_eq!(code, 200, "{address}");
        assert!(body.starts_with(server["name"].as_str().unwrap()), "{body}");
        assert!(table.contains(address), "{table}");
    }
    assert_eq!(table.matches(" healthy ").count(), 3, "{table}");

    // status: the hosts with their addresses.
    let status: Value = serde_json::from_str(&ok(&venue(&url, &["status", e, "--json"]))).unwrap();
    let listed = status["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "server")
        .count();
    assert_eq!(listed, 3, "{status}");
    let status_text = status.to_string();
    for server in servers {
        assert!(
            status_text.contains(server["ipv4"].as_str().unwrap()),
            "{status}"
        );
    }

    // A re-deploy of the unchanged fleet copies no store path.
    let again = venue(&url, &["deploy", e, "--state", s, "--json"]);
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

    // down: nothing left, and the namespaces are gone.
    let namespaces: Vec<String> = names
        .iter()
        .map(|n| hosts.with_host(n, |h| h.netns.clone()).unwrap())
        .collect();
    ok(&venue(&url, &["down", e, "--yes", "--state", s]));
    assert_eq!(fake.with_state(|s| s.servers().len()), 0);
    assert!(hosts.names().is_empty());
    let left = netns_list();
    for ns in namespaces {
        assert!(!left.contains(&ns), "{ns} still exists: {left}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
