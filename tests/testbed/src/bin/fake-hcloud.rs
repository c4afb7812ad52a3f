//! `fake-hcloud --listen 127.0.0.1:PORT`: the fake Hetzner Cloud API under
//! `/v1`, for rehearsals (`HCLOUD_ENDPOINT=http://127.0.0.1:PORT/v1`).

use std::time::Duration;

use clap::Parser;
use std::sync::Arc;

use venue_testbed::netns::NetnsHosts;
use venue_testbed::FakeConfig;

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
    #[arg(long, requires = "dns")]
    acme: bool,
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
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| anyhow::anyhow!("fake-hcloud: cannot listen on {}: {e}", args.listen))?;
    eprintln!("fake-hcloud: serving http://{}/v1", listener.local_addr()?);
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
        token: args.token,
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
    let mut _pebble = None;
    if let Some(addr) = args.dns {
        let dns = venue_testbed::dns::serve(fake.clone(), addr).await?;
        eprintln!("fake-hcloud: DNS for its zones on {dns} (udp, tcp)");
        if args.acme {
            let dir =
                std::env::temp_dir().join(format!("fake-hcloud-pebble-{}", std::process::id()));
            let pebble = venue_testbed::pebble::Pebble::start(dns, &dir).await?;
            eprintln!("fake-hcloud: pebble (ACME) at {}", pebble.directory);
            eprintln!(
                "  export VENUE_ACME_DIRECTORY={} VENUE_ACME_ROOT={}",
                pebble.directory,
                pebble.acme_root.display()
            );
            eprintln!(
                "  certificates it issues chain to {}",
                pebble.issuer_root.display()
            );
            _pebble = Some(pebble);
        }
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
