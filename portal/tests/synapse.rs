//! Ticket holders log in to a real Synapse through the portal's OpenID
//! Connect provider, with no password: the SSO redirect chain is driven
//! like a browser without JavaScript (redirects and cookies only).
//!
//! Synapse comes from the virtualenv that scripts/install-deps makes
//! (/opt/venue-synapse, or $VENUE_SYNAPSE_VENV). Outside CI the test skips
//! without it; in CI (CI set) it fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::oidc::{free_port, query, Browser, Provider, CLIENT_ID};
use common::{client, TempDir};
use serde_json::{json, Value};

/// Where Element (or any Matrix client) would receive the login token.
/// Nothing listens there: the chain stops at the redirect to it.
const CLIENT_URL: &str = "http://127.0.0.1:9/element/";

fn venv() -> Option<PathBuf> {
    let dir = std::env::var_os("VENUE_SYNAPSE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/venue-synapse"));
    if dir.join("bin/python").exists() {
        return Some(dir);
    }
    let msg = format!(
        "the Synapse test needs a virtualenv with matrix-synapse at {} (scripts/install-deps makes it)",
        dir.display()
    );
    assert!(std::env::var_os("CI").is_none(), "{msg}");
    eprintln!("SKIPPED: {msg}");
    None
}

struct Synapse {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Drop for Synapse {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Synapse {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Generates a config (keys, secrets), overrides it with ours and starts
    /// Synapse; returns once its client API answers.
    async fn start(
        venv: &Path,
        dir: &Path,
        port: u16,
        issuer: &str,
        secret_file: &Path,
    ) -> Synapse {
        let python = venv.join("bin/python");
        let generated = dir.join("generated.yaml");
        let out = Command::new(&python)
            .args([
                "-m",
                "synapse.app.homeserver",
                "--server-name",
                "venue.test",
                "--report-stats=no",
                "--generate-config",
            ])
            .arg("--config-path")
            .arg(&generated)
            .arg("--data-directory")
            .arg(dir)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "synapse --generate-config: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let log_config = dir.join("log.yaml");
        std::fs::write(
            &log_config,
            "version: 1\nformatters: {plain: {format: '%(asctime)s %(name)s %(levelname)s %(message)s'}}\n\
             handlers: {console: {class: logging.StreamHandler, formatter: plain}}\n\
             root: {level: INFO, handlers: [console]}\ndisable_existing_loggers: false\n",
        )
        .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let ours = json!({
            "public_baseurl": format!("{url}/"),
            "listeners": [{
                "port": port, "bind_addresses": ["127.0.0.1"], "type": "http", "tls": false,
                "x_forwarded": false, "resources": [{"names": ["client"], "compress": false}]
            }],
            "database": {"name": "sqlite3", "args": {"database": dir.join("homeserver.db")}},
            "log_config": log_config,
            "media_store_path": dir.join("media"),
            "enable_registration": false,
            "password_config": {"enabled": false},
            // No federation: no federation listener, no server allowed, no key servers.
            "federation_domain_whitelist": [],
            "trusted_key_servers": [],
            "suppress_key_server_warning": true,
            "report_stats": false,
            "rc_login": {
                "address": {"per_second": 100, "burst_count": 100},
                "account": {"per_second": 100, "burst_count": 100},
                "failed_attempts": {"per_second": 100, "burst_count": 100}
            },
            // The client that receives the login token is trusted: no "continue to" page.
            "sso": {"client_whitelist": [CLIENT_URL]},
            "oidc_providers": [{
                "idp_id": "venue",
                "idp_name": "Event ticket",
                "issuer": issuer,
                "client_id": CLIENT_ID,
                "client_secret_path": secret_file,
                "client_auth_method": "client_secret_basic",
                "scopes": ["openid", "profile"],
                "pkce_method": "always",
                // The test's issuer is http on loopback; Synapse's discovery
                // check insists on https unless told to skip it.
                "skip_verification": true,
                "user_mapping_provider": {"config": {
                    "localpart_template": "{{ user.preferred_username }}",
                    "display_name_template": "{{ user.name }}"
                }}
            }]
        });
        // Synapse reads YAML, and JSON is YAML.
        let ours_file = dir.join("venue.yaml");
        std::fs::write(&ours_file, serde_json::to_string_pretty(&ours).unwrap()).unwrap();
        let log = dir.join("synapse.log");
        let mut cmd = Command::new(&python);
        cmd.args(["-m", "synapse.app.homeserver", "-c"])
            .arg(&generated)
            .arg("-c")
            .arg(&ours_file)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join("synapse.out")).unwrap())
            .stderr(std::fs::File::create(&log).unwrap());
        for v in [
            "http_proxy",
            "https_proxy",
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "all_proxy",
            "ALL_PROXY",
        ] {
            cmd.env_remove(v);
        }
        let mut s = Synapse {
            child: cmd.spawn().expect("start synapse"),
            url,
            log,
        };
        let c = client();
        let deadline = Instant::now() + Duration::from_secs(45);
        loop {
            if let Ok(r) = c
                .get(format!("{}/_matrix/client/versions", s.url))
                .send()
                .await
            {
                if r.status() == 200 {
                    return s;
                }
            }
            if let Ok(Some(status)) = s.child.try_wait() {
                panic!("synapse exited ({status}): {}", s.log());
            }
            assert!(
                Instant::now() < deadline,
                "synapse did not answer in 45 s: {}",
                s.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The whole chain for one ticket holder: Synapse's SSO redirect, the
/// portal's authorize and ticket login, Synapse's callback, and the login
/// token. Returns the redirect that ends it (to CLIENT_URL) or the page
/// where it stopped.
async fn sso(
    s: &Synapse,
    b: &mut Browser,
    c: &reqwest::Client,
    email: &str,
    code: &str,
) -> common::oidc::Page {
    let start = format!(
        "{}/_matrix/client/v3/login/sso/redirect/oidc-venue?redirectUrl={}",
        s.url,
        form_urlencoded::byte_serialize(CLIENT_URL.as_bytes()).collect::<String>()
    );
    let page = b.follow(c, &start, CLIENT_URL).await;
    if page.status == 200 && page.url.contains("/login") {
        b.log_in(c, &page, email, code, CLIENT_URL).await
    } else {
        page
    }
}

/// Logs in through SSO; returns (user_id, access_token).
async fn matrix_login(
    s: &Synapse,
    b: &mut Browser,
    c: &reqwest::Client,
    email: &str,
    code: &str,
) -> (String, String) {
    let page = sso(s, b, c, email, code).await;
    let back = page.location.clone().unwrap_or_else(|| {
        panic!(
            "SSO for {email} ended at {} ({}): {}\n{}",
            page.url,
            page.status,
            page.body,
            s.log()
        )
    });
    assert!(back.starts_with(CLIENT_URL), "SSO ended at {back}");
    let token = query(&back).remove("loginToken").expect("a loginToken");
    let r: Value = c
        .post(format!("{}/_matrix/client/v3/login", s.url))
        .json(&json!({"type": "m.login.token", "token": token}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (
        r["user_id"]
            .as_str()
            .unwrap_or_else(|| panic!("login: {r}"))
            .to_owned(),
        r["access_token"].as_str().unwrap().to_owned(),
    )
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

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
