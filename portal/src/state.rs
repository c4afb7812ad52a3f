//! What every request handler shares: the event, the configuration, the
//! store, the BigBlueButton and Jitsi monitors, the login throttle and the
//! caches of rendered schedule fragments.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderMap};
use conference::{Event, Room};

use crate::bbb::Cluster;
use crate::cache::RequestCache;
use crate::config::Config;
use crate::fragments::Fragments;
use crate::jitsi::JitsiMonitor;
use crate::store::Store;
use crate::throttle::LoginThrottle;

pub struct AppState {
    pub event: Event,
    pub config: Config,
    pub store: Store,
    pub cluster: Arc<Cluster>,
    pub jitsi: Arc<JitsiMonitor>,
    pub throttle: LoginThrottle,
    pub fragments: Fragments,
    pub cache: RequestCache,
    /// The homeserver kept in step, when `[chat]` is set (`with_chat`).
    pub chat: Option<Arc<crate::chat::Chat>>,
}

impl AppState {
    pub fn new(event: Event, config: Config, store: Store) -> AppState {
        let timeout = config.poll_interval.min(Duration::from_secs(5));
        let cluster = Cluster::with_pool(config.bbb.clone(), config.pool.clone(), timeout);
        let jitsi = JitsiMonitor::new(config.jitsi.as_ref(), &event, timeout);
        AppState {
            fragments: Fragments::new(&event),
            event,
            config,
            store,
            cluster,
            jitsi,
            throttle: LoginThrottle::default(),
            cache: RequestCache::default(),
            chat: None,
        }
    }

    /// Sets up the chat from `[chat]`: its plan of rooms is checked here.
    pub fn with_chat(mut self) -> anyhow::Result<AppState> {
        if let Some(c) = &self.config.chat {
            self.chat = Some(Arc::new(crate::chat::Chat::new(c.clone(), &self.event)?));
        }
        Ok(self)
    }

    /// Starts the background pollers (BigBlueButton and Jitsi).
    pub fn spawn_pollers(&self) {
        self.cluster.spawn_pollers(self.config.poll_interval);
        self.jitsi.spawn_pollers(self.config.poll_interval);
    }

    /// Whether the browser reached the portal over https (directly
    /// configured, or told by the reverse proxy).
    pub fn is_https(&self, headers: &HeaderMap) -> bool {
        self.config
            .public_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"))
            || headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.eq_ignore_ascii_case("https"))
    }

    /// The portal's own base URL, for links that leave it (BBB's logout URL,
    /// calendar entries and feed URLs).
    pub fn base_url(&self, headers: &HeaderMap) -> String {
        if let Some(u) = &self.config.public_url {
            return u.clone();
        }
        let scheme = if self.is_https(headers) {
            "https"
        } else {
            "http"
        };
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| {
                h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
            })
            .unwrap_or("localhost");
        format!("{scheme}://{host}")
    }

    /// Whether there is a talk vote to show (proposals were imported).
    pub fn vote_visible(&self) -> bool {
        self.store.proposal_count().unwrap_or(0) > 0
    }

    /// The BBB meeting ID or Jitsi room name of `room`.
    pub fn meeting_id(&self, room: &Room) -> String {
        format!("{}-{}", self.event.id, room.slug)
    }
}
