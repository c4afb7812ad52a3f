//! Jitsi as the portal sees it, polled in the background like BigBlueButton
//! so no page view calls Jitsi:
//!
//! - people per room from prosody's `mod_muc_size` (a plugin of
//!   jitsi-meet-prosody, which nixpkgs' jitsi-meet module puts on prosody's
//!   plugin path): `GET <room_size_url>?room=<room>&domain=<domain>` answers
//!   `{"participants": N}`, or 404 for a room nobody is in;
//! - the load of each videobridge from its private REST API, which nixpkgs'
//!   `services.jitsi-videobridge.colibriRestApi = true` turns on:
//!   `GET http://<bridge>:8080/colibri/stats` answers JSON with
//!   `participants`, `conferences`, `stress_level` and more.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use conference::{Backend, Event};

use crate::bbb::{Health, MISSES_DOWN};
use crate::config::Jitsi;

/// A videobridge's load from `/colibri/stats`.
#[derive(Debug, Clone, Default)]
pub struct BridgeStats {
    pub participants: u64,
    pub conferences: u64,
    /// The bridge's own load estimate (0 idle, 1 at its configured capacity).
    pub stress_level: f64,
    pub largest_conference: u64,
    pub endpoints_sending_video: u64,
}

#[derive(Debug, Clone)]
pub struct Probe<T> {
    pub name: String,
    pub health: Health,
    pub misses: u32,
    pub last_answer: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub value: Option<T>,
}

impl<T> Probe<T> {
    fn new(name: &str) -> Probe<T> {
        Probe {
            name: name.to_owned(),
            health: Health::Unknown,
            misses: 0,
            last_answer: None,
            last_error: None,
            value: None,
        }
    }

    fn record(&mut self, result: Result<T, String>) {
        match result {
            Ok(v) => {
                if self.health != Health::Up {
                    tracing::info!(source = %self.name, "Jitsi statistics answer");
                }
                self.health = Health::Up;
                self.misses = 0;
                self.last_answer = Some(Utc::now());
                self.last_error = None;
                self.value = Some(v);
            }
            Err(e) => {
                self.misses += 1;
                tracing::warn!(source = %self.name, misses = self.misses, error = %e, "Jitsi statistics poll failed");
                self.last_error = Some(e);
                if self.misses >= MISSES_DOWN {
                    self.health = Health::Down;
                    self.value = None;
                }
            }
        }
    }
}

pub struct JitsiMonitor {
    domain: String,
    room_size_url: Option<String>,
    /// Jitsi room names (`<event id>-<slug>`) of the event's Jitsi rooms.
    rooms: Vec<String>,
    bridge_urls: Vec<String>,
    /// People per room, from the last complete round of room-size calls.
    room_sizes: RwLock<Probe<HashMap<String, u64>>>,
    bridges: RwLock<Vec<Probe<BridgeStats>>>,
    client: reqwest::Client,
    polls: AtomicU64,
}

impl JitsiMonitor {
    pub fn new(config: Option<&Jitsi>, event: &Event, timeout: Duration) -> Arc<JitsiMonitor> {
        let rooms = event
            .rooms
            .iter()
            .filter(|r| r.backend == Backend::Jitsi)
            .map(|r| format!("{}-{}", event.id, r.slug))
            .collect();
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("venue-portal/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("an HTTP client");
        Arc::new(JitsiMonitor {
            domain: config.map(|c| c.domain.clone()).unwrap_or_default(),
            room_size_url: config.and_then(|c| c.room_size_url.clone()),
            rooms,
            bridge_urls: config
                .map(|c| c.bridges.iter().map(|b| b.stats_url.clone()).collect())
                .unwrap_or_default(),
            room_sizes: RwLock::new(Probe::new("prosody room-size")),
            bridges: RwLock::new(
                config
                    .map(|c| c.bridges.iter().map(|b| Probe::new(&b.name)).collect())
                    .unwrap_or_default(),
            ),
            client,
            polls: AtomicU64::new(0),
        })
    }

    /// Starts one poll task for the room sizes and one per bridge.
    pub fn spawn_pollers(self: &Arc<Self>, interval: Duration) {
        let every = move |me: Arc<Self>, job: usize| async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                match job {
                    0 => me.poll_rooms().await,
                    i => me.poll_bridge(i - 1).await,
                }
            }
        };
        if self.room_size_url.is_some() && !self.rooms.is_empty() {
            tokio::spawn(every(Arc::clone(self), 0));
        }
        for i in 0..self.bridge_urls.len() {
            tokio::spawn(every(Arc::clone(self), i + 1));
        }
    }

    /// Statistics calls made since the portal started.
    pub fn polls(&self) -> u64 {
        self.polls.load(Ordering::Relaxed)
    }

    async fn get_json(&self, url: &str) -> Result<Option<serde_json::Value>, String> {
        self.polls.fetch_add(1, Ordering::Relaxed);
        let resp = self.client.get(url).send().await.map_err(|e| {
            if e.is_timeout() {
                "timed out".to_owned()
            } else if e.is_connect() {
                "cannot connect".to_owned()
            } else {
                e.to_string()
            }
        })?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(format!("HTTP {status}"));
        }
        resp.json()
            .await
            .map(Some)
            .map_err(|e| format!("not JSON: {e}"))
    }

    async fn poll_rooms(&self) {
        let Some(base) = &self.room_size_url else {
            return;
        };
        let mut sizes = HashMap::new();
        let mut result = Ok(());
        for room in &self.rooms {
            let url = format!(
                "{base}?room={}&domain={}",
                conference::protocol::bbb::encode_component(room),
                conference::protocol::bbb::encode_component(&self.domain)
            );
            match self.get_json(&url).await {
                // mod_muc_size answers 404 for a room that does not exist (nobody in it).
                Ok(None) => {
                    sizes.insert(room.clone(), 0);
                }
                Ok(Some(v)) => match v.get("participants").and_then(serde_json::Value::as_u64) {
                    Some(n) => {
                        sizes.insert(room.clone(), n);
                    }
                    None => {
                        result = Err(format!("room-size of {room}: no participants in {v}"));
                        break;
                    }
                },
                Err(e) => {
                    result = Err(format!("room-size of {room}: {e}"));
                    break;
                }
            }
        }
        self.room_sizes
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .record(result.map(|()| sizes));
    }

    async fn poll_bridge(&self, i: usize) {
        let result = match self.get_json(&self.bridge_urls[i]).await {
            Ok(Some(v)) => parse_stats(&v),
            Ok(None) => Err("HTTP 404 (is colibriRestApi on?)".to_owned()),
            Err(e) => Err(e),
        };
        self.bridges.write().unwrap_or_else(|e| e.into_inner())[i].record(result);
    }

    /// People in Jitsi room `name` at the last poll.
    pub fn room_people(&self, name: &str) -> Option<u64> {
        self.room_sizes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .value
            .as_ref()
            .and_then(|m| m.get(name).copied())
    }

    /// A copy of the room-size probe (for the status page).
    pub fn rooms_probe(&self) -> Option<Probe<HashMap<String, u64>>> {
        self.room_size_url.as_ref().map(|_| {
            self.room_sizes
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
        })
    }

    /// A copy of the bridges' probes.
    pub fn bridges(&self) -> Vec<Probe<BridgeStats>> {
        self.bridges
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Reads the fields the portal shows from a `/colibri/stats` answer.
pub fn parse_stats(v: &serde_json::Value) -> Result<BridgeStats, String> {
    let n = |k: &str| v.get(k).and_then(serde_json::Value::as_u64);
    let Some(participants) = n("participants") else {
        return Err(format!(
            "no participants in the answer: {}",
            v.to_string().chars().take(120).collect::<String>()
        ));
    };
    Ok(BridgeStats {
        participants,
        conferences: n("conferences").unwrap_or(0),
        stress_level: v
            .get("stress_level")
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(0.0),
        largest_conference: n("largest_conference").unwrap_or(0),
        endpoints_sending_video: n("endpoints_sending_video").unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_colibri_stats() {
        let v: serde_json::Value = serde_json::from_str(
            r#"{"inactive_endpoints":0,"conferences":3,"participants":17,"stress_level":0.42,
               "largest_conference":9,"endpoints_sending_video":4,"version":"2.3"}"#,
        )
        .unwrap();
        let s = parse_stats(&v).unwrap();
        assert_eq!(
            (
                s.participants,
                s.conferences,
                s.largest_conference,
                s.endpoints_sending_video
            ),
            (17, 3, 9, 4)
        );
        assert!((s.stress_level - 0.42).abs() < 1e-9);
        assert!(parse_stats(&serde_json::json!({"conferences": 1})).is_err());
    }
}
