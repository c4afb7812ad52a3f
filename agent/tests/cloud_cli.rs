//! `venue up`, `status`, `down` as a user runs them, against fake-hcloud.

mod common;

use std::collections::BTreeSet;
use std::process::{Command, Output};

use reqwest::Method;
use serde_json::{json, Value};

use common::*;

fn venue(url: &str, token: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_venue"))
        .args(args)
        .env("HCLOUD_ENDPOINT", url)
        .env("HCLOUD_TOKEN", token)
        .env("VENUE_CLOUD_BACKOFF_MS", "2")
        .env("VENUE_CLOUD_POLL_MS", "10")
        .env_remove("VENUE_LOG")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run venue")
}

/// Resources of others made before `up`: another event's server and
/// primary IP, and an unlabelled server and primary IP.
fn others(url: &str, token: &str) {
    let c = client(url, token);
    venue_agent::runtime::block_on(async {
        for (name, labels) in [
            (
                "other-bbb-1",
                json!({"venue/event": "other-2021", "venue/role": "bbb"}),
            ),
            ("hand-made", json!({})),
        ] {
            let body = json!({"name": name, "server_type": "cx23", "image": "ubuntu-24.04", "location": "fsn1", "labels": labels});
            c.request(Method::POST, "/servers", &[], Some(&body))
                .await
                .unwrap();
        }
        for (name, labels) in [
            ("other-ip", json!({"venue/event": "other-2021"})),
            ("loose-ip", json!({})),
        ] {
            let body = json!({"name": name, "type": "ipv4", "assignee_type": "server", "location": "fsn1", "auto_delete": false, "labels": labels});
            c.request(Method::POST, "/primary_ips", &[], Some(&body))
                .await
                .unwrap();
        }
    });
}

#[test]
fn up_status_down_rent_exactly_the_plan_and_give_back_only_the_event() {
    let (url, fake) = fake();
    let token = fake.token();
    let event = example_event("lpc-2020");
    let e = event.to_str().unwrap();
    others(&url, &token);

    // What `venue plan` says, with the same (live) prices.
    let plan: Value =
        serde_json::from_str(&ok(&venue(&url, &token, &["plan", e, "--json"]))).unwrap();
    assert_eq!(
        plan["prices"]["source"], "api",
        "plan reads live prices when a token is set"
    );
    let mut expected = BTreeSet::new();
    for g in plan["servers"].as_array().unwrap() {
        for n in 1..=g["count"].as_u64().unwrap() {
            expected.insert((
                format!("lpc-2020-{}-{n}", g["role"].as_str().unwrap()),
                g["role"].as_str().unwrap().to_owned(),
                g["server_type"].as_str().unwrap().to_owned(),
                g["location"].as_str().unwrap().to_owned(),
            ));
        }
    }
    assert!(expected.len() >= 3);

    let out = ok(&venue(&url, &token, &["up", e, "--no-deploy"]));
    let (servers, ips, fws, keys) = held(&fake, "lpc-2020");
    let got: BTreeSet<(String, String, String, String)> = servers
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_owned(),
                s["labels"]["venue/role"].as_str().unwrap().to_owned(),
                s["server_type"]["name"].as_str().unwrap().to_owned(),
                s["location"]["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(got, expected, "up creates exactly the plan's servers");
    assert_eq!(servers.len(), expected.len());
    assert!(servers
        .iter()
        .all(|s| s["status"] == "running" && s["image"]["name"] == "ubuntu-24.04"));
    assert_eq!(
        ips.len(),
        2 * expected.len(),
        "both addresses of every server are labelled"
    );
    assert_eq!((fws.len(), keys.len()), (1, 1));
    let ports: BTreeSet<String> = fws[0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{}/{}",
                r["port"].as_str().unwrap(),
                r["protocol"].as_str().unwrap()
            )
        })
        .collect();
    for p in [
        "22/tcp",
        "80/tcp",
        "443/tcp",
        "3478/tcp",
        "3478/udp",
        "5349/tcp",
        "49152-65535/udp",
        "10000/udp",
        "16384-32768/udp",
    ] {
        assert!(ports.contains(p), "firewall opens {p}: {ports:?}");
    }
    for name in expected.iter().map(|x| &x.0) {
        assert!(
            out.contains(name.as_str()),
            "the table names {name}:\n{out}"
        );
    }

    // fleet.json, in the shape the flake reads.
    let state = event.parent().unwrap().join(".venue/lpc-2020");
    let fleet: Value =
        serde_json::from_str(&std::fs::read_to_string(state.join("fleet.json")).unwrap()).unwrap();
    assert_eq!(fleet["event"], "lpc-2020");
    assert_eq!(fleet["domain"], "lpc.example.org");
    assert_eq!(
        fleet["acme_email"], "contact@lpc.example.org",
        "the mailto: contact is the ACME account's address"
    );
    let rented: Vec<&Value> = fleet["servers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["static"] == false)
        .collect();
    assert_eq!(rented.len(), expected.len());
    for s in &rented {
        let keys: BTreeSet<&str> = s.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            BTreeSet::from([
                "name",
                "role",
                "server_type",
                "location",
                "ipv4",
                "ipv6",
                "static"
            ])
        );
        assert!(s["ipv4"]
            .as_str()
            .unwrap()
            .parse::<std::net::Ipv4Addr>()
            .is_ok());
        assert!(s["ipv6"]
            .as_str()
            .unwrap()
            .parse::<std::net::Ipv6Addr>()
            .is_ok());
    }
    // Keys: private halves 0600 in a 0700 directory, host keys in user_data.
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&state).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let host_key = state.join("hosts/lpc-2020-bbb-1/ssh_host_ed25519_key");
    assert_eq!(
        std::fs::metadata(&host_key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let key_text = std::fs::read_to_string(&host_key).unwrap();
    assert!(!out.contains("PRIVATE KEY"), "no private key in the output");
    let sent = fake
        .exchanges()
        .into_iter()
        .find(|x| {
            x.method == "POST"
                && x.path == "/servers"
                && x.request
                    .as_ref()
                    .is_some_and(|r| r["name"] == "lpc-2020-bbb-1")
        })
        .unwrap();
    let user_data = sent.request.unwrap()["user_data"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(user_data.starts_with("#cloud-config\n"));
    assert!(
        user_data.contains(key_text.lines().nth(1).unwrap()),
        "user_data carries the host key"
    );

    // A second `up` adopts everything and creates nothing.
    let before = fake.with_state(|s| s.servers().len());
    let again = ok(&venue(&url, &token, &["up", e, "--no-deploy", "--json"]));
    let again: Value = serde_json::from_str(&again).unwrap();
    assert_eq!(again["created"].as_array().unwrap().len(), 0);
    assert_eq!(fake.with_state(|s| s.servers().len()), before);

    // status lists them all.
    let status: Value =
        serde_json::from_str(&ok(&venue(&url, &token, &["status", e, "--json"]))).unwrap();
    let listed: BTreeSet<String> = status["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "server")
        .map(|r| r["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, expected.iter().map(|x| x.0.clone()).collect());
    assert!(status["cost_so_far_micro_eur"].as_u64().unwrap() > 0);
    assert_eq!(status["price_source"], "api");
    let text = ok(&venue(&url, &token, &["status", e]));
    assert!(
        text.contains("venue-lpc-2020") && text.contains("cost so far"),
        "{text}"
    );

    // down: without --yes and without a terminal it refuses and deletes nothing.
    let refused = venue(&url, &token, &["down", e]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--yes"));
    let dry = ok(&venue(&url, &token, &["down", e, "--dry-run"]));
    assert!(dry.contains("nothing deleted"));
    assert_eq!(held(&fake, "lpc-2020").0.len(), expected.len());

    // These servers are the API's alone (no test hosts): nothing to archive.
    let down = ok(&venue(&url, &token, &["down", e, "--yes", "--discard"]));
    assert!(down.contains("Final cost"), "{down}");
    assert_eq!(held_count(&fake, "lpc-2020"), 0, "the event holds nothing");
    let names: BTreeSet<String> = fake.with_state(|s| {
        s.servers()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_owned())
            .collect()
    });
    assert_eq!(
        names,
        BTreeSet::from(["other-bbb-1".to_owned(), "hand-made".to_owned()]),
        "others' servers stay"
    );
    let ips: BTreeSet<String> = fake.with_state(|s| {
        s.primary_ips()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect()
    });
    assert!(
        ips.contains("other-ip") && ips.contains("loose-ip"),
        "others' addresses stay: {ips:?}"
    );
    assert!(ok(&venue(&url, &token, &["status", e])).contains("nothing in the cloud"));

    assert_spec_clean(&fake);
}

#[test]
fn a_wrong_token_is_one_clear_error_and_creates_nothing() {
    let (url, fake) = fake();
    let event = example_event("lpc-2020");
    let out = venue(
        &url,
        "not-the-token",
        &["up", event.to_str().unwrap(), "--no-deploy"],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("HCLOUD_TOKEN") && err.contains("unauthorized"),
        "{err}"
    );
    assert_eq!(
        err.lines().filter(|l| l.starts_with("error")).count(),
        1,
        "{err}"
    );
    assert_eq!(fake.requests(), 1, "stopped at the first refusal");
    let counts = fake.with_state(|s| {
        (
            s.servers().len(),
            s.ssh_keys().len(),
            s.firewalls().len(),
            s.primary_ips().len(),
        )
    });
    assert_eq!(counts, (0, 0, 0, 0));

    let none = Command::new(env!("CARGO_BIN_EXE_venue"))
        .args(["up", event.to_str().unwrap()])
        .env_remove("HCLOUD_TOKEN")
        .output()
        .unwrap();
    assert!(!none.status.success());
    assert!(String::from_utf8_lossy(&none.stderr).contains("HCLOUD_TOKEN is not set"));
}

#[test]
fn an_event_without_an_acme_address_is_refused_before_renting() {
    let (url, fake) = fake();
    let event = example_event("lpc-2020");
    let text = std::fs::read_to_string(&event).unwrap();
    let without: String = text
        .lines()
        .filter(|l| !l.starts_with("contact"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(text, without, "the example has a contact to remove");
    std::fs::write(&event, without).unwrap();
    let out = venue(&url, &fake.token(), &["up", event.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("[tls] email"), "{err}");
    assert_eq!(fake.requests(), 0, "nothing asked of the cloud");
}

#[test]
fn down_checks_labels_itself_even_when_the_api_ignores_the_selector() {
    let (url, fake) = fake();
    let token = fake.token();
    let event = example_event("lpc-2020");
    let e = event.to_str().unwrap();
    others(&url, &token);
    ok(&venue(&url, &token, &["up", e, "--no-deploy"]));
    // A spare address of the event, unassigned: down deletes it too.
    let c = client(&url, &token);
    venue_agent::runtime::block_on(async {
        let body = json!({"name": "lpc-spare", "type": "ipv4", "assignee_type": "server", "location": "fsn1", "auto_delete": false, "labels": {"venue/event": "lpc-2020"}});
        c.request(Method::POST, "/primary_ips", &[], Some(&body))
            .await
            .unwrap();
    });
    fake.with_state(|s| s.ignore_label_selectors = true);
    let status: Value =
        serde_json::from_str(&ok(&venue(&url, &token, &["status", e, "--json"]))).unwrap();
    let names: Vec<&str> = status["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| ["other-bbb-1", "hand-made", "other-ip", "loose-ip"].contains(n)),
        "{names:?}"
    );
    ok(&venue(&url, &token, &["down", e, "--yes", "--discard"]));
    assert_eq!(held_count(&fake, "lpc-2020"), 0);
    let servers: BTreeSet<String> = fake.with_state(|s| {
        s.servers()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_owned())
            .collect()
    });
    assert_eq!(
        servers,
        BTreeSet::from(["other-bbb-1".to_owned(), "hand-made".to_owned()])
    );
    let ips: BTreeSet<String> = fake.with_state(|s| {
        s.primary_ips()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect()
    });
    assert!(
        ips.contains("other-ip") && ips.contains("loose-ip") && !ips.contains("lpc-spare"),
        "{ips:?}"
    );
}
