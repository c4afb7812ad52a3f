//! Deploy benchmark: a ~200 MB closure in ~100 store paths to 1, 2, 4 and 8
//! test hosts, by venue (parallel, only what each host lacks, then secrets,
//! activation and health; with and without ssh compression) and, side by
//! side in the same run, by plain
//! `nix copy --to ssh://` to each host one after another (what colmena and
//! deploy-rs do; copying only). Prints wall time and the bytes this machine
//! sent to the hosts (their links' counters). Needs root:
//!
//!     cargo bench -p venue-agent --bench deploy [-- --mib 200 --hosts 1,2,4,8]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use conference::Role;
use venue_agent::deploy::activate::HealthCheck;
use venue_agent::deploy::secrets::Secrets;
use venue_agent::deploy::{closure, deploy, Host, Options, Outcome};
use venue_agent::model::keys;
use venue_agent::model::state::StateDir;
use venue_testbed::netns::{NetnsHosts, Provisioning};

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VENUE_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str, default: &str| -> String {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
            .unwrap_or_else(|| default.to_owned())
    };
    let mib: u32 = value("--mib", "200").parse().expect("--mib N");
    let counts: Vec<usize> = value("--hosts", "1,2,4,8")
        .split(',')
        .map(|n| n.parse().expect("--hosts 1,2,4"))
        .collect();
    std::env::set_var("NIX_CONFIG", "experimental-features = nix-command flakes\nsandbox = false\nbuild-users-group =\nsubstituters =");

    let root = std::env::temp_dir().join(format!("venue-bench-deploy-{}", std::process::id()));
    let state = StateDir::open(root.join("state")).unwrap();
    let deploy_key = keys::deploy_key(&state, "bench").unwrap();
    let max = *counts.iter().max().unwrap();
    let names: Vec<String> = (1..=max).map(|i| format!("bench-portal-{i}")).collect();

    // One system per host, sharing the payload, as NixOS hosts share nixpkgs.
    let fleet = state
        .write(
            "fleet.json",
            serde_json::json!({"event": "bench", "domain": "bench.example.org", "servers": names.iter().map(|n|
                serde_json::json!({"name": n, "role": "portal", "server_type": "cx23", "location": "fsn1", "ipv4": "0.0.0.0", "ipv6": null, "static": false})).collect::<Vec<_>>()})
            .to_string()
            .as_bytes(),
            0o644,
        )
        .unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let systems_nix = state
        .write("systems.nix", format!("{{ fleet }}: import {}/hosts/testbed/systems.nix {{ inherit fleet; payloadMiB = {mib}; }}\n", repo.display()).as_bytes(), 0o644)
        .unwrap();
    eprintln!("building {max} toy systems with a {mib} MiB payload...");
    let systems = closure::build(&systems_nix, &fleet, &names).expect("build toy systems");
    let closure_paths = closure::closure(&systems[&names[0]]).unwrap();
    let nar: u64 = closure::nar_sizes(&closure_paths).unwrap().values().sum();
    println!(
        "closure per host: {} store paths, {:.1} MiB (NAR)\n",
        closure_paths.len(),
        nar as f64 / 1048576.0
    );
    println!(
        "{:>5}  {:>18} {:>9}  {:>18} {:>9}  {:>18} {:>9}",
        "hosts",
        "venue, ssh -C: s",
        "MiB sent",
        "venue, no -C: s",
        "MiB sent",
        "nix copy, seq: s",
        "MiB sent"
    );
    let secrets = Secrets::load_or_create(&state).unwrap();
    for &n in &counts {
        let venue = |compress: bool| {
            let bed = Bed::start(
                &root.join(format!("venue-{compress}-{n}")),
                &state,
                &deploy_key.public,
                &names[..n],
            );
            let hosts = bed.hosts(&state);
            let opts = Options {
                user: "root".into(),
                identity: state.path("deploy_ed25519"),
                concurrency: 8,
                connect_wait: Duration::from_secs(10),
                health: HealthCheck {
                    port: 80,
                    path: "/healthz".into(),
                    timeout: Duration::from_secs(20),
                },
                substitute: true,
                compress,
                work_dir: state.dir.clone(),
                journal: None,
            };
            let start = Instant::now();
            let reports = deploy(&hosts, &systems, &secrets, &opts);
            let elapsed = start.elapsed().as_secs_f64();
            for r in &reports {
                assert_eq!(r.outcome, Outcome::Healthy, "{r:?}");
            }
            (elapsed, bed.bytes_sent())
        };
        let (zip_s, zip_bytes) = venue(true);
        let (raw_s, raw_bytes) = venue(false);
        let (plain_s, plain_bytes) = {
            let bed = Bed::start(
                &root.join(format!("plain-{n}")),
                &state,
                &deploy_key.public,
                &names[..n],
            );
            let start = Instant::now();
            for (name, address) in &bed.addresses {
                let known = state
                    .write(
                        &format!("known_hosts.d/plain-{name}"),
                        format!(
                            "{address} {}\n",
                            state
                                .read(&format!("hosts/{name}/ssh_host_ed25519_key.pub"))
                                .unwrap()
                                .trim()
                        )
                        .as_bytes(),
                        0o644,
                    )
                    .unwrap();
                let out = Command::new("nix")
                    .args(["copy", "--to", &format!("ssh://root@{address}")])
                    .arg(&systems[name])
                    .env(
                        "NIX_SSHOPTS",
                        format!(
                            "-o UserKnownHostsFile={} -o StrictHostKeyChecking=yes -i {}",
                            known.display(),
                            state.path("deploy_ed25519").display()
                        ),
                    )
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            (start.elapsed().as_secs_f64(), bed.bytes_sent())
        };
        let mib = |b: u64| b as f64 / 1048576.0;
        println!(
            "{n:>5}  {zip_s:>18.2} {:>9.1}  {raw_s:>18.2} {:>9.1}  {plain_s:>18.2} {:>9.1}",
            mib(zip_bytes),
            mib(raw_bytes),
            mib(plain_bytes)
        );
    }
    let _ = std::fs::remove_dir_all(&root);
}

struct Bed {
    hosts: NetnsHosts,
    addresses: Vec<(String, String)>,
}

impl Bed {
    fn start(dir: &Path, state: &StateDir, deploy_public: &str, names: &[String]) -> Bed {
        let hosts = NetnsHosts::new(dir).expect("test hosts need root");
        let mut addresses = Vec::new();
        for name in names {
            let key = keys::host_key(state, name).unwrap();
            let p = Provisioning::from_user_data(
                &keys::user_data(name, &key),
                vec![deploy_public.to_owned()],
            )
            .unwrap();
            addresses.push((name.clone(), hosts.create(name, &p).unwrap().to_string()));
        }
        Bed { hosts, addresses }
    }

    fn hosts(&self, state: &StateDir) -> Vec<Host> {
        self.addresses
            .iter()
            .map(|(name, address)| Host {
                name: name.clone(),
                roles: vec![Role::Portal],
                address: address.clone(),
                port: 22,
                host_key: state
                    .read(&format!("hosts/{name}/ssh_host_ed25519_key.pub"))
                    .unwrap()
                    .trim()
                    .to_owned(),
            })
            .collect()
    }

    /// Bytes this machine sent over the hosts' links, SSH and all.
    fn bytes_sent(&self) -> u64 {
        self.addresses
            .iter()
            .filter_map(|(n, _)| self.hosts.with_host(n, |h| h.bytes_received()))
            .sum()
    }
}
