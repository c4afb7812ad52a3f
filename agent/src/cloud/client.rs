//! One HTTP client for the API: bearer token, base URL, retries with
//! backoff and jitter, rate-limit pacing, pagination. Every request of venue
//! goes through [`Client::request`], so the counting (requests per server)
//! and the retry policy hold for all of them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::error::CloudError;
use super::retry::Backoff;
use super::types::Meta;

pub const DEFAULT_ENDPOINT: &str = "https://api.hetzner.cloud/v1";
/// The largest page Hetzner serves.
pub const PER_PAGE: u32 = 50;

#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub endpoint: String,
    pub token: String,
    pub backoff: Backoff,
    /// Keep this many requests of the hourly budget in reserve: below it we
    /// pace ourselves to the refill rate instead of running into 429s.
    pub reserve: u64,
    pub timeout: Duration,
    /// First interval between polls while waiting (doubles up to 2 s).
    pub poll_start: Duration,
}

impl ClientConfig {
    /// `HCLOUD_TOKEN` and `HCLOUD_ENDPOINT`, as the hcloud CLI reads them.
    /// `VENUE_CLOUD_BACKOFF_MS` shortens the backoff base and
    /// `VENUE_CLOUD_POLL_MS` the first poll interval (tests, rehearsals).
    pub fn from_env() -> Result<ClientConfig, CloudError> {
        let token = std::env::var("HCLOUD_TOKEN")
            .ok()
            .filter(|t| !t.trim().is_empty())
            .ok_or(CloudError::NoToken)?;
        Ok(ClientConfig::from_env_with_token(&token))
    }

    /// As [`ClientConfig::from_env`], with another token (`[dns] token_env`).
    pub fn from_env_with_token(token: &str) -> ClientConfig {
        let endpoint = std::env::var("HCLOUD_ENDPOINT")
            .ok()
            .filter(|e| !e.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
        let mut backoff = Backoff::default();
        if let Some(ms) = std::env::var("VENUE_CLOUD_BACKOFF_MS")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
        {
            backoff.base = Duration::from_millis(ms);
            backoff.cap = Duration::from_millis(ms * 64);
        }
        let poll_start = Duration::from_millis(
            std::env::var("VENUE_CLOUD_POLL_MS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(250),
        );
        ClientConfig {
            endpoint,
            token: token.trim().to_owned(),
            backoff,
            reserve: 20,
            timeout: Duration::from_secs(60),
            poll_start,
        }
    }
}

#[derive(Debug, Default)]
struct RateState {
    remaining: Option<u64>,
    limit: Option<u64>,
    reset: Option<u64>,
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    cfg: Arc<ClientConfig>,
    rate: Arc<Mutex<RateState>>,
    sent: Arc<AtomicU64>,
}

impl std::fmt::Debug for Client {
    // Never print the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.cfg.endpoint)
            .finish_non_exhaustive()
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Client {
    pub fn new(cfg: ClientConfig) -> Result<Client, CloudError> {
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("venue/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CloudError::Network {
                method: "-".into(),
                path: "-".into(),
                detail: e.to_string(),
            })?;
        Ok(Client {
            http,
            cfg: Arc::new(cfg),
            rate: Arc::default(),
            sent: Arc::default(),
        })
    }

    pub fn from_env() -> Result<Client, CloudError> {
        Client::new(ClientConfig::from_env()?)
    }

    pub fn poll_start(&self) -> Duration {
        self.cfg.poll_start
    }

    pub fn endpoint(&self) -> &str {
        &self.cfg.endpoint
    }

    /// HTTP requests sent so far (retries included).
    pub fn requests_sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// When the budget runs low, wait about one refill interval per request,
    /// so that a long `up` slows down rather than failing with 429.
    async fn pace(&self) {
        let wait = {
            let r = self.rate.lock().unwrap_or_else(|e| e.into_inner());
            match (r.remaining, r.limit, r.reset) {
                (Some(rem), Some(limit), Some(reset)) if rem < self.cfg.reserve => {
                    let missing = limit.saturating_sub(rem).max(1);
                    let until_full = reset.saturating_sub(unix_now()).max(1);
                    Some(Duration::from_secs_f64(until_full as f64 / missing as f64))
                }
                _ => None,
            }
        };
        if let Some(w) = wait {
            tracing::debug!(
                wait_ms = w.as_millis() as u64,
                "rate limit budget low: pacing"
            );
            tokio::time::sleep(w.min(Duration::from_secs(5))).await;
        }
    }

    fn note_rate(&self, headers: &reqwest::header::HeaderMap) {
        let num = |k: &str| {
            headers
                .get(k)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
        };
        let mut r = self.rate.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = num("ratelimit-remaining") {
            r.remaining = Some(v);
        }
        r.limit = num("ratelimit-limit").or(r.limit);
        r.reset = num("ratelimit-reset").or(r.reset);
    }

    /// One request, retried while the error is retryable. `query` may repeat
    /// keys (`id=1&id=2`). Returns the body (`Value::Null` for 204).
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value, CloudError> {
        let b = self.cfg.backoff;
        let mut attempt = 0;
        loop {
            self.pace().await;
            let started = Instant::now();
            let result = self.once(&method, path, query, body).await;
            match result {
                Err(e) if e.is_retryable() && attempt + 1 < b.attempts => {
                    let mut delay = b.delay(attempt);
                    if e.is("rate_limit_exceeded") {
                        // The bucket refills by one per second: wait at least that.
                        delay = delay.max(Duration::from_secs(1).min(b.cap));
                    }
                    tracing::warn!(%method, path, attempt, error = %e, retry_in_ms = delay.as_millis() as u64, "retrying");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                other => {
                    tracing::debug!(%method, path, ms = started.elapsed().as_millis() as u64, ok = other.is_ok(), "request");
                    return other;
                }
            }
        }
    }

    async fn once(
        &self,
        method: &Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value, CloudError> {
        let url = format!("{}{}", self.cfg.endpoint.trim_end_matches('/'), path);
        let mut req = self
            .http
            .request(method.clone(), &url)
            .bearer_auth(&self.cfg.token)
            .query(query);
        if let Some(b) = body {
            req = req.json(b);
        }
        self.sent.fetch_add(1, Ordering::Relaxed);
        let net = |e: reqwest::Error| CloudError::Network {
            method: method.to_string(),
            path: path.to_owned(),
            detail: e.without_url().to_string(),
        };
        let resp = req.send().await.map_err(net)?;
        self.note_rate(resp.headers());
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(net)?;
        if (200..300).contains(&status) {
            if bytes.is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_slice(&bytes).map_err(|e| CloudError::Decode {
                method: method.to_string(),
                path: path.to_owned(),
                detail: e.to_string(),
            });
        }
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let code = v["error"]["code"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("http_{status}"));
        let message = v["error"]["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).chars().take(200).collect());
        Err(CloudError::Api {
            method: method.to_string(),
            path: path.to_owned(),
            status,
            code,
            message,
        })
    }

    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        key: &str,
    ) -> Result<T, CloudError> {
        let v = self.request(Method::GET, path, query, None).await?;
        decode(&v, key, "GET", path)
    }

    /// Every page of a list (`per_page` = 50), `key` naming the list.
    pub async fn list<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        key: &str,
    ) -> Result<Vec<T>, CloudError> {
        let mut out = Vec::new();
        let mut page = 1u64;
        loop {
            let mut q: Vec<(&str, String)> = query.to_vec();
            q.push(("page", page.to_string()));
            q.push(("per_page", PER_PAGE.to_string()));
            let v = self.request(Method::GET, path, &q, None).await?;
            let items: Vec<T> = decode(&v, key, "GET", path)?;
            out.extend(items);
            let meta: Option<Meta> = serde_json::from_value(v["meta"].clone()).ok();
            match meta.and_then(|m| m.pagination.next_page) {
                Some(next) if next > page => page = next,
                _ => return Ok(out),
            }
        }
    }
}

pub fn decode<T: DeserializeOwned>(
    v: &Value,
    key: &str,
    method: &str,
    path: &str,
) -> Result<T, CloudError> {
    serde_json::from_value(v[key].clone()).map_err(|e| CloudError::Decode {
        method: method.into(),
        path: path.into(),
        detail: format!("field {key:?}: {e}"),
    })
}
