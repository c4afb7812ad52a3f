//! A portal with `[chat]` on a real Synapse (common::synapse): the
//! homeserver with the deployment's settings the portal relies on, the
//! portal as its OIDC provider, a Matrix client, and polling.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{json, Value};

use super::oidc::{Provider, CLIENT_SECRET};
use super::synapse::{enc, Synapse};
use super::TempDir;

/// The homeserver's server name in the tests.
pub const SERVER: &str = "venue.test";

/// A stream URL for a portal whose test plays none.
pub const NO_STREAM: &str = "http://127.0.0.1:9/hls";

/// A Matrix client for one user.
pub struct Mx {
    pub c: reqwest::Client,
    pub url: String,
    pub token: String,
}

impl Mx {
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .c
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }
    /// The status of `whoami`: 200 while the token works, 401 once it ended.
    pub async fn whoami(&self) -> u16 {
        self.get("/_matrix/client/v3/account/whoami").await.0
    }
    pub async fn join(&self, room: &str) -> (u16, Value) {
        self.call(
            reqwest::Method::POST,
            &format!("/_matrix/client/v3/join/{}", enc(room)),
            Some(json!({})),
        )
        .await
    }
    pub async fn joined_rooms(&self) -> Vec<String> {
        let (_, v) = self.get("/_matrix/client/v3/joined_rooms").await;
        v["joined_rooms"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r.as_str().map(str::to_owned))
            .collect()
    }
    pub async fn messages(&self, room: &str) -> Vec<Value> {
        let (s, v) = self
            .get(&format!(
                "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=50",
                enc(room)
            ))
            .await;
        assert_eq!(s, 200, "messages of {room}: {v}");
        v["chunk"].as_array().cloned().unwrap_or_default()
    }
    pub async fn topic(&self, room: &str) -> String {
        let (_, v) = self
            .get(&format!(
                "/_matrix/client/v3/rooms/{}/state/m.room.topic/",
                enc(room)
            ))
            .await;
        v["topic"].as_str().unwrap_or_default().to_owned()
    }
    pub async fn send(&self, room: &str, body: &str) {
        let (s, v) = self
            .call(
                reqwest::Method::PUT,
                &format!(
                    "/_matrix/client/v3/rooms/{}/send/m.room.message/{}",
                    enc(room),
                    Utc::now().timestamp_nanos_opt().unwrap()
                ),
                Some(json!({"msgtype": "m.text", "body": body})),
            )
            .await;
        assert_eq!(s, 200, "send: {v}");
    }
}

/// Polls `check` every 100 ms until it gives Some, for at most `secs`.
pub async fn until<T, F, Fut>(what: &str, secs: u64, log: impl Fn() -> String, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {secs} s waiting for {what}\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn alias(local: &str) -> String {
    format!("#{local}:{SERVER}")
}

/// A real Synapse on `sport` whose OIDC provider is the portal on `pport`,
/// with the deployment's settings the portal relies on; and the file of
/// its registration secret.
pub async fn homeserver(venv: &Path, dir: &TempDir, sport: u16, pport: u16) -> (Synapse, PathBuf) {
    homeserver_with(venv, dir, sport, pport, json!({})).await
}

/// `homeserver`, with more top-level settings (`extra`, an object).
pub async fn homeserver_with(
    venv: &Path,
    dir: &TempDir,
    sport: u16,
    pport: u16,
    extra: Value,
) -> (Synapse, PathBuf) {
    let synapse_dir = dir.path().join("synapse");
    std::fs::create_dir_all(&synapse_dir).unwrap();
    let reg_secret = dir.write(
        "registration-secret",
        &format!(
            "{}\n",
            conference::protocol::hex(&portal::random_bytes::<24>())
        ),
    );
    let client_secret = dir.write("oidc-client-secret", &format!("{CLIENT_SECRET}\n"));
    let mut settings = json!({
            // The bot is registered with the shared secret from a file,
            // and the homeserver's own user search is off (the portal's
            // directory is the opt-in one).
            "registration_shared_secret": null,
            "registration_shared_secret_path": reg_secret,
            "user_directory": {"enabled": false},
            "rc_message": {"per_second": 100, "burst_count": 100},
            "rc_joins": {"local": {"per_second": 100, "burst_count": 100}},
    });
    for (k, v) in extra.as_object().expect("extra is an object") {
        settings[k] = v.clone();
    }
    let s = Synapse::start(
        venv,
        &synapse_dir,
        sport,
        &format!("http://127.0.0.1:{pport}"),
        &client_secret,
        settings,
    )
    .await;
    (s, reg_secret)
}

/// The portal on `pport` for `event`, its chat on `s`, one sync pass every
/// `interval` seconds (and when woken), its stream at `hls`.
pub fn chat_portal(
    dir: &TempDir,
    s: &Synapse,
    pport: u16,
    event: &Path,
    reg_secret: &Path,
    interval: &str,
    hls: &str,
) -> Provider {
    Provider::start_with(
        dir,
        &format!("{}/_synapse/client/oidc/callback", s.url),
        event,
        &format!(
            "[stream]\nurls = [\"{hls}\"]\n\
             [chat]\nhomeserver_url = \"{}\"\nserver_name = \"{SERVER}\"\n\
             registration_shared_secret_file = \"{}\"\nsync_interval_seconds = {interval}\n",
            s.url,
            reg_secret.display()
        ),
        pport,
    )
}
