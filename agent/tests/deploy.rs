//! Deploy against real test hosts: network namespaces with their own sshd
//! and their own Nix store, toy systems built by real Nix. Needs root (as CI
//! runs), Nix, sshd and iproute2 (scripts/install-deps).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::Duration;

use conference::Role;
use venue_agent::deploy::activate::{check_health, current_system, HealthCheck};
use venue_agent::deploy::secrets::Secrets;
use venue_agent::deploy::ssh::{PinnedKey, Ssh};
use venue_agent::deploy::{closure, deploy, Host, Options, Outcome};
use venue_agent::model::keys;
use venue_agent::model::state::StateDir;
use venue_testbed::netns::{NetnsHosts, Provisioning};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn offline_nix() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::env::set_var("NIX_CONFIG", "experimental-features = nix-command flakes\nsandbox = false\nbuild-users-group =\nsubstituters =");
    });
}

struct Bed {
    state: StateDir,
    hosts: NetnsHosts,
    fleet: PathBuf,
    servers: Vec<(String, Role, String)>,
    _tmp: TempDir,
}

struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts one test host per (name, role), provisioned as cloud-init would
/// from venue's own user_data, and writes their fleet.json.
fn bed(tag: &str, servers: &[(&str, Role)]) -> Bed {
    offline_nix();
    let tmp = std::env::temp_dir().join(format!("venue-deploy-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let state = StateDir::open(tmp.join("state")).unwrap();
    let hosts = NetnsHosts::new(&tmp.join("hosts"))
        .expect("test hosts need root, iproute2 and sshd: run as root after scripts/install-deps");
    let deploy_key = keys::deploy_key(&state, "testbed").unwrap();
    let mut fleet_servers = Vec::new();
    let mut made = Vec::new();
    for (name, role) in servers {
        let host_key = keys::host_key(&state, name).unwrap();
        let provisioning = Provisioning::from_user_data(
            &keys::user_data(name, &host_key),
            vec![deploy_key.public.clone()],
        )
        .unwrap();
        let address = hosts.create(name, &provisioning).unwrap().to_string();
        fleet_servers.push(serde_json::json!({"name": name, "role": role, "server_type": "cx23", "location": "fsn1", "ipv4": address, "ipv6": null, "static": false}));
        made.push((name.to_string(), *role, address));
    }
    let fleet = state
        .write("fleet.json", serde_json::json!({"event": "testbed", "domain": "testbed.example.org", "servers": fleet_servers}).to_string().as_bytes(), 0o644)
        .unwrap();
    Bed {
        state,
        hosts,
        fleet,
        servers: made,
        _tmp: TempDir(tmp),
    }
}

impl Bed {
    fn host_list(&self) -> Vec<Host> {
        self.servers
            .iter()
            .map(|(name, role, address)| Host {
                name: name.clone(),
                roles: vec![*role],
                address: address.clone(),
                port: 22,
                host_key: self
                    .state
                    .read(&format!("hosts/{name}/ssh_host_ed25519_key.pub"))
                    .unwrap()
                    .trim()
                    .to_owned(),
            })
            .collect()
    }

    fn options(&self) -> Options {
        Options {
            user: "root".into(),
            identity: self.state.path("deploy_ed25519"),
            concurrency: 4,
            connect_wait: Duration::from_secs(10),
            health: health(Duration::from_secs(10)),
            substitute: false,
            compress: true,
            work_dir: self.state.dir.clone(),
            journal: Some(self.state.dir.clone()),
        }
    }

    /// Builds the toy systems with extra arguments to systems.nix.
    fn systems(&self, args: &str) -> BTreeMap<String, PathBuf> {
        let file = self.state.write("systems.nix", format!("{{ fleet }}: import {}/hosts/testbed/systems.nix ({{ inherit fleet; }} // {args})\n", repo().display()).as_bytes(), 0o644).unwrap();
        let names: Vec<String> = self.servers.iter().map(|s| s.0.clone()).collect();
        closure::build(&file, &self.fleet, &names).unwrap()
    }

    fn ssh(&self, i: usize) -> Ssh {
        let h = &self.host_list()[i];
        Ssh::connect(
            &h.address,
            22,
            &PinnedKey::parse(&h.host_key).unwrap(),
            "root",
            &self.state.path("deploy_ed25519"),
            Duration::from_secs(5),
        )
        .unwrap()
    }

    fn host_dir(&self, i: usize) -> PathBuf {
        self.hosts
            .with_host(&self.servers[i].0, |h| h.dir.clone())
            .unwrap()
    }
}

fn health(timeout: Duration) -> HealthCheck {
    HealthCheck {
        port: 80,
        path: "/healthz".into(),
        timeout,
    }
}

#[test]
fn deploy_makes_every_host_healthy_and_an_unchanged_redeploy_copies_nothing() {
    let bed = bed(
        "ok",
        &[
            ("testbed-jitsi-1", Role::Jitsi),
            ("testbed-coturn-1", Role::Coturn),
            ("testbed-portal-1", Role::Portal),
        ],
    );
    let secrets = Secrets::load_or_create(&bed.state).unwrap();
    let systems = bed.systems("{ }");
    let reports = deploy(&bed.host_list(), &systems, &secrets, &bed.options());
    for r in &reports {
        assert_eq!(r.outcome, Outcome::Healthy, "{r:?}");
        assert!(r.copied_paths >= 2, "{r:?}");
        check_health(&r.address, &health(Duration::from_secs(2))).unwrap();
    }
    // Each host has its own store: the system is valid there, with the profile on it.
    let ssh = bed.ssh(0);
    assert_eq!(
        current_system(&ssh).unwrap().as_deref(),
        Some(systems["testbed-jitsi-1"].to_str().unwrap())
    );

    let again = deploy(&bed.host_list(), &systems, &secrets, &bed.options());
    for r in &again {
        assert_eq!(r.outcome, Outcome::Unchanged, "{r:?}");
        assert_eq!(r.copied_paths, 0, "{r:?}");
        assert_eq!(r.copied_bytes, 0, "{r:?}");
    }
}

#[test]
fn a_host_with_another_key_is_refused_and_gets_nothing() {
    let bed = bed("key", &[("testbed-coturn-1", Role::Coturn)]);
    let secrets = Secrets::load_or_create(&bed.state).unwrap();
    let systems = bed.systems("{ }");
    let mut hosts = bed.host_list();
    // Pin a key the host does not have (an impostor at the same address).
    hosts[0].host_key = keys::host_key(&bed.state, "someone-else").unwrap().public;
    let reports = deploy(&hosts, &systems, &secrets, &bed.options());
    assert_eq!(reports[0].outcome, Outcome::Refused, "{:?}", reports[0]);
    assert!(
        reports[0].message.contains("not the pinned key"),
        "{}",
        reports[0].message
    );
    let dir = bed.host_dir(0);
    let store: Vec<_> = std::fs::read_dir(dir.join("nix")).unwrap().collect();
    assert!(
        store.is_empty(),
        "nothing reached the host's /nix: {store:?}"
    );
    assert!(
        !dir.join("var-lib-venue/secrets").exists(),
        "no secret reached the host"
    );
}

#[test]
fn a_system_that_fails_its_health_check_is_rolled_back() {
    let bed = bed("rollback", &[("testbed-portal-1", Role::Portal)]);
    let secrets = Secrets::load_or_create(&bed.state).unwrap();
    let good = bed.systems("{ }");
    let first = deploy(&bed.host_list(), &good, &secrets, &bed.options());
    assert_eq!(first[0].outcome, Outcome::Healthy, "{:?}", first[0]);

    let broken = bed.systems(r#"{ broken = [ "testbed-portal-1" ]; generation = "2"; }"#);
    assert_ne!(broken["testbed-portal-1"], good["testbed-portal-1"]);
    let mut opts = bed.options();
    opts.health = health(Duration::from_secs(3));
    let second = deploy(&bed.host_list(), &broken, &secrets, &opts);
    assert_eq!(second[0].outcome, Outcome::RolledBack, "{:?}", second[0]);
    let ssh = bed.ssh(0);
    assert_eq!(
        current_system(&ssh).unwrap().as_deref(),
        Some(good["testbed-portal-1"].to_str().unwrap()),
        "the profile points at the previous generation"
    );
    check_health(&second[0].address, &health(Duration::from_secs(5)))
        .expect("the previous system answers again");
    let generations = ssh
        .check("nix-env -p /nix/var/nix/profiles/system --list-generations")
        .unwrap();
    assert!(generations.lines().count() >= 2, "{generations}");
}

#[test]
fn secrets_are_files_of_mode_0400_and_in_no_store_path_or_journal() {
    let bed = bed("secrets", &[("testbed-portal-1", Role::Portal)]);
    let secrets = Secrets::load_or_create(&bed.state).unwrap();
    let systems = bed.systems("{ }");
    let reports = deploy(&bed.host_list(), &systems, &secrets, &bed.options());
    assert_eq!(reports[0].outcome, Outcome::Healthy, "{:?}", reports[0]);
    assert_eq!(reports[0].secrets, 7);

    let ssh = bed.ssh(0);
    let listing = ssh
        .check("stat -c '%a %n' /var/lib/venue/secrets /var/lib/venue/secrets/*")
        .unwrap();
    assert!(
        listing.lines().next().unwrap().starts_with("700 "),
        "{listing}"
    );
    for name in [
        "bbb-secret",
        "jwt-secret",
        "turn-secret",
        "portal-session",
        "capture-secret",
        "oidc-client-secret",
        "synapse-registration-secret",
    ] {
        assert!(
            listing.contains(&format!("400 /var/lib/venue/secrets/{name}")),
            "{listing}"
        );
        let remote = ssh
            .check(&format!("cat /var/lib/venue/secrets/{name}"))
            .unwrap();
        assert_eq!(remote, secrets.get(name).unwrap());
    }
    let local_mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&secrets.file).unwrap().permissions(),
    );
    assert_eq!(local_mode & 0o777, 0o600);

    // Not in any store path of the host, nor of this machine's store paths we built.
    let mut stores = vec![bed.host_dir(0).join("nix/store")];
    stores.extend(systems.values().cloned());
    for value in secrets.values() {
        for dir in &stores {
            let hit = std::process::Command::new("grep")
                .args(["-rqF", value])
                .arg(dir)
                .status()
                .unwrap();
            // grep: 1 = searched, not found; 0 = found; 2 = could not search.
            assert_eq!(
                hit.code(),
                Some(1),
                "a secret is in {}, or it could not be searched",
                dir.display()
            );
        }
        let journal = bed.state.read("journal.jsonl").unwrap_or_default();
        assert!(!journal.contains(value));
        assert!(!format!("{reports:?}").contains(value));
    }
}

#[test]
fn one_build_gives_every_host_its_own_system_and_a_missing_one_is_named() {
    offline_nix();
    let tmp = TempDir(std::env::temp_dir().join(format!("venue-build-{}", std::process::id())));
    let state = StateDir::open(tmp.0.join("state")).unwrap();
    let servers: Vec<serde_json::Value> = ["b-portal-1", "a-coturn-1", "c-jitsi-1"]
        .iter()
        .zip(["portal", "coturn", "jitsi"])
        .map(|(n, r)| serde_json::json!({"name": n, "role": r, "server_type": "cx23", "location": "fsn1", "ipv4": "192.0.2.1", "ipv6": null, "static": false}))
        .collect();
    let fleet = state
        .write(
            "fleet.json",
            serde_json::json!({"event": "t", "domain": "t.example.org", "servers": servers})
                .to_string()
                .as_bytes(),
            0o644,
        )
        .unwrap();
    let systems = repo().join("hosts/testbed/systems.nix");
    // Not in alphabetical order: each path must land on its own host.
    let names: Vec<String> = ["c-jitsi-1", "a-coturn-1", "b-portal-1"]
        .map(String::from)
        .to_vec();
    let built = closure::build(&systems, &fleet, &names).unwrap();
    for name in &names {
        assert!(
            built[name]
                .to_string_lossy()
                .ends_with(&format!("toy-system-{name}")),
            "{name}: {:?}",
            built[name]
        );
    }
    let e = closure::build(
        &systems,
        &fleet,
        &["a-coturn-1".into(), "no-such-host".into()],
    )
    .unwrap_err();
    assert!(format!("{e:#}").contains("no-such-host"), "{e:#}");
}
