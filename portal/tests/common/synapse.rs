//! A real Synapse for the tests, from the virtualenv that
//! scripts/install-deps makes (/opt/venue-synapse, or $VENUE_SYNAPSE_VENV),
//! with the portal as its OpenID Connect provider; and the SSO login of a
//! ticket holder driven like a browser without JavaScript.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::client;
use super::oidc::{query, Browser, CLIENT_ID};

/// Where Element (or any Matrix client) would receive the login token.
/// Nothing listens there: the chain stops at the redirect to it.
pub const CLIENT_URL: &str = "http://127.0.0.1:9/element/";

/// A Matrix ID or alias as one URL path segment: `#!@:` escaped, and a
/// space as `%20` (not form encoding's `+`, which a path keeps literally).
pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub fn venv() -> Option<PathBuf> {
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

/// A Synapse module that stops the homeserver dead, as a crash or a
/// `kill -9` would, while it builds the event named in its trigger file
/// ("TYPE N": the Nth event of TYPE from then on; the file is removed
/// first, so it fires once).
const CRASH_MODULE: &str = r#"
import os


class CrashAt:
    def __init__(self, config, api):
        self._trigger = config["trigger"]
        self._seen = 0
        api.register_third_party_rules_callbacks(check_event_allowed=self.check)

    @staticmethod
    def parse_config(config):
        return config

    async def check(self, event, state_events):
        try:
            with open(self._trigger) as f:
                kind, nth = f.read().split()
        except FileNotFoundError:
            return True, None
        if event.type == kind:
            self._seen += 1
            if self._seen == int(nth):
                os.remove(self._trigger)
                os._exit(137)
        return True, None
"#;

/// The configuration that loads the crash module (into `extra` of
/// `Synapse::start`), and its trigger file.
pub fn crash_module(dir: &Path) -> (Value, PathBuf) {
    let trigger = dir.join("crash-at");
    (
        json!([{"module": "venue_crash.CrashAt", "config": {"trigger": trigger}}]),
        trigger,
    )
}

pub struct Synapse {
    child: Child,
    pub url: String,
    log: PathBuf,
    python: PathBuf,
    configs: [PathBuf; 2],
    dir: PathBuf,
}

impl Drop for Synapse {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Synapse {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Its exit status, once it has stopped.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Starts it again on the same configuration and database (stopping
    /// it first if it runs); returns once its client API answers.
    pub async fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn(&self.python, &self.configs, &self.dir, &self.log);
        self.ready().await;
    }

    async fn ready(&mut self) {
        let c = client();
        let deadline = Instant::now() + Duration::from_secs(45);
        loop {
            if let Ok(r) = c
                .get(format!("{}/_matrix/client/versions", self.url))
                .send()
                .await
            {
                if r.status() == 200 {
                    return;
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("synapse exited ({status}): {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "synapse did not answer in 45 s: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Generates a config (keys, secrets), overrides it with ours (and then
    /// with `extra`, an object of top-level keys) and starts Synapse;
    /// returns once its client API answers.
    pub async fn start(
        venv: &Path,
        dir: &Path,
        port: u16,
        issuer: &str,
        secret_file: &Path,
        extra: Value,
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
        let mut ours = ours;
        for (k, v) in extra.as_object().expect("extra is an object") {
            ours[k] = v.clone();
        }
        // Synapse reads YAML, and JSON is YAML.
        let ours_file = dir.join("venue.yaml");
        std::fs::write(&ours_file, serde_json::to_string_pretty(&ours).unwrap()).unwrap();
        std::fs::write(dir.join("venue_crash.py"), CRASH_MODULE).unwrap();
        let log = dir.join("synapse.log");
        let configs = [generated, ours_file];
        let mut s = Synapse {
            child: spawn(&python, &configs, dir, &log),
            url,
            log,
            python,
            configs,
            dir: dir.to_owned(),
        };
        s.ready().await;
        s
    }
}

/// Runs Synapse on `configs` in `dir`, its log appended to `log` (a
/// restart keeps what the last run said), its modules found in `dir`.
fn spawn(python: &Path, configs: &[PathBuf; 2], dir: &Path, log: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let mut cmd = Command::new(python);
    cmd.args(["-m", "synapse.app.homeserver", "-c"])
        .arg(&configs[0])
        .arg("-c")
        .arg(&configs[1])
        .current_dir(dir)
        .env("PYTHONPATH", dir)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.join("synapse.out")).unwrap())
        .stderr(log);
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
    cmd.spawn().expect("start synapse")
}

/// The whole chain for one ticket holder: Synapse's SSO redirect, the
/// portal's authorize and ticket login, Synapse's callback, and the login
/// token. Returns the redirect that ends it (to CLIENT_URL) or the page
/// where it stopped.
pub async fn sso(
    s: &Synapse,
    b: &mut Browser,
    c: &reqwest::Client,
    email: &str,
    code: &str,
) -> super::oidc::Page {
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
pub async fn matrix_login(
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
