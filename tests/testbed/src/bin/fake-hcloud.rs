//! `fake-hcloud --listen 127.0.0.1:PORT`: the fake Hetzner Cloud API under
//! `/v1`, for rehearsals (`HCLOUD_ENDPOINT=http://127.0.0.1:PORT/v1`).
//! `fake-hcloud --rehearsal --env-file FILE` starts a whole rehearsal (test
//! hosts, zone, DNS, Pebble) and writes what `venue` needs to FILE.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::Parser;
use conference::clock::{self, Clock};
use std::sync::Arc;

use venue_testbed::netns::NetnsHosts;
use venue_testbed::FakeConfig;

/// The testbed event's zone (hosts/testbed/event.toml `[dns] zone`).
const REHEARSAL_ZONE: &str = "example.org";

#[derive(Parser)]
#[command(about = "A fake Hetzner Cloud API (fake-hcloud), faithful to the official OpenAPI spec")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// The one API token it accepts.
    #[arg(long, env = "FAKE_HCLOUD_TOKEN", default_value = "fake-token")]
    token: String,
    /// How long actions (create, delete, power on) run, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    action_ms: u64,
    /// Requests per hour before 429 rate_limit_exceeded.
    #[arg(long, default_value_t = 3600)]
    rate_limit: u32,
    /// Share of requests (0 to 1) that fail at random: 503, locked, conflict,
    /// or a connection dropped before or after the request is handled.
    #[arg(long, default_value_t = 0.0)]
    fault_rate: f64,
    /// Seed of the random faults, for a reproducible rehearsal.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// What a created server is: `doc` gives it documentation addresses only;
    /// `netns` makes it a real test host (network namespace, own /nix, sshd
    /// configured from its user_data; needs root), removed with the server.
    #[arg(long, value_enum, default_value = "doc")]
    hosts: Hosts,
    /// Where `--hosts netns` keeps the hosts' files.
    #[arg(long)]
    hosts_dir: Option<std::path::PathBuf>,
    /// Answer DNS queries for the fake's zones on this address (UDP and TCP).
    #[arg(long)]
    dns: Option<std::net::SocketAddr>,
    /// Create a DNS zone of this name at start (repeatable).
    #[arg(long = "zone")]
    zones: Vec<String>,
    /// Also start Debian's `pebble` (ACME test server) resolving through
    /// `--dns`; prints its directory URL and root certificates.
    #[arg(long)]
    acme: bool,
    /// A whole rehearsal of hosts/testbed: `--hosts netns --zone example.org
    /// --dns 127.0.0.1:0 --acme` (flags given as well win), with the
    /// testbed's venue-portal and fake-bbb for the hosts' services.
    #[arg(long)]
    rehearsal: bool,
    /// Once everything answers, write what `venue` needs here as `export
    /// K=V` lines for sh (`. FILE`), and print them.
    #[arg(long)]
    env_file: Option<PathBuf>,
    /// The venue-portal binary the portal host runs (VENUE_TESTBED_PORTAL;
    /// default: beside fake-hcloud, as `cargo build --bins` leaves it).
    #[arg(long)]
    portal: Option<PathBuf>,
    /// The fake-bbb binary the bbb host runs (VENUE_TESTBED_BBB; default:
    /// beside fake-hcloud).
    #[arg(long)]
    bbb: Option<PathBuf>,
    /// Start an accelerated clock at this venue time (RFC 3339, e.g.
    /// 2026-12-01T08:00:00Z): every timestamp and the bill follow it, and
    /// the env file's VENUE_CLOCK gives venue the same time. Without it,
    /// VENUE_CLOCK (if set) is the fake's clock, else real time.
    #[arg(long, value_parser = parse_time)]
    clock: Option<DateTime<Utc>>,
    /// How many times faster than real time the `--clock` runs.
    #[arg(long, requires = "clock", default_value_t = 1.0, value_parser = parse_speed)]
    speed: f64,
}

fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{s:?} is not an RFC 3339 time like 2026-12-01T08:00:00Z: {e}"))
}

fn parse_speed(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not a positive number")),
    }
}

/// The clock: `--clock`/`--speed` anchored at the real now, else
/// VENUE_CLOCK, else real time.
fn clock_of(args: &Args) -> anyhow::Result<Clock> {
    match args.clock {
        Some(start) => {
            if std::env::var(clock::ENV).is_ok_and(|v| !v.trim().is_empty()) {
                eprintln!("fake-hcloud: --clock given: {} is not used", clock::ENV);
            }
            Ok(Clock::accelerated(start, args.speed))
        }
        None => Clock::from_env().map_err(|e| anyhow::anyhow!("fake-hcloud: {e}")),
    }
}

/// A binary the hosts run: as given, else beside this one; it must exist.
fn testbed_binary(given: &Option<PathBuf>, name: &str, flag: &str) -> anyhow::Result<PathBuf> {
    let path = match given {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .map(|d| d.join(name))
            .unwrap_or_else(|| PathBuf::from(name)),
    };
    if !path.is_file() {
        anyhow::bail!(
            "fake-hcloud: {}: no {name} binary there (the test hosts run it): \
             `cargo build --bins`, or name it with {flag}",
            path.display()
        );
    }
    Ok(std::fs::canonicalize(&path)?)
}

/// `value` quoted for sh: single quotes, with `'` written as `'\''`.
fn sh_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "'\\''"))
}

/// Writes `export K=V` lines to `path` at once (a reader never sees half).
fn write_env(path: &Path, vars: &[(&str, String)]) -> anyhow::Result<String> {
    let mut text = format!(
        "# fake-hcloud (pid {}): `. {}`, then venue up / check / down\n",
        std::process::id(),
        path.display()
    );
    for (k, v) in vars {
        text.push_str(&format!("export {k}={}\n", sh_quote(v)));
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, &text)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| anyhow::anyhow!("fake-hcloud: --env-file {}: {e}", path.display()))?;
    Ok(text)
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Hosts {
    Doc,
    Netns,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let mut args = Args::parse();
    if args.rehearsal {
        args.hosts = Hosts::Netns;
        if args.zones.is_empty() {
            args.zones.push(REHEARSAL_ZONE.to_owned());
        }
        args.dns.get_or_insert(([127, 0, 0, 1], 0).into());
        args.acme = true;
    }
    if args.acme && args.dns.is_none() {
        anyhow::bail!("fake-hcloud: --acme needs --dns (Pebble resolves through it)");
    }
    let clock = clock_of(&args)?;
    // The hosts' services: checked before anything starts.
    let services = match args.hosts {
        Hosts::Netns if args.rehearsal || args.env_file.is_some() => vec![
            (
                "VENUE_TESTBED_PORTAL",
                testbed_binary(&args.portal, "venue-portal", "--portal")?,
            ),
            (
                "VENUE_TESTBED_BBB",
                testbed_binary(&args.bbb, "fake-bbb", "--bbb")?,
            ),
        ],
        _ => vec![],
    };
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| anyhow::anyhow!("fake-hcloud: cannot listen on {}: {e}", args.listen))?;
    let endpoint = format!("http://{}/v1", listener.local_addr()?);
    eprintln!("fake-hcloud: serving {endpoint}");
    if !clock.is_real() {
        eprintln!("fake-hcloud: clock {clock} (now {})", clock.now());
    }
    let netns = match args.hosts {
        Hosts::Doc => None,
        Hosts::Netns => {
            let dir = args.hosts_dir.clone().unwrap_or_else(|| {
                std::env::temp_dir().join(format!("fake-hcloud-hosts-{}", std::process::id()))
            });
            Some(Arc::new(NetnsHosts::new(&dir)?))
        }
    };
    let mut cfg = FakeConfig {
        token: args.token.clone(),
        clock,
        action_duration: Duration::from_millis(args.action_ms),
        rate_limit: args.rate_limit,
        record: false,
        seed: args.seed,
        ..FakeConfig::default()
    };
    if let Some(hosts) = &netns {
        cfg.hook = hosts.clone();
    }
    let fake = venue_testbed::FakeCloud::new_handle(cfg, &listener)?;
    fake.set_fault_rate(args.fault_rate);
    for zone in &args.zones {
        let z = fake.with_state(|s| s.add_zone(zone));
        if z.is_null() {
            anyhow::bail!(
                "fake-hcloud: --zone {zone}: not a zone name (lower case, like example.org)"
            );
        }
        eprintln!("fake-hcloud: zone {zone}");
    }
    let mut env: Vec<(&str, String)> = vec![
        ("HCLOUD_TOKEN", args.token.clone()),
        ("HCLOUD_ENDPOINT", endpoint),
        // Empty: real time, even in a shell that had a rehearsal's clock.
        (
            clock::ENV,
            if clock.is_real() {
                String::new()
            } else {
                clock.to_string()
            },
        ),
    ];
    let mut _pebble = None;
    if let Some(addr) = args.dns {
        let dns = venue_testbed::dns::serve(fake.clone(), addr).await?;
        eprintln!("fake-hcloud: DNS for its zones on {dns} (udp, tcp)");
        env.push(("VENUE_RESOLVER", dns.to_string()));
        if args.acme {
            let dir =
                std::env::temp_dir().join(format!("fake-hcloud-pebble-{}", std::process::id()));
            let pebble = venue_testbed::pebble::Pebble::start(dns, &dir).await?;
            eprintln!("fake-hcloud: pebble (ACME) at {}", pebble.directory);
            // One bundle for venue: its ACME client (instant-acme) reads
            // only the first certificate of the file, so the listener's root
            // goes first; `venue check` trusts all of them, so the issuer's
            // root after it verifies the hosts' certificates.
            let roots = pebble.acme_root.with_file_name("roots.pem");
            let bundle = format!(
                "{}{}",
                std::fs::read_to_string(&pebble.acme_root)?,
                std::fs::read_to_string(&pebble.issuer_root)?
            );
            std::fs::write(&roots, bundle)?;
            eprintln!(
                "  VENUE_ACME_ROOT={}: its listener's root, then {} (the root of what it issues)",
                roots.display(),
                pebble.issuer_root.display()
            );
            env.push(("VENUE_ACME_DIRECTORY", pebble.directory.clone()));
            env.push(("VENUE_ACME_ROOT", roots.display().to_string()));
            _pebble = Some(pebble);
        }
    }
    for (k, v) in &services {
        env.push((k, v.display().to_string()));
    }
    if let Some(path) = &args.env_file {
        let text = write_env(path, &env)?;
        eprintln!("fake-hcloud: wrote {}", path.display());
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())?;
        out.flush()?;
    }
    let served = tokio::select! {
        r = fake.serve(listener) => r,
        _ = shutdown() => Ok(()),
    };
    if let Some(p) = _pebble {
        let dir = p.log.parent().map(std::path::Path::to_path_buf);
        drop(p);
        if let Some(d) = dir {
            std::fs::remove_dir_all(d).ok();
        }
    }
    // Test hosts go with the fake, whatever ended it.
    if let Some(hosts) = netns {
        hosts.clear();
    }
    served
}

async fn shutdown() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    eprintln!("fake-hcloud: stopping");
}
