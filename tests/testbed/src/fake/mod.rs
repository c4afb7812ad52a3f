//! The fake Hetzner Cloud: HTTP glue around [`state::State`] with what the
//! real API adds around its answers: bearer-token authentication, the
//! per-project rate limit (`RateLimit-*` headers, 429 `rate_limit_exceeded`),
//! and faults on demand (5xx, `locked`, `conflict`, dropped connections,
//! failing and slow actions), plus a cut that freezes the API after the k-th
//! request so that tests can kill a client at exactly that point.
//!
//! Outside Hetzner's API, `GET /testbed/bill` serves the bill the fake keeps
//! ([`state::bill`]), with the same bearer token.

pub mod state;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State as AxState;
use axum::http::{HeaderMap, HeaderValue, Method, Response, StatusCode, Uri};
use axum::Router;
use conference::clock::Clock;
use rand::{Rng, SeedableRng};
use serde_json::Value;

pub use state::md5_fingerprint;
use state::{error, Answer, Query, State};

/// The public addresses of a new server.
#[derive(Debug, Clone)]
pub struct Addresses {
    pub ipv4: String,
    /// The /64 network without its length, e.g. `2001:db8:0:7::`.
    pub ipv6_net: String,
}

impl Addresses {
    /// Documentation addresses (TEST-NET-3, 2001:db8::/32): never routed.
    pub fn from_serial(n: u64) -> Addresses {
        Addresses {
            ipv4: format!("203.0.{}.{}", 113 + (n / 250) % 10, 1 + n % 250),
            ipv6_net: format!("2001:db8:0:{:x}::", n),
        }
    }
}

/// What the fake knows of a server being created, for a [`ServerHook`].
#[derive(Debug, Clone)]
pub struct NewServer {
    pub name: String,
    /// A number unique in this fake, for making addresses.
    pub serial: u64,
    pub server_type: String,
    pub location: String,
    /// The image's name (system images), else its id.
    pub image: String,
    /// The snapshot image the server boots from (its disk was copied by
    /// [`ServerHook::snapshot`]), or None for a public system image.
    pub snapshot: Option<u64>,
    /// cloud-init user data as sent (venue's carries the pinned host key).
    pub user_data: Option<String>,
    /// Public halves of the request's `ssh_keys`, which the real cloud puts
    /// in root's authorized_keys.
    pub authorized_keys: Vec<String>,
    pub labels: serde_json::Map<String, Value>,
}

/// Where a created server "runs". The default gives documentation addresses;
/// the testbed's network-namespace hosts plug in here: `create` runs while
/// the API answers the create request (an error answers 503
/// `resource_unavailable`), `deleted` when the server's delete action ends.
/// `snapshot` runs while the API answers a create_image request (it copies
/// the server's disk; an error answers 503 `resource_unavailable`; the
/// answer is the image size in bytes, or None to let the fake estimate it),
/// `image_deleted` when the image is deleted.
pub trait ServerHook: Send + Sync {
    fn create(&self, server: &NewServer) -> Result<Addresses, String>;
    fn deleted(&self, _name: &str) {}
    fn snapshot(&self, _server: &str, _image: u64) -> Result<Option<u64>, String> {
        Ok(None)
    }
    fn image_deleted(&self, _image: u64) {}
}

pub struct DocAddresses;

impl ServerHook for DocAddresses {
    fn create(&self, server: &NewServer) -> Result<Addresses, String> {
        Ok(Addresses::from_serial(server.serial))
    }
}

/// One fault, applied to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// 503 `unavailable`, nothing done.
    Unavailable,
    /// 423 `locked`, nothing done.
    Locked,
    /// 409 `conflict`, nothing done.
    Conflict,
    /// The connection drops before the request is handled.
    DropBefore,
    /// The request is handled, then the connection drops: the client never
    /// learns that it worked.
    DropAfter,
    /// 429 `rate_limit_exceeded`, nothing done.
    RateLimited,
}

const RANDOM_FAULTS: [Fault; 5] = [
    Fault::Unavailable,
    Fault::Locked,
    Fault::Conflict,
    Fault::DropBefore,
    Fault::DropAfter,
];

#[derive(Clone)]
pub struct FakeConfig {
    pub token: String,
    pub action_duration: Duration,
    /// Requests per hour (Hetzner: 3600), refilled continuously.
    pub rate_limit: u32,
    /// Refill speed, in requests per second (Hetzner: 1).
    pub refill_per_sec: f64,
    pub hook: Arc<dyn ServerHook>,
    /// Record every exchange (for the spec check).
    pub record: bool,
    pub seed: u64,
    /// Where the fake's timestamps come from (real time unless a test or
    /// `fake-hcloud --clock` gives an accelerated one).
    pub clock: Clock,
}

impl Default for FakeConfig {
    fn default() -> Self {
        FakeConfig {
            token: "fake-token".into(),
            action_duration: Duration::from_millis(30),
            rate_limit: 3600,
            refill_per_sec: 1.0,
            hook: Arc::new(DocAddresses),
            record: true,
            seed: 1,
            clock: Clock::real(),
        }
    }
}

/// One recorded request and its answer.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub seq: u64,
    pub method: String,
    /// Below `/v1`, e.g. `/servers/12`.
    pub path: String,
    pub query: Query,
    pub request: Option<Value>,
    pub status: u16,
    pub response: Option<Value>,
}

struct Control {
    state: State,
    requests: u64,
    tokens: f64,
    refilled: Instant,
    scripted: VecDeque<Fault>,
    fault_rate: f64,
    slow: Duration,
    cut: Option<u64>,
    cut_hit: bool,
    rng: rand::rngs::StdRng,
    log: Vec<Exchange>,
    rejected_429: u64,
}

pub struct Shared {
    cfg: FakeConfig,
    control: Mutex<Control>,
}

/// A handle on a running fake: inspect its state and inject faults.
#[derive(Clone)]
pub struct FakeHandle {
    shared: Arc<Shared>,
    pub url: String,
}

pub struct FakeCloud;

impl FakeCloud {
    /// Starts the fake on 127.0.0.1 (any port) in a runtime of its own
    /// thread, so that synchronous tests can use it. Returns the API base URL
    /// (ending in `/v1`) and the control handle.
    pub fn start(cfg: FakeConfig) -> (String, FakeHandle) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let handle = FakeCloud::handle(cfg, &listener.local_addr().expect("local addr"));
        let shared = handle.shared.clone();
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("tokio runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                axum::serve(listener, router(shared))
                    .await
                    .expect("fake-hcloud serves");
            });
        });
        (handle.url.clone(), handle)
    }

    /// Serves on an existing tokio listener (the `fake-hcloud` binary).
    pub async fn serve(
        cfg: FakeConfig,
        listener: tokio::net::TcpListener,
        fault_rate: f64,
    ) -> anyhow::Result<()> {
        let handle = FakeCloud::handle(cfg, &listener.local_addr()?);
        handle.set_fault_rate(fault_rate);
        axum::serve(listener, router(handle.shared)).await?;
        Ok(())
    }

    /// A fake that is not serving yet (the `fake-hcloud` binary: it starts
    /// the DNS server on the same state first), for [`FakeHandle::serve`].
    pub fn new_handle(
        cfg: FakeConfig,
        listener: &tokio::net::TcpListener,
    ) -> std::io::Result<FakeHandle> {
        Ok(FakeCloud::handle(cfg, &listener.local_addr()?))
    }

    fn handle(cfg: FakeConfig, addr: &SocketAddr) -> FakeHandle {
        let mut state = State::new(cfg.action_duration, cfg.hook.clone());
        state.clock = cfg.clock;
        let control = Control {
            state,
            requests: 0,
            tokens: cfg.rate_limit as f64,
            refilled: Instant::now(),
            scripted: VecDeque::new(),
            fault_rate: 0.0,
            slow: Duration::ZERO,
            cut: None,
            cut_hit: false,
            rng: rand::rngs::StdRng::seed_from_u64(cfg.seed),
            log: Vec::new(),
            rejected_429: 0,
        };
        FakeHandle {
            shared: Arc::new(Shared {
                cfg,
                control: Mutex::new(control),
            }),
            url: format!("http://{addr}/v1"),
        }
    }
}

impl FakeHandle {
    fn lock(&self) -> MutexGuard<'_, Control> {
        self.shared
            .control
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
    /// Runs `f` on the state, as the API would see it now.
    pub fn with_state<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut c = self.lock();
        c.state.tick();
        f(&mut c.state)
    }
    /// Requests answered so far (including refused ones).
    pub fn requests(&self) -> u64 {
        self.lock().requests
    }
    pub fn rejected_429(&self) -> u64 {
        self.lock().rejected_429
    }
    /// Faults for the next requests, one each, in order.
    pub fn push_faults(&self, faults: &[Fault]) {
        self.lock().scripted.extend(faults.iter().copied());
    }
    /// A random fault (one of 503, locked, conflict, dropped before or after
    /// handling) on this share of requests.
    pub fn set_fault_rate(&self, rate: f64) {
        self.lock().fault_rate = rate;
    }
    /// The next `n` actions end in an error.
    pub fn fail_next_actions(&self, n: u32) {
        self.lock().state.failing_actions = n;
    }
    pub fn set_action_duration(&self, d: Duration) {
        self.lock().state.action_duration = d;
    }
    /// Every answer waits this long.
    pub fn set_slow(&self, d: Duration) {
        self.lock().slow = d;
    }
    /// Handles request number `k`, then freezes: its answer and every later
    /// request wait until [`FakeHandle::uncut`], then their connections drop
    /// unanswered (and later requests are never handled).
    pub fn cut_after(&self, k: u64) {
        let mut c = self.lock();
        c.cut = Some(k);
        c.cut_hit = false;
    }
    pub fn uncut(&self) {
        self.lock().cut = None;
    }
    /// Whether the cut's k-th request has been handled.
    pub fn cut_hit(&self) -> bool {
        self.lock().cut_hit
    }
    pub fn exchanges(&self) -> Vec<Exchange> {
        self.lock().log.clone()
    }
    pub fn clear_exchanges(&self) {
        self.lock().log.clear();
    }
    pub fn token(&self) -> String {
        self.shared.cfg.token.clone()
    }
    /// The clock the fake's timestamps and bill read now.
    pub fn clock(&self) -> Clock {
        self.lock().state.clock
    }
    /// Replaces the clock: a test moves venue time on (or stops it, with a
    /// tiny speed) between requests. What was recorded keeps its times.
    pub fn set_clock(&self, clock: Clock) {
        let mut c = self.lock();
        // Actions due by now finish by the old clock.
        c.state.tick();
        c.state.clock = clock;
    }
    /// Hetzner's bill as it stands now (what `GET /testbed/bill` serves).
    pub fn bill(&self) -> state::bill::Bill {
        self.with_state(|s| s.bill())
    }
    /// Serves the API on `listener` (made with [`FakeCloud::new_handle`]).
    pub async fn serve(self, listener: tokio::net::TcpListener) -> anyhow::Result<()> {
        axum::serve(listener, router(self.shared)).await?;
        Ok(())
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/testbed/bill", axum::routing::get(bill))
        .fallback(dispatch)
        .with_state(shared)
}

/// `GET /testbed/bill`: not part of Hetzner's API (its bills are in the
/// console), so no rate limit, no faults, no spec check; the token still
/// guards it, like the project it belongs to.
async fn bill(AxState(shared): AxState<Arc<Shared>>, headers: HeaderMap) -> Response<Body> {
    let authorized = headers.get("authorization").and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {}", shared.cfg.token));
    let (status, json) = if authorized {
        let mut c = shared.control.lock().unwrap_or_else(|e| e.into_inner());
        c.state.tick();
        (200, serde_json::json!({"bill": c.state.bill()}))
    } else {
        error(401, "unauthorized", "unable to authenticate")
    };
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(&json).expect("json")))
        .expect("response")
}

fn parse_query(uri: &Uri) -> Query {
    uri.query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

/// A response whose body fails: hyper aborts the connection mid-answer.
fn dropped() -> Response<Body> {
    let stream = futures_util::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::other("fake-hcloud drops the connection"))
    });
    Response::builder()
        .status(StatusCode::OK)
        .body(Body::from_stream(stream))
        .expect("response")
}

enum Gate {
    Go,
    Frozen,
}

async fn wait_uncut(shared: &Shared) {
    loop {
        if shared
            .control
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .cut
            .is_none()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn dispatch(
    AxState(shared): AxState<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response<Body> {
    let query = parse_query(&uri);
    let path = uri.path().strip_prefix("/v1").unwrap_or("").to_owned();
    let (seq, gate, slow) = {
        let mut c = shared.control.lock().unwrap_or_else(|e| e.into_inner());
        c.requests += 1;
        let seq = c.requests;
        let gate = match c.cut {
            Some(k) if seq > k => Gate::Frozen,
            _ => Gate::Go,
        };
        (seq, gate, c.slow)
    };
    if let Gate::Frozen = gate {
        wait_uncut(&shared).await;
        return dropped();
    }
    if !slow.is_zero() {
        tokio::time::sleep(slow).await;
    }
    let (answer, remaining, reset, drop_after) = {
        let mut c = shared.control.lock().unwrap_or_else(|e| e.into_inner());
        let c = &mut *c;
        // Token bucket: `rate_limit` requests, refilled continuously.
        let limit = shared.cfg.rate_limit as f64;
        let elapsed = c.refilled.elapsed().as_secs_f64();
        c.tokens = (c.tokens + elapsed * shared.cfg.refill_per_sec).min(limit);
        c.refilled = Instant::now();
        let fault = c.scripted.pop_front().or_else(|| {
            (c.fault_rate > 0.0 && c.rng.random_bool(c.fault_rate.min(1.0)))
                .then(|| RANDOM_FAULTS[c.rng.random_range(0..RANDOM_FAULTS.len())])
        });
        let authorized = headers.get("authorization").and_then(|v| v.to_str().ok())
            == Some(&format!("Bearer {}", shared.cfg.token));
        let parsed: Result<Value, _> = if body.is_empty() {
            Ok(Value::Null)
        } else {
            serde_json::from_slice(&body)
        };
        let mut drop_after = false;
        let answer: Option<Answer> = if c.tokens < 1.0 || fault == Some(Fault::RateLimited) {
            c.rejected_429 += 1;
            Some(error(
                429,
                "rate_limit_exceeded",
                "limit of 3600 requests per hour reached",
            ))
        } else {
            c.tokens -= 1.0;
            if !authorized {
                Some(error(401, "unauthorized", "unable to authenticate"))
            } else {
                match fault {
                    Some(Fault::Unavailable) => Some(error(
                        503,
                        "unavailable",
                        "the service is temporarily unavailable",
                    )),
                    Some(Fault::Locked) => Some(error(
                        423,
                        "locked",
                        "the resource is locked by another action",
                    )),
                    Some(Fault::Conflict) => Some(error(
                        409,
                        "conflict",
                        "the resource was changed during the request",
                    )),
                    Some(Fault::DropBefore) => None,
                    _ => {
                        drop_after = fault == Some(Fault::DropAfter);
                        Some(match &parsed {
                            Ok(v) => c.state.answer(method.as_str(), &path, &query, v),
                            Err(e) => error(400, "json_error", format!("invalid JSON body: {e}")),
                        })
                    }
                }
            }
        };
        if c.cut == Some(seq) {
            c.cut_hit = true;
        }
        if shared.cfg.record {
            c.log.push(Exchange {
                seq,
                method: method.to_string(),
                path: path.clone(),
                query: query.clone(),
                request: parsed.ok().filter(|v| !v.is_null()),
                status: answer.as_ref().map(|a| a.0).unwrap_or(0),
                response: answer
                    .as_ref()
                    .map(|a| a.1.clone())
                    .filter(|v| !v.is_null()),
            });
        }
        let remaining = c.tokens.floor().max(0.0) as u64;
        let reset = chrono::Utc::now().timestamp() as u64
            + ((limit - c.tokens) / shared.cfg.refill_per_sec).ceil() as u64;
        (answer, remaining, reset, drop_after)
    };
    let frozen_here = shared.control.lock().unwrap_or_else(|e| e.into_inner()).cut == Some(seq);
    if frozen_here {
        wait_uncut(&shared).await;
        return dropped();
    }
    let Some((status, json)) = answer else {
        return dropped();
    };
    if drop_after {
        return dropped();
    }
    let mut resp = if status == 204 {
        Response::builder()
            .status(204)
            .body(Body::empty())
            .expect("response")
    } else {
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(&json).expect("json")))
            .expect("response")
    };
    let h = resp.headers_mut();
    h.insert("ratelimit-limit", HeaderValue::from(shared.cfg.rate_limit));
    h.insert("ratelimit-remaining", HeaderValue::from(remaining));
    h.insert("ratelimit-reset", HeaderValue::from(reset));
    resp
}
