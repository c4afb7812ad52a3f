//! The chat role on the rehearsal: `venue up` of hosts/testbed/chat-event.toml
//! (BigBlueButton, TURN, the real portal, and the chat host: the real
//! Synapse on Debian's PostgreSQL, hosts/testbed/services), then
//!
//! - `venue check` passes every probe, the chat's among them (discovery, the
//!   login flows, a probe ticket's SSO login and message);
//! - a ticket holder logs in through the portal (SSO) and posts in a session
//!   room the portal made, and another ticket holder reads it;
//! - a revoked ticket cannot log in again and its Matrix session ends (the
//!   portal's sync deactivates it); someone without a ticket cannot log in;
//! - `venue down` archives Synapse's database (a pg_dump with the accounts
//!   but no login token) and every room's history (rooms.json, with
//!   the message in it), both in the manifest with their sums, before it
//!   deletes the servers.
//!
//! Needs root, Nix, sshd, iproute2, pebble, nginx, coturn, PostgreSQL, jq,
//! curl, the Synapse virtualenv (scripts/install-deps), and the built
//! venue-portal and fake-bbb (`cargo build --bins`).

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use venue_agent::check::chat::{sso_login, Matrix};
use venue_testbed::netns::NetnsHosts;
use venue_testbed::{FakeCloud, FakeConfig};

const DOMAIN: &str = "testbed.example.org";
const CHAT: &str = "https://chat.testbed.example.org";

/// Synapse's virtualenv, or None (the test is skipped) outside CI.
fn synapse_venv() -> Option<PathBuf> {
    let dir = std::env::var_os("VENUE_SYNAPSE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/venue-synapse"));
    if dir.join("bin/python").exists() {
        return Some(dir);
    }
    let msg = format!(
        "the chat rehearsal runs Synapse from {} (scripts/install-deps makes it)",
        dir.display()
    );
    assert!(std::env::var_os("CI").is_none(), "{msg}");
    eprintln!("SKIPPED: {msg}");
    None
}

fn fleet_address(state: &Path, role: &str) -> (String, String) {
    let fleet: Value =
        serde_json::from_str(&std::fs::read_to_string(state.join("fleet.json")).unwrap()).unwrap();
    let s = fleet["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["role"] == role)
        .unwrap_or_else(|| panic!("no {role} in {fleet}"));
    (
        s["name"].as_str().unwrap().to_owned(),
        s["ipv4"].as_str().unwrap().to_owned(),
    )
}

/// A browser of the event: the chat's and the portal's names at their
/// hosts, Pebble's roots trusted besides the web's.
fn browser(state: &Path, roots: &[&Path]) -> reqwest::Client {
    let (_, chat) = fleet_address(state, "chat");
    let (_, portal) = fleet_address(state, "portal");
    let extra: Vec<(String, Vec<u8>)> = roots
        .iter()
        .map(|r| (r.display().to_string(), std::fs::read(r).unwrap()))
        .collect();
    let tls = venue_agent::check::tls::config_with(&extra).unwrap();
    reqwest::Client::builder()
        .use_preconfigured_tls((*tls).clone())
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .resolve(
            &format!("chat.{DOMAIN}"),
            format!("{chat}:443").parse().unwrap(),
        )
        .resolve(DOMAIN, format!("{portal}:443").parse().unwrap())
        .build()
        .unwrap()
}

/// The end of the portal's log on its host.
fn portal_log(netns: &str) -> String {
    let out = common::on_test_host(netns, "tail -n 40 /var/lib/venue/run/portal.log", "");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn chat_rehearsal_logs_ticket_holders_in_and_archives_the_rooms() {
    if synapse_venv().is_none() {
        return;
    }
    let t0 = Instant::now();
    let dir = common::scratch("chat-e2e");
    let hosts = Arc::new(
        NetnsHosts::new(&dir.join("hosts"))
            .expect("test hosts need root: run as root after scripts/install-deps"),
    );
    let (url, fake) = FakeCloud::start(FakeConfig {
        action_duration: Duration::from_millis(50),
        hook: hosts.clone(),
        ..FakeConfig::default()
    });
    let names = common::Names::start(&fake, &dir);
    let mut env = names.env();
    // The root that signs what Pebble issues: the hosts' certificates, which
    // `venue check` and the chat host's Synapse (systems.nix) trust.
    env.push((
        "VENUE_CHECK_ROOT",
        names.pebble.issuer_root.display().to_string(),
    ));
    // The scratch copy of hosts/testbed is outside the repository.
    env.push((
        "VENUE_TESTBED_CHAT_EXPORT",
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../modules/chat-export-rooms.sh")
            .canonicalize()
            .unwrap()
            .display()
            .to_string(),
    ));
    let event_dir = common::example_event("testbed")
        .parent()
        .unwrap()
        .to_owned();
    let event = event_dir.join("chat-event.toml").display().to_string();
    let state = dir.join("state");
    let s = state.display().to_string();
    let venue = |args: &[&str]| common::testbed_venue(&url, &env, args).output().unwrap();

    // --- up: four hosts, the chat's Synapse logging in through the portal.
    let started = Instant::now();
    common::ok(&venue(&["up", &event, "--state", &s]));
    let up_time = started.elapsed();
    let (chat_host, chat_ip) = fleet_address(&state, "chat");
    eprintln!(
        "venue up (with {chat_host} at {chat_ip}): {:.1} s",
        up_time.as_secs_f64()
    );

    // --- every probe passes, the chat's included.
    let started = Instant::now();
    let out = venue(&[
        "check",
        &event,
        "--state",
        &s,
        "--resolver",
        &names.dns.to_string(),
        "--json",
    ]);
    let check_time = started.elapsed();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert!(
        out.status.success() && report["ok"] == true,
        "venue check: {report:#}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let probes = report["probes"].as_array().unwrap();
    for want in ["chat discovery", "chat login flows", "chat message"] {
        let p = probes
            .iter()
            .find(|p| p["probe"] == want && p["host"] == chat_host.as_str())
            .unwrap_or_else(|| panic!("no {want} probe of {chat_host}: {report:#}"));
        assert_eq!(p["ok"], true, "{p}");
    }
    for name in [format!("chat.{DOMAIN}"), format!("{chat_host}.{DOMAIN}")] {
        assert!(
            probes
                .iter()
                .any(|p| p["probe"] == format!("dns {name}") && p["ok"] == true),
            "no passing dns probe of {name}: {report:#}"
        );
    }
    let message = probes
        .iter()
        .find(|p| p["probe"] == "chat message")
        .unwrap();
    eprintln!(
        "venue check: {} probes in {:.1} s; chat message: {} s, {}",
        probes.len(),
        check_time.as_secs_f64(),
        message["seconds"],
        message["message"]
    );

    // --- Synapse stopped behind nginx: exactly the chat's probes fail, with
    // nginx's 502; the host's activation starts it again.
    let chat_ns = hosts.with_host(&chat_host, |h| h.netns.clone()).unwrap();
    let out = common::on_test_host(&chat_ns, "kill $(cat /var/lib/venue/run/synapse.pid)", "");
    assert!(out.status.success(), "{out:?}");
    let out = venue(&[
        "check",
        &event,
        "--state",
        &s,
        "--resolver",
        &names.dns.to_string(),
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1), "a failed probe exits 1");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut failed: Vec<(String, String, String)> = report["probes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["ok"] == false)
        .map(|p| {
            (
                p["host"].as_str().unwrap().to_owned(),
                p["probe"].as_str().unwrap().to_owned(),
                p["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    failed.sort();
    let probes: Vec<&str> = failed.iter().map(|(_, p, _)| p.as_str()).collect();
    assert_eq!(
        probes,
        ["chat discovery", "chat login flows", "chat message"],
        "{failed:#?}"
    );
    for (host, _, message) in &failed {
        assert_eq!(host, &chat_host);
        assert!(
            message.contains(&format!("chat on {chat_host} ({chat_ip})"))
                && message.contains("502"),
            "{message}"
        );
    }
    let out = common::on_test_host(
        &chat_ns,
        "sh /nix/var/nix/profiles/system/services/bin/start",
        "",
    );
    assert!(
        out.status.success(),
        "restarting the chat host's services: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // --- ticket holders log in through the portal and talk.
    let client = browser(
        &state,
        &[&names.pebble.acme_root, &names.pebble.issuer_root],
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let text = format!("Hello from Ada, {}", std::process::id());
    let portal_ns = {
        let (name, _) = fleet_address(&state, "portal");
        hosts.with_host(&name, |h| h.netns.clone()).unwrap()
    };
    // Ada's login outlives the block: the archive must not hold its token.
    let ada = rt.block_on(async {
        let started = Instant::now();
        let ada = sso_login(&client, CHAT, "ada@example.org", "ada1-2345-6789")
            .await
            .unwrap_or_else(|e| panic!("Ada's SSO login: {e}"));
        let sso_time = started.elapsed();
        assert!(
            ada.user_id.starts_with("@ada.lovelace") && ada.user_id.ends_with(&format!(":{DOMAIN}")),
            "{ada:?}"
        );
        let ada_m = Matrix {
            client: &client,
            base: CHAT,
            token: &ada.access_token,
        };
        // The portal's sync makes the session room (public) from the event.
        let alias = format!("#main-stage:{DOMAIN}");
        let deadline = Instant::now() + Duration::from_secs(60);
        let room = loop {
            match ada_m.join(&alias).await {
                Ok(room) => break room,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("waiting for {alias}: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => panic!(
                    "{alias} never became joinable: {e}\nthe portal's log:\n{}",
                    portal_log(&portal_ns)
                ),
            }
        };
        let sent = ada_m.send_text(&room, &text).await.unwrap();

        let grace = sso_login(&client, CHAT, "grace@example.org", "grace-2345-6789")
            .await
            .unwrap_or_else(|e| panic!("Grace's SSO login: {e}"));
        assert_ne!(grace.user_id, ada.user_id);
        let grace_m = Matrix {
            client: &client,
            base: CHAT,
            token: &grace.access_token,
        };
        assert_eq!(grace_m.join(&alias).await.unwrap(), room);
        let latest = grace_m.latest(&room, 20).await.unwrap();
        assert!(
            latest.iter().any(|(id, body)| *id == sent && *body == text),
            "Grace does not read Ada's message: {latest:?}"
        );
        eprintln!(
            "Ada's SSO login {:.2} s; Grace reads her message in {alias}",
            sso_time.as_secs_f64()
        );

        // A revoked ticket: no new login, and the session it has ends. The
        // portal deactivates the Matrix users its sync has seen: wait for it
        // to see Grace's (a ticket revoked before that keeps its account).
        let seen = common::eventually(30, || {
            let out = common::on_test_host(
                &portal_ns,
                "python3 -c 'import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute(\"SELECT count(*) FROM chat_users WHERE user_id = ?\", (sys.argv[2],)).fetchone()[0])' /var/lib/venue/portal/portal.sqlite \"$(cat)\"",
                &grace.user_id,
            );
            String::from_utf8_lossy(&out.stdout).trim() == "1"
        });
        assert!(
            seen,
            "the portal's sync never mapped {}: {}",
            grace.user_id,
            portal_log(&portal_ns)
        );
        let out = common::on_test_host(
            &portal_ns,
            "PATH=/nix/var/nix/profiles/system/sw/bin:$PATH venue-portal-ctl tickets revoke grace@example.org",
            "",
        );
        assert!(out.status.success(), "revoke: {out:?}");
        let refused = sso_login(&client, CHAT, "grace@example.org", "grace-2345-6789")
            .await
            .expect_err("a revoked ticket logs in");
        assert!(refused.contains("the portal refused the ticket"), "{refused}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match grace_m.get("/_matrix/client/v3/account/whoami").await {
                Err(e) if e.contains("401") => break,
                r if Instant::now() < deadline => {
                    let _ = r;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                r => panic!(
                    "the revoked ticket's Matrix session still works: {r:?}\n{}",
                    portal_log(&portal_ns)
                ),
            }
        }
        // Ada is unaffected.
        ada_m.get("/_matrix/client/v3/account/whoami").await.unwrap();

        // Someone without a ticket.
        let stranger = sso_login(&client, CHAT, "mallory@example.org", "0000-0000-0000")
            .await
            .expect_err("a stranger logs in");
        assert!(stranger.contains("the portal refused the ticket"), "{stranger}");
        // Password login is off altogether.
        let r = client
            .post(format!("{CHAT}/_matrix/client/v3/login"))
            .json(&serde_json::json!({
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": "ada.lovelace"},
                "password": "ada1-2345-6789"
            }))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_client_error(), "password login: {}", r.status());
        ada
    });

    // --- down: the chat's database and rooms archived, then nothing left.
    let started = Instant::now();
    common::ok(&venue(&["down", &event, "--yes", "--state", &s]));
    let down_time = started.elapsed();
    let archive = state.join("archive");
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(archive.join("manifest.json")).unwrap())
            .unwrap();
    for name in ["synapse.pgdump", "rooms.json"] {
        let local = archive.join(&chat_host).join(name);
        let entry = manifest["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["host"] == chat_host.as_str() && e["path"] == name)
            .unwrap_or_else(|| panic!("{name} is not in the manifest: {manifest:#}"));
        assert_eq!(entry["sha256"], common::sha256_hex(&local), "{name}");
        assert_eq!(
            entry["size"],
            std::fs::metadata(&local).unwrap().len(),
            "{name}"
        );
    }
    let dump_path = archive.join(&chat_host).join("synapse.pgdump");
    let dump = std::fs::read(&dump_path).unwrap();
    assert!(
        dump.starts_with(b"PGDMP"),
        "not a pg_dump custom-format archive"
    );
    // The dump holds the accounts but no login token (modules/chat.nix
    // leaves out the data of the tables that hold them): not Ada's, whose
    // session is still valid.
    let restore = |args: &[&str]| -> String {
        let out = std::process::Command::new("pg_restore")
            .args(args)
            .arg("--file=-")
            .arg(&dump_path)
            .output()
            .expect("pg_restore (Debian's postgresql)");
        assert!(
            out.status.success(),
            "pg_restore {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    // pg_restore -t prints no data for a table the dump lacks either: the
    // table is there, and so is the data of the others.
    let schema = restore(&["--schema-only", "--table=access_tokens"]);
    assert!(
        schema.contains("CREATE TABLE public.access_tokens"),
        "no access_tokens table in the dump: {schema}"
    );
    let users = restore(&["--data-only", "--table=users"]);
    assert!(
        users.contains(&ada.user_id),
        "{} is not in the dump's users: {users}",
        ada.user_id
    );
    let tokens = restore(&["--data-only", "--table=access_tokens"]);
    assert!(
        !tokens.contains("COPY public.access_tokens"),
        "the archived dump holds access_tokens' rows"
    );
    // Nor anywhere else: Synapse also keeps a session's token in user_ips
    // and as a cache key in its invalidation stream.
    let data = restore(&["--data-only"]);
    assert!(
        !data.contains(&ada.access_token),
        "Ada's access token is in the archived dump: {}",
        data.lines()
            .filter(|l| l.contains(&ada.access_token) || l.starts_with("COPY "))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let rooms: Value = serde_json::from_str(
        &std::fs::read_to_string(archive.join(&chat_host).join("rooms.json")).unwrap(),
    )
    .unwrap();
    let stage = rooms["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["alias"] == format!("#main-stage:{DOMAIN}"))
        .unwrap_or_else(|| panic!("no main-stage room in rooms.json: {rooms:#}"));
    assert!(
        stage["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "m.room.message" && e["content"]["body"] == text.as_str()),
        "Ada's message is not in the archived room: {stage:#}"
    );
    assert_eq!(
        common::held_count(&fake, "testbed"),
        0,
        "down left resources"
    );
    eprintln!(
        "venue down (archive and delete): {:.1} s; rooms.json {} rooms; whole test {:.1} s",
        down_time.as_secs_f64(),
        rooms["rooms"].as_array().unwrap().len(),
        t0.elapsed().as_secs_f64()
    );
    drop(names);
    let _ = std::fs::remove_dir_all(&dir);
}
