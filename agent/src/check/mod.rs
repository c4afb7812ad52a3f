//! `venue check`: every protocol of the venue probed from outside, the way an
//! attendee's browser and the portal reach it. One probe family per file
//! (dns, tls, portal, bbb, jitsi, turn, load, chat); this file holds what they
//! share: the hosts to probe, a probe's result, the runner (all probes at
//! once, each with a timeout) and the output (table, JSON, `--watch`).

pub mod bbb;
pub mod chat;
pub mod dns;
pub mod http;
pub mod jitsi;
pub mod load;
pub mod portal;
pub mod setup;
pub mod tls;
pub mod turn;
pub mod watch;

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use conference::protocol::bbb::Checksum;
use conference::{Event, Role};
use futures_util::future::BoxFuture;
use serde::Serialize;

/// One host (and role) of the fleet, as the probes reach it.
#[derive(Debug, Clone)]
pub struct Target {
    /// The host's name in fleet.json, like `testbed-coturn-1`.
    pub name: String,
    pub role: Role,
    pub address: IpAddr,
    /// The name its services answer at: `<host>.<domain>`, the event's
    /// domain for the portal, `chat.<domain>` for the chat.
    pub service_name: String,
    /// Every name that must resolve to `address`.
    pub names: Vec<String>,
    /// Probe DNS and TLS of this host: false for the second role of a
    /// static host (the first one does it).
    pub primary: bool,
    pub ports: Ports,
}

/// Where a host's services listen. Production: HTTPS 443, TURN 3478/5349.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub https: u16,
    pub turn: u16,
    pub turns: u16,
    /// Speak plain HTTP on `https` and skip the TLS probe: only for the
    /// tests' local services, which have no TLS in front.
    pub plain_http: bool,
}

impl Default for Ports {
    fn default() -> Self {
        Ports {
            https: 443,
            turn: 3478,
            turns: 5349,
            plain_http: false,
        }
    }
}

impl Target {
    /// How messages name the host: `venue-turn-1 (10.233.0.6)`.
    pub fn who(&self) -> String {
        format!("{} ({})", self.name, self.address)
    }

    pub fn socket(&self, port: u16) -> SocketAddr {
        SocketAddr::new(self.address, port)
    }
}

/// The event's secrets the probes sign with. Debug never prints them.
#[derive(Clone)]
pub struct EventSecrets {
    pub bbb: String,
    pub turn: String,
    pub jwt: String,
}

impl fmt::Debug for EventSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EventSecrets(…)")
    }
}

/// Everything a round of probes needs.
pub struct Check {
    pub event: Arc<Event>,
    pub targets: Vec<Target>,
    pub secrets: EventSecrets,
    /// The BBB checksum algorithm the portal uses (modules/portal.nix: sha256).
    pub checksum: Checksum,
    /// The Jitsi tokens' `iss`/`aud` (modules/jitsi.nix's jwt.appId).
    pub jitsi_app_id: String,
    /// Ask this DNS server instead of the system's resolver.
    pub resolver: Option<SocketAddr>,
    /// Roots the hosts' certificates must chain to.
    pub tls: Arc<rustls::ClientConfig>,
    /// The longest any one probe may take.
    pub timeout: Duration,
    /// Creates and removes the portal's probe ticket; None: that probe fails
    /// saying why.
    pub tickets: Option<Arc<dyn portal::TicketDesk>>,
}

/// The result of one probe: a row of the table, an element of `--json`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Probe {
    pub host: String,
    pub role: String,
    pub probe: String,
    pub ok: bool,
    pub seconds: f64,
    pub message: String,
    /// Passed, with something to act on soon (a certificate with < 14 days).
    #[serde(skip)]
    pub warning: bool,
}

impl Probe {
    /// What `--watch` compares between rounds.
    pub fn key(&self) -> (String, String) {
        (self.host.clone(), self.probe.clone())
    }

    pub fn result(&self) -> &'static str {
        match (self.ok, self.warning) {
            (false, _) => "FAIL",
            (true, true) => "warn",
            (true, false) => "ok",
        }
    }
}

/// How a probe ended; a failure's text says the cause, the runner adds the host.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Ok(String),
    Warn(String),
    Fail(String),
}

/// The service a role runs, for messages.
pub fn service(role: Role) -> &'static str {
    match role {
        Role::Bbb => "BBB",
        Role::Jitsi => "Jitsi",
        Role::Jvb => "videobridge",
        Role::Coturn => "coturn",
        Role::Portal => "portal",
        Role::Stream => "stream origin",
        Role::Edge => "stream edge",
        Role::Chat => "chat",
    }
}

/// Runs one probe with the check's timeout and makes its row. `what` names
/// what did not answer when the time runs out (like `UDP 3478`).
pub async fn probe(
    check: &Check,
    target: &Target,
    name: impl Into<String>,
    what: &str,
    body: impl Future<Output = Outcome>,
) -> Probe {
    probe_within(target, name, what, check.timeout, body).await
}

/// [`probe`] with a time allowance of its own (for multi-step probes).
pub async fn probe_within(
    target: &Target,
    name: impl Into<String>,
    what: &str,
    timeout: Duration,
    body: impl Future<Output = Outcome>,
) -> Probe {
    let started = Instant::now();
    let outcome = match tokio::time::timeout(timeout, body).await {
        Ok(o) => o,
        Err(_) => Outcome::Fail(format!("{what} no answer in {} s", timeout.as_secs_f64())),
    };
    let (ok, warning, message) = match outcome {
        Outcome::Ok(m) => (true, false, m),
        Outcome::Warn(m) => (true, true, format!("warning: {m}")),
        Outcome::Fail(m) => (
            false,
            false,
            format!("{} on {}: {m}", service(target.role), target.who()),
        ),
    };
    let probe: String = name.into();
    tracing::debug!(host = %target.name, probe = %probe, ok, %message, "probe done");
    Probe {
        host: target.name.clone(),
        role: target.role.to_string(),
        probe,
        ok,
        seconds: (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
        message,
        warning,
    }
}

/// The result of a whole round.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub ok: bool,
    pub probes: Vec<Probe>,
}

/// Every probe of every host, all at once.
pub async fn run_once(check: &Check) -> Report {
    let mut families: Vec<BoxFuture<'_, Vec<Probe>>> = Vec::new();
    for t in &check.targets {
        if t.primary {
            families.push(Box::pin(dns::probes(check, t)));
            if !t.ports.plain_http {
                families.push(Box::pin(tls::probes(check, t)));
            }
        }
        match t.role {
            Role::Portal => families.push(Box::pin(portal::probes(check, t))),
            Role::Bbb => {
                families.push(Box::pin(bbb::probes(check, t)));
                families.push(Box::pin(load::probes(check, t)));
            }
            Role::Jitsi => families.push(Box::pin(jitsi::probes(check, t))),
            Role::Coturn => families.push(Box::pin(turn::probes(check, t))),
            Role::Chat => families.push(Box::pin(chat::probes(check, t))),
            Role::Jvb | Role::Stream | Role::Edge => {}
        }
    }
    let mut probes: Vec<Probe> = futures_util::future::join_all(families)
        .await
        .into_iter()
        .flatten()
        .collect();
    probes.sort_by(|a, b| (&a.host, &a.role, &a.probe).cmp(&(&b.host, &b.role, &b.probe)));
    Report {
        ok: probes.iter().all(|p| p.ok),
        probes,
    }
}

/// One row per probe, for humans.
pub fn table(report: &Report) -> String {
    let mut rows = vec![["HOST", "ROLE", "PROBE", "RESULT", "TIME", "MESSAGE"]
        .map(String::from)
        .to_vec()];
    for p in &report.probes {
        rows.push(vec![
            p.host.clone(),
            p.role.clone(),
            p.probe.clone(),
            p.result().to_owned(),
            format!("{:.2}s", p.seconds),
            p.message.clone(),
        ]);
    }
    crate::model::table::render(&rows)
}

/// The last line under the table.
pub fn summary(report: &Report) -> String {
    let failed = report.probes.iter().filter(|p| !p.ok).count();
    let warned = report.probes.iter().filter(|p| p.warning).count();
    if failed == 0 {
        format!(
            "all {} probes passed{}",
            report.probes.len(),
            if warned > 0 {
                format!(" ({warned} with a warning)")
            } else {
                String::new()
            }
        )
    } else {
        format!("{failed} of {} probes failed", report.probes.len())
    }
}

/// What the `venue check` command line gives.
pub struct CommandOptions<'a> {
    pub event: &'a std::path::Path,
    pub state: Option<&'a std::path::Path>,
    pub json: bool,
    pub watch: Option<Duration>,
    /// `ADDR` or `ADDR:PORT` (port 53 when left out); None: VENUE_RESOLVER,
    /// else the system's resolver.
    pub resolver: Option<&'a str>,
}

/// The variable that gives `--resolver` its default (a rehearsal's env file
/// sets it to fake-hcloud's DNS server).
pub const RESOLVER_ENV: &str = "VENUE_RESOLVER";

/// Runs the command; true when every probe of the (last) round passed.
pub fn command(opts: CommandOptions) -> anyhow::Result<bool> {
    let resolver = resolver(opts.resolver, std::env::var(RESOLVER_ENV).ok().as_deref())?;
    let check = setup::load(&setup::Options {
        event: opts.event,
        state: opts.state,
        resolver,
    })?;
    let mut out = std::io::stdout();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = rt.block_on(async {
        match opts.watch {
            Some(every) => watch::watch(&check, every, opts.json, &mut out).await,
            None => watch::once(&check, opts.json, &mut out).await,
        }
    });
    // A probe abandoned at its timeout may still sit in a blocking SSH call:
    // the answer is printed, do not wait for it.
    rt.shutdown_timeout(Duration::from_millis(200));
    result
}

/// The DNS server to ask: `--resolver` when given, else VENUE_RESOLVER when
/// set and not empty, else none (the system's resolver).
pub fn resolver(flag: Option<&str>, env: Option<&str>) -> anyhow::Result<Option<SocketAddr>> {
    match (flag, env.map(str::trim).filter(|v| !v.is_empty())) {
        (Some(flag), _) => parse_resolver(flag).map(Some),
        (None, Some(env)) => parse_resolver(env)
            .map(Some)
            .map_err(|e| anyhow::anyhow!("{RESOLVER_ENV}={env} (the default of --resolver): {e}")),
        (None, None) => Ok(None),
    }
}

/// `--resolver`: an address with an optional port.
pub fn parse_resolver(s: &str) -> anyhow::Result<SocketAddr> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Ok(ip) = s.trim_matches(['[', ']']).parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    anyhow::bail!(
        "--resolver {s}: expected an IP address, optionally with :PORT (like 127.0.0.1:5353)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resolver_with_or_without_a_port() {
        assert_eq!(parse_resolver("127.0.0.1:5353").unwrap().port(), 5353);
        assert_eq!(parse_resolver("192.0.2.53").unwrap().port(), 53);
        assert_eq!(parse_resolver("[::1]:53").unwrap().ip().to_string(), "::1");
        assert_eq!(parse_resolver("::1").unwrap().port(), 53);
        let e = parse_resolver("ns.example.org").unwrap_err().to_string();
        assert!(e.contains("--resolver ns.example.org"), "{e}");
    }

    #[test]
    fn venue_resolver_is_the_default_of_the_flag() {
        let env = Some("127.0.0.1:5353");
        assert_eq!(resolver(None, env).unwrap().unwrap().port(), 5353);
        assert_eq!(
            resolver(Some("192.0.2.53"), env).unwrap().unwrap(),
            "192.0.2.53:53".parse().unwrap(),
            "the flag wins"
        );
        assert_eq!(resolver(None, None).unwrap(), None);
        assert_eq!(resolver(None, Some(" ")).unwrap(), None, "set but empty");
        let e = format!("{:#}", resolver(None, Some("ns.example.org")).unwrap_err());
        assert!(e.contains("VENUE_RESOLVER=ns.example.org"), "{e}");
    }
}
