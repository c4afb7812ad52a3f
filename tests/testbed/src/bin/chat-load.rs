//! `chat-load --url URL --secret-file FILE [--users N --rooms R --messages M --rate R]`:
//! a load generator for the chat role's Matrix homeserver (Synapse), run by
//! tests/testbed/chat-bench.sh against a test host.
//!
//! It registers N users through Synapse's admin shared-secret registration
//! (a nonce and an HMAC-SHA1 over it), one listener per room creates a public
//! room, the users join the rooms (spread evenly), and then every user posts M
//! messages, all of them at a fixed total rate (open loop: a slow server does
//! not slow the schedule). Two latencies are measured: the send request's own
//! (PUT …/send/m.room.message/{txn}) and end to end, from the send request's
//! start to the moment the room's listener gets the event from its /sync long
//! poll. It prints percentiles of both, throughput, errors, and the CPU seconds
//! Synapse and PostgreSQL spent during the message phase (from /proc).
//!
//! Bounded: a fixed number of messages, a deadline for the whole run, and
//! traffic only to a test host (10.233.0.0/16) or loopback. Exits non-zero
//! when a message failed or was never seen by its room's listener.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use clap::Parser;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use hmac::{Hmac, Mac};
use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};
use sha1::Sha1;

#[derive(Parser, Clone)]
#[command(about = "Matrix chat load: users post, listeners time delivery (venue testbed)")]
struct Args {
    /// The homeserver's client API, on a test host or loopback.
    #[arg(long)]
    url: String,
    /// File holding Synapse's registration_shared_secret.
    #[arg(long)]
    secret_file: PathBuf,
    /// Users who post.
    #[arg(long, default_value_t = 1000)]
    users: usize,
    /// Rooms the users are spread across (each with one more user listening).
    #[arg(long, default_value_t = 10)]
    rooms: usize,
    /// Messages each user posts.
    #[arg(long, default_value_t = 3)]
    messages: usize,
    /// Messages per second, all users together.
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// Registrations and joins in flight at once during setup.
    #[arg(long, default_value_t = 16)]
    setup_concurrency: usize,
    /// Seconds to wait, after the last send, for listeners to see every message.
    #[arg(long, default_value_t = 30)]
    grace: u64,
    /// The whole run (setup included) must finish within this many seconds.
    #[arg(long, default_value_t = 900)]
    max_seconds: u64,
    /// Synapse's pid, for its CPU time.
    #[arg(long)]
    synapse_pid: Option<u32>,
    /// The PostgreSQL postmaster's pid, for its and its backends' CPU time.
    #[arg(long)]
    postgres_pid: Option<u32>,
}

/// A logged-in user: registration returns an access token directly.
#[derive(Clone)]
struct User {
    id: String,
    token: String,
}

/// What happened to one message; indexed by its sequence number, which the
/// message carries in its content so the listener can find it.
#[derive(Default)]
struct Slot {
    scheduled: OnceLock<Instant>,
    started: OnceLock<Instant>,
    sent: OnceLock<Instant>,
    seen: OnceLock<Instant>,
}

#[derive(Default)]
struct Errors {
    count: AtomicUsize,
    kinds: Mutex<BTreeMap<String, usize>>,
}

impl Errors {
    fn add(&self, kind: String) {
        self.count.fetch_add(1, Ordering::Relaxed);
        *self
            .kinds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(kind)
            .or_default() += 1;
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let deadline = Duration::from_secs(args.max_seconds);
    let result = match tokio::time::timeout(deadline, run(args.clone())).await {
        Ok(r) => r,
        Err(_) => Err(anyhow::anyhow!(
            "the run did not finish within --max-seconds {}",
            args.max_seconds
        )),
    };
    match result {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("chat-load: {e:#}");
            std::process::exit(2);
        }
    }
}

/// Only a test host's address (10.233.0.0/16) or loopback may be loaded.
fn check_target(url: &str) -> Result<String> {
    let parsed = reqwest::Url::parse(url).with_context(|| format!("--url {url:?} is not a URL"))?;
    ensure!(
        parsed.scheme() == "http" || parsed.scheme() == "https",
        "--url {url:?}: only http(s) is spoken"
    );
    let host = parsed
        .host_str()
        .with_context(|| format!("--url {url:?} has no host"))?;
    let ip: Ipv4Addr = host
        .parse()
        .with_context(|| format!("--url {url:?}: the host must be an IPv4 address"))?;
    let o = ip.octets();
    ensure!(
        ip.is_loopback() || (o[0] == 10 && o[1] == 233),
        "--url {url:?}: load goes only to a test host (10.233.0.0/16) or loopback, not {ip}"
    );
    Ok(url.trim_end_matches('/').to_string())
}

fn check_args(a: &Args) -> Result<()> {
    ensure!(a.users >= 1, "--users must be at least 1");
    ensure!(
        a.rooms >= 1 && a.rooms <= a.users,
        "--rooms must be between 1 and --users ({})",
        a.users
    );
    ensure!(a.messages >= 1, "--messages must be at least 1");
    ensure!(
        a.users.saturating_mul(a.messages) <= 1_000_000,
        "--users × --messages is capped at 1000000"
    );
    ensure!(
        a.rate.is_finite() && a.rate > 0.0 && a.rate <= 10_000.0,
        "--rate must be a number of messages per second in (0, 10000]"
    );
    ensure!(
        a.setup_concurrency >= 1,
        "--setup-concurrency must be at least 1"
    );
    Ok(())
}

async fn run(args: Args) -> Result<bool> {
    check_args(&args)?;
    let base = check_target(&args.url)?;
    let secret = std::fs::read_to_string(&args.secret_file)
        .with_context(|| format!("cannot read {}", args.secret_file.display()))?
        .trim()
        .to_string();
    ensure!(
        !secret.is_empty(),
        "{} is empty: no registration secret",
        args.secret_file.display()
    );
    let client = Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .build()?;
    let hs = Homeserver { client, base };
    hs.wait_ready(Duration::from_secs(60)).await?;

    let total = args.users * args.messages;
    println!(
        "chat-load: {} users in {} rooms (+{} listeners), {} messages each ({} in all) at {} msg/s to {}",
        args.users, args.rooms, args.rooms, args.messages, total, args.rate, hs.base
    );

    // Names unique per run, so a second run against the same server works.
    let run_id = format!("{:08x}", rand::random::<u32>());
    let setup = Instant::now();
    let names: Vec<String> = (0..args.rooms)
        .map(|r| format!("bench{run_id}-listen{r}"))
        .chain((0..args.users).map(|u| format!("bench{run_id}-u{u}")))
        .collect();
    let registered: Vec<User> = stream::iter(names.into_iter().map(|name| {
        let hs = &hs;
        let secret = &secret;
        async move { hs.register(secret, &name).await }
    }))
    .buffered(args.setup_concurrency)
    .try_collect()
    .await?;
    let registered_in = setup.elapsed();
    let (listeners, posters) = registered.split_at(args.rooms);

    let rooms_start = Instant::now();
    let rooms: Vec<String> = stream::iter(listeners.iter().enumerate().map(|(r, l)| {
        let hs = &hs;
        async move {
            let v = hs
                .call(
                    Method::POST,
                    "/_matrix/client/v3/createRoom",
                    Some(&l.token),
                    Some(json!({"preset": "public_chat", "name": format!("load {r}")})),
                )
                .await?;
            v["room_id"]
                .as_str()
                .map(str::to_string)
                .context("createRoom answered no room_id")
        }
    }))
    .buffered(args.setup_concurrency)
    .try_collect()
    .await?;
    stream::iter(posters.iter().enumerate().map(|(u, p)| {
        let hs = &hs;
        let room = &rooms[u % args.rooms];
        async move {
            hs.call(
                Method::POST,
                &format!("/_matrix/client/v3/join/{}", path_segment(room)),
                Some(&p.token),
                Some(json!({})),
            )
            .await
            .with_context(|| format!("{} joins {room}", p.id))
        }
    }))
    .buffer_unordered(args.setup_concurrency)
    .try_collect::<Vec<_>>()
    .await?;
    let joined_in = rooms_start.elapsed();
    println!(
        "setup: {} users registered in {:.1} s; {} rooms made and {} joins in {:.1} s",
        args.users + args.rooms,
        registered_in.as_secs_f64(),
        args.rooms,
        args.users,
        joined_in.as_secs_f64()
    );

    let slots: Arc<Vec<Slot>> = Arc::new((0..total).map(|_| Slot::default()).collect());
    let gaps = Arc::new(AtomicUsize::new(0));
    let sync_errors = Arc::new(Errors::default());
    let seen_count = Arc::new(AtomicU64::new(0));

    // Each listener catches up first, so that what it sees later is new.
    let mut listener_tasks = Vec::new();
    for (l, room) in listeners.iter().zip(&rooms) {
        let since = hs.sync(&l.token, room, None, 0).await?["next_batch"]
            .as_str()
            .context("/sync answered no next_batch")?
            .to_string();
        let hs = hs.clone();
        let (l, room) = (l.clone(), room.clone());
        let (slots, gaps, errs, seen) = (
            slots.clone(),
            gaps.clone(),
            sync_errors.clone(),
            seen_count.clone(),
        );
        listener_tasks.push(tokio::spawn(async move {
            listen(hs, l, room, since, slots, gaps, errs, seen).await
        }));
    }

    let cpu_before = cpu_sample(&args);
    let send_errors = Arc::new(Errors::default());
    let t0 = Instant::now() + Duration::from_millis(200);
    let mut senders = Vec::with_capacity(total);
    for k in 0..total {
        let u = k % args.users;
        let at = t0 + Duration::from_secs_f64(k as f64 / args.rate);
        let hs = hs.clone();
        let user = posters[u].clone();
        let room = rooms[u % args.rooms].clone();
        let (slots, errs) = (slots.clone(), send_errors.clone());
        let txn = format!("{run_id}-{k}");
        senders.push(tokio::spawn(async move {
            tokio::time::sleep_until(at.into()).await;
            let slot = &slots[k];
            let _ = slot.scheduled.set(at);
            let _ = slot.started.set(Instant::now());
            let body = json!({
                "msgtype": "m.text",
                "body": format!("message {} of user {u}", k / args.users),
                "venue_seq": k,
            });
            let path = format!(
                "/_matrix/client/v3/rooms/{}/send/m.room.message/{txn}",
                path_segment(&room)
            );
            match hs
                .call_once(Method::PUT, &path, Some(&user.token), Some(body))
                .await
            {
                Ok(v) if v["event_id"].is_string() => {
                    let _ = slot.sent.set(Instant::now());
                }
                Ok(_) => errs.add("send answered no event_id".into()),
                Err(e) => errs.add(e.kind),
            }
        }));
    }
    for s in senders {
        s.await.context("a sender task failed")?;
    }
    let sends_done = Instant::now();
    let sent_ok = slots.iter().filter(|s| s.sent.get().is_some()).count();
    // Wait for the listeners to see every message that was accepted.
    let grace_end = sends_done + Duration::from_secs(args.grace);
    while slots
        .iter()
        .any(|s| s.sent.get().is_some() && s.seen.get().is_none())
        && Instant::now() < grace_end
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cpu_after = cpu_sample(&args);
    for t in &listener_tasks {
        t.abort();
    }

    let mut send_ms = Vec::new();
    let mut e2e_ms = Vec::new();
    let mut lag_max = Duration::ZERO;
    let mut unseen = 0;
    let mut last_seen = t0;
    for s in slots.iter() {
        if let (Some(sch), Some(st)) = (s.scheduled.get(), s.started.get()) {
            lag_max = lag_max.max(st.saturating_duration_since(*sch));
        }
        let (Some(st), Some(sent)) = (s.started.get(), s.sent.get()) else {
            continue;
        };
        send_ms.push(ms(sent.saturating_duration_since(*st)));
        match s.seen.get() {
            Some(seen) => {
                e2e_ms.push(ms(seen.saturating_duration_since(*st)));
                last_seen = last_seen.max(*seen);
            }
            None => unseen += 1,
        }
    }
    let errors = send_errors.count.load(Ordering::Relaxed);
    let sync_errs = sync_errors.count.load(Ordering::Relaxed);
    let gaps = gaps.load(Ordering::Relaxed);
    let window = last_seen.max(sends_done).saturating_duration_since(t0);
    let send_window = sends_done.saturating_duration_since(t0);
    println!(
        "messages: {sent_ok} of {total} sent in {:.1} s ({:.1}/s); {} seen by the listeners ({:.1}/s); \
         {errors} send errors, {unseen} unseen, {sync_errs} sync errors, {gaps} timeline gaps; \
         schedule lag max {:.0} ms",
        send_window.as_secs_f64(),
        sent_ok as f64 / send_window.as_secs_f64(),
        e2e_ms.len(),
        e2e_ms.len() as f64 / window.as_secs_f64(),
        ms(lag_max)
    );
    for (what, errs) in [("send", &send_errors), ("sync", &sync_errors)] {
        for (kind, n) in errs.kinds.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            println!("  {what} error ×{n}: {kind}");
        }
    }
    let send = Percentiles::of(&mut send_ms);
    let e2e = Percentiles::of(&mut e2e_ms);
    println!(
        "{:<22} {:>9} {:>9} {:>9} {:>9}",
        "latency (ms)", "p50", "p90", "p99", "max"
    );
    for (name, p) in [("send request", &send), ("end to end (sync)", &e2e)] {
        println!(
            "{:<22} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
            name, p.p50, p.p90, p.p99, p.max
        );
    }
    let measured = cpu_after.at.duration_since(cpu_before.at).as_secs_f64();
    let synapse_cpu = cpu_after
        .synapse
        .zip(cpu_before.synapse)
        .map(|(a, b)| a - b);
    let postgres_cpu = cpu_after
        .postgres
        .zip(cpu_before.postgres)
        .map(|(a, b)| a - b);
    let generator_cpu = cpu_after
        .generator
        .zip(cpu_before.generator)
        .map(|(a, b)| a - b);
    let show = |v: Option<f64>| match v {
        Some(s) => format!("{s:.1} s ({:.0}% of one core)", 100.0 * s / measured),
        None => "not measured".to_string(),
    };
    println!(
        "cpu during the {measured:.1} s message phase: synapse {}, postgresql {}, chat-load {}",
        show(synapse_cpu),
        show(postgres_cpu),
        show(generator_cpu)
    );
    let opt = |v: Option<f64>| v.map_or("-".to_string(), |s| format!("{s:.2}"));
    println!(
        "RESULT users={} rooms={} messages={total} rate={} sent={sent_ok} errors={errors} unseen={unseen} \
         sync_errors={sync_errs} gaps={gaps} send_p50_ms={:.1} send_p90_ms={:.1} send_p99_ms={:.1} \
         send_max_ms={:.1} e2e_p50_ms={:.1} e2e_p90_ms={:.1} e2e_p99_ms={:.1} e2e_max_ms={:.1} \
         throughput={:.1} synapse_cpu_s={} postgres_cpu_s={} load_cpu_s={} phase_s={measured:.1}",
        args.users,
        args.rooms,
        args.rate,
        send.p50,
        send.p90,
        send.p99,
        send.max,
        e2e.p50,
        e2e.p90,
        e2e.p99,
        e2e.max,
        e2e_ms.len() as f64 / window.as_secs_f64(),
        opt(synapse_cpu),
        opt(postgres_cpu),
        opt(generator_cpu),
    );
    let ok = errors == 0 && unseen == 0 && gaps == 0 && sent_ok == total;
    if !ok {
        eprintln!(
            "chat-load: FAILED: {errors} send errors, {unseen} accepted messages never seen, {gaps} timeline gaps"
        );
    }
    Ok(ok)
}

/// The room's listener: long-polls /sync, as a client does, and stamps each
/// load message when it arrives.
#[allow(clippy::too_many_arguments)]
async fn listen(
    hs: Homeserver,
    user: User,
    room: String,
    mut since: String,
    slots: Arc<Vec<Slot>>,
    gaps: Arc<AtomicUsize>,
    errors: Arc<Errors>,
    seen_count: Arc<AtomicU64>,
) {
    loop {
        let v = match hs.sync(&user.token, &room, Some(&since), 30_000).await {
            Ok(v) => v,
            Err(e) => {
                errors.add(format!("{}: {e:#}", user.id));
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let now = Instant::now();
        let timeline = &v["rooms"]["join"][&room]["timeline"];
        if timeline["limited"] == json!(true) {
            gaps.fetch_add(1, Ordering::Relaxed);
        }
        for ev in timeline["events"].as_array().into_iter().flatten() {
            if ev["type"] != "m.room.message" {
                continue;
            }
            if let Some(k) = ev["content"]["venue_seq"].as_u64() {
                if let Some(slot) = slots.get(k as usize) {
                    if slot.seen.set(now).is_ok() {
                        seen_count.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
        match v["next_batch"].as_str() {
            Some(n) => since = n.to_string(),
            None => errors.add("/sync answered no next_batch".into()),
        }
    }
}

#[derive(Clone)]
struct Homeserver {
    client: Client,
    base: String,
}

/// A failed request, with a short kind to count errors by.
#[derive(Debug)]
struct CallError {
    kind: String,
    status: Option<StatusCode>,
    retry_after: Option<Duration>,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.kind)
    }
}

impl std::error::Error for CallError {}

impl Homeserver {
    async fn wait_ready(&self, within: Duration) -> Result<()> {
        let end = Instant::now() + within;
        loop {
            let url = format!("{}/_matrix/client/versions", self.base);
            match self.client.get(&url).send().await {
                Ok(r) if r.status().is_success() => return Ok(()),
                other if Instant::now() >= end => {
                    bail!("{url} did not answer 200 within {within:?}: {other:?}")
                }
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// One request; JSON in and out. Errors name the status and Matrix errcode.
    async fn call_once(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> std::result::Result<Value, CallError> {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .timeout(Duration::from_secs(30));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| CallError {
            kind: if e.is_timeout() {
                "timeout (30 s)".into()
            } else {
                format!("request failed: {e}")
            },
            status: None,
            retry_after: None,
        })?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| CallError {
            kind: format!("reading the answer: {e}"),
            status: Some(status),
            retry_after: None,
        })?;
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(CallError {
                kind: format!(
                    "HTTP {} {}",
                    status.as_u16(),
                    v["errcode"].as_str().unwrap_or("")
                )
                .trim_end()
                .to_string(),
                status: Some(status),
                retry_after: v["retry_after_ms"].as_u64().map(Duration::from_millis),
            });
        }
        if v.is_null() {
            return Err(CallError {
                kind: format!("HTTP {} with a body that is not JSON", status.as_u16()),
                status: Some(status),
                retry_after: None,
            });
        }
        Ok(v)
    }

    /// A setup request: rate-limited answers (429) are retried after the
    /// time the server asks for, as clients do; the load itself never is.
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Result<Value> {
        for _ in 0..20 {
            match self
                .call_once(method.clone(), path, token, body.clone())
                .await
            {
                Err(e) if e.status == Some(StatusCode::TOO_MANY_REQUESTS) => {
                    tokio::time::sleep(e.retry_after.unwrap_or(Duration::from_secs(1))).await;
                }
                other => return other.with_context(|| format!("{method} {path}")),
            }
        }
        bail!("{method} {path}: still rate-limited after 20 tries")
    }

    /// Shared-secret registration (Synapse's admin API): a fresh nonce, then
    /// the user with an HMAC-SHA1 of nonce, name, password and admin flag.
    async fn register(&self, secret: &str, name: &str) -> Result<User> {
        let path = "/_synapse/admin/v1/register";
        let nonce = self.call(Method::GET, path, None, None).await?["nonce"]
            .as_str()
            .context("the registration nonce is missing")?
            .to_string();
        let password = format!("{:032x}", rand::random::<u128>());
        let mac = registration_mac(secret, &nonce, name, &password, false);
        let v = self
            .call(
                Method::POST,
                path,
                None,
                Some(json!({
                    "nonce": nonce, "username": name, "password": password,
                    "admin": false, "mac": mac,
                })),
            )
            .await
            .with_context(|| format!("registering {name}"))?;
        Ok(User {
            id: v["user_id"]
                .as_str()
                .context("registration answered no user_id")?
                .to_string(),
            token: v["access_token"]
                .as_str()
                .context("registration answered no access_token")?
                .to_string(),
        })
    }

    /// /sync for one room, with a filter as a lean client would use: members
    /// loaded lazily, no presence, a timeline long enough that nothing is
    /// cut at this load (a cut is counted as a gap).
    async fn sync(
        &self,
        token: &str,
        room: &str,
        since: Option<&str>,
        timeout_ms: u64,
    ) -> Result<Value> {
        let filter = json!({
            "room": {
                "rooms": [room],
                "timeline": {"limit": 1000},
                "state": {"lazy_load_members": true},
            },
            "presence": {"types": []},
        })
        .to_string();
        let query = {
            let mut q = form_urlencoded::Serializer::new(String::new());
            q.append_pair("filter", &filter)
                .append_pair("timeout", &timeout_ms.to_string());
            if let Some(s) = since {
                q.append_pair("since", s);
            }
            q.finish()
        };
        let url = format!("{}/_matrix/client/v3/sync?{query}", self.base);
        let resp = self
            .client
            .get(&url)
            .bearer_auth(token)
            .timeout(Duration::from_millis(timeout_ms + 30_000))
            .send()
            .await
            .context("GET /sync")?;
        let status = resp.status();
        let v: Value = resp.json().await.context("reading /sync")?;
        ensure!(
            status.is_success(),
            "/sync: HTTP {} {}",
            status.as_u16(),
            v["errcode"].as_str().unwrap_or("")
        );
        Ok(v)
    }
}

/// The MAC Synapse's admin registration checks (synapse/rest/admin/users.py):
/// HMAC-SHA1 keyed with the shared secret over the NUL-separated fields.
fn registration_mac(secret: &str, nonce: &str, user: &str, password: &str, admin: bool) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(nonce.as_bytes());
    mac.update(b"\x00");
    mac.update(user.as_bytes());
    mac.update(b"\x00");
    mac.update(password.as_bytes());
    mac.update(b"\x00");
    mac.update(if admin { b"admin" } else { b"notadmin" });
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Percent-encodes a path segment (room ids hold `!` and `:`).
fn path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct Percentiles {
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles; NaN for no samples.
    fn of(v: &mut [f64]) -> Percentiles {
        v.sort_by(f64::total_cmp);
        let at = |p: f64| {
            if v.is_empty() {
                return f64::NAN;
            }
            let rank = (p * v.len() as f64).ceil() as usize;
            v[rank.clamp(1, v.len()) - 1]
        };
        Percentiles {
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max: at(1.0),
        }
    }
}

/// CPU seconds so far of Synapse and of PostgreSQL (the postmaster, the
/// backends it reaped, and those alive).
struct CpuSample {
    at: Instant,
    synapse: Option<f64>,
    postgres: Option<f64>,
    /// This generator's own: it shares the machine's cores with the server.
    generator: Option<f64>,
}

fn cpu_sample(args: &Args) -> CpuSample {
    let hz = clock_ticks();
    let synapse = args
        .synapse_pid
        .and_then(proc_times)
        .map(|t| (t.utime + t.stime) as f64 / hz);
    let postgres = args.postgres_pid.and_then(|pm| {
        let master = proc_times(pm)?;
        let mut ticks = master.utime + master.stime + master.cutime + master.cstime;
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            if let Some(t) = proc_times(pid) {
                if t.ppid == pm {
                    ticks += t.utime + t.stime;
                }
            }
        }
        Some(ticks as f64 / hz)
    });
    let generator = proc_times(std::process::id()).map(|t| (t.utime + t.stime) as f64 / hz);
    CpuSample {
        at: Instant::now(),
        synapse,
        postgres,
        generator,
    }
}

struct ProcTimes {
    ppid: u32,
    utime: u64,
    stime: u64,
    cutime: u64,
    cstime: u64,
}

/// Fields 4 and 14–17 of /proc/PID/stat (after the command name, which may
/// hold spaces and parentheses).
fn proc_times(pid: u32) -> Option<ProcTimes> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| f.get(i)?.parse::<u64>().ok();
    Some(ProcTimes {
        ppid: n(1)? as u32,
        utime: n(11)?,
        stime: n(12)?,
        cutime: n(13)?,
        cstime: n(14)?,
    })
}

fn clock_ticks() -> f64 {
    static HZ: OnceLock<f64> = OnceLock::new();
    *HZ.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The MAC for a known input, computed with Python's hmac/hashlib the way
    /// synapse/rest/admin/users.py does.
    #[test]
    fn registration_mac_matches_synapse() {
        assert_eq!(
            registration_mac("s3cret", "abc", "alice", "pw", false),
            "d7cd8fe38bb2b37bacf757920ef46050075d427d"
        );
        assert_ne!(
            registration_mac("s3cret", "abc", "alice", "pw", false),
            registration_mac("s3cret", "abc", "alice", "pw", true)
        );
    }

    #[test]
    fn targets_are_test_hosts_or_loopback() {
        assert!(check_target("http://10.233.251.2:8008/").is_ok());
        assert!(check_target("http://127.0.0.1:8008").is_ok());
        for bad in [
            "http://10.0.0.1:8008",
            "http://192.168.1.1",
            "http://example.org",
            "ftp://10.233.1.2",
        ] {
            assert!(check_target(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut v: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        let p = Percentiles::of(&mut v);
        assert_eq!((p.p50, p.p90, p.p99, p.max), (50.0, 90.0, 99.0, 100.0));
        let mut one = vec![7.0];
        assert_eq!(Percentiles::of(&mut one).p99, 7.0);
    }

    #[test]
    fn room_ids_are_escaped_in_paths() {
        assert_eq!(path_segment("!abc:venue.test"), "%21abc%3Avenue.test");
    }

    #[test]
    fn proc_stat_of_this_process_parses() {
        let t = proc_times(std::process::id()).expect("own /proc stat");
        assert!(t.ppid > 0);
    }
}
