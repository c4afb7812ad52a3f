//! Ticket holders log in to a real Synapse through the portal's OpenID
//! Connect provider, with no password: the SSO redirect chain is driven
//! like a browser without JavaScript (redirects and cookies only).
//!
//! Synapse comes from the virtualenv that scripts/install-deps makes
//! (/opt/venue-synapse, or $VENUE_SYNAPSE_VENV). Outside CI the test skips
//! without it; in CI (CI set) it fails.

mod common;

use std::time::Instant;

use common::oidc::{free_port, Browser, Provider};
use common::synapse::{enc, matrix_login, sso, venv, Synapse};
use common::{client, TempDir};
use serde_json::{json, Value};

#[tokio::test]
async fn ticket_holders_chat_on_synapse_and_others_cannot_log_in() {
    let Some(venv) = venv() else { return };
    let t0 = Instant::now();
    let dir = TempDir::new("synapse");
    let synapse_dir = dir.path().join("synapse");
    std::fs::create_dir_all(&synapse_dir).unwrap();
    let port = free_port();
    let p = Provider::start(
        &dir,
        &format!("http://127.0.0.1:{port}/_synapse/client/oidc/callback"),
    );
    let s = Synapse::start(
        &venv,
        &synapse_dir,
        port,
        &p.issuer,
        &dir.path().join("oidc-client-secret"),
        json!({}),
    )
    .await;
    let started = t0.elapsed();
    let c = client();

    // Passwords and registration are off: SSO (and its login token) is the way in.
    let flows: Value = c
        .get(format!("{}/_matrix/client/v3/login", s.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let types: Vec<&str> = flows["flows"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["type"].as_str())
        .collect();
    assert!(
        types.contains(&"m.login.sso") && types.contains(&"m.login.token"),
        "{flows}"
    );
    assert!(!types.contains(&"m.login.password"), "{flows}");
    let reg = c
        .post(format!("{}/_matrix/client/v3/register", s.url))
        .json(&json!({"username": "x", "password": "y"}))
        .send()
        .await
        .unwrap();
    assert_eq!(reg.status(), 403);

    // Ada logs in with her ticket and posts in a room.
    let t1 = Instant::now();
    let mut ada_browser = Browser::default();
    let (ada, ada_token) = matrix_login(
        &s,
        &mut ada_browser,
        &c,
        "ada@example.org",
        "ada-ticket-0001",
    )
    .await;
    let first_login = t1.elapsed();
    assert_eq!(ada, "@ada.lovelace:venue.test");
    let name: Value = c
        .get(format!(
            "{}/_matrix/client/v3/profile/{}/displayname",
            s.url,
            enc(&ada)
        ))
        .bearer_auth(&ada_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(name["displayname"], "Ada Lovelace");
    let room: Value = c
        .post(format!("{}/_matrix/client/v3/createRoom", s.url))
        .bearer_auth(&ada_token)
        .json(&json!({"preset": "public_chat", "name": "Hallway"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let room_id = room["room_id"]
        .as_str()
        .unwrap_or_else(|| panic!("createRoom: {room}"))
        .to_owned();
    let sent = c
        .put(format!(
            "{}/_matrix/client/v3/rooms/{}/send/m.room.message/t1",
            s.url,
            enc(&room_id)
        ))
        .bearer_auth(&ada_token)
        .json(&json!({"msgtype": "m.text", "body": "hello from the hallway"}))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 200);

    // Bob logs in the same way, joins and reads it.
    let mut bob_browser = Browser::default();
    let (bob, bob_token) = matrix_login(
        &s,
        &mut bob_browser,
        &c,
        "bob@example.org",
        "bob-ticket-0002",
    )
    .await;
    assert_eq!(bob, "@bob:venue.test");
    let joined = c
        .post(format!(
            "{}/_matrix/client/v3/join/{}",
            s.url,
            enc(&room_id)
        ))
        .bearer_auth(&bob_token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(joined.status(), 200);
    let msgs: Value = c
        .get(format!(
            "{}/_matrix/client/v3/rooms/{}/messages?dir=b&limit=50",
            s.url,
            enc(&room_id)
        ))
        .bearer_auth(&bob_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let found = msgs["chunk"].as_array().unwrap().iter().any(|e| {
        e["type"] == "m.room.message"
            && e["sender"] == ada.as_str()
            && e["content"]["body"] == "hello from the hallway"
    });
    assert!(found, "Bob reads Ada's message: {msgs}");

    // Logging in again maps to the same Matrix user (the subject is stable).
    let (ada_again, _) = matrix_login(
        &s,
        &mut ada_browser,
        &c,
        "ada@example.org",
        "ada-ticket-0001",
    )
    .await;
    assert_eq!(ada_again, ada);

    // Bob's ticket is revoked: his next login is refused at the portal.
    let (ok, _, err) = common::run(&[
        "tickets",
        "revoke",
        "bob@example.org",
        "--state",
        p.state.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let page = sso(
        &s,
        &mut bob_browser,
        &c,
        "bob@example.org",
        "bob-ticket-0002",
    )
    .await;
    assert_eq!(
        page.status, 401,
        "a revoked ticket's login: {} {}",
        page.url, page.body
    );
    assert!(page.location.is_none());

    // A stranger without a ticket gets no further than the login form.
    let mut stranger = Browser::default();
    let page = sso(
        &s,
        &mut stranger,
        &c,
        "stranger@example.org",
        "no-such-ticket-99",
    )
    .await;
    assert_eq!(page.status, 401);
    assert!(page.location.is_none());
    // Nor does a made-up login token get past Synapse.
    let r = c
        .post(format!("{}/_matrix/client/v3/login", s.url))
        .json(&json!({"type": "m.login.token", "token": "syl_madeup_token"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // The ticket codes went to the portal only, and into no log.
    for log in [p.log(), s.log()] {
        for code in ["ada-ticket-0001", "bob-ticket-0002", "no-such-ticket-99"] {
            assert!(!log.contains(code), "a log contains the ticket code {code}");
        }
    }
    eprintln!(
        "timings: portal and synapse up in {:.1} s, first SSO login {:.2} s, whole test {:.1} s",
        started.as_secs_f64(),
        first_login.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
}
