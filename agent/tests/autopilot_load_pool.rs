//! The pool file reaches the portal host over the pinned SSH: on a real
//! test host (a network namespace with its own sshd and /var/lib/venue),
//! with the content and mode the portal reads, renamed into place so a
//! reader never sees half a file, and replaced by the next publish. Needs
//! root, iproute2 and sshd, as CI runs it.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use conference::protocol::bbb::Checksum;
use venue_agent::autopilot::pool::{self, Entry, PoolFile};
use venue_agent::deploy::ssh::{PinnedKey, Ssh};
use venue_agent::model::keys;
use venue_agent::model::state::StateDir;
use venue_testbed::netns::{NetnsHosts, Provisioning};

struct Host {
    hosts: NetnsHosts,
    name: String,
    state: StateDir,
    address: String,
    tmp: PathBuf,
}

impl Drop for Host {
    fn drop(&mut self) {
        self.hosts.clear();
        let _ = std::fs::remove_dir_all(&self.tmp);
    }
}

impl Host {
    fn start(tag: &str) -> Host {
        let tmp = std::env::temp_dir().join(format!("venue-pool-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let state = StateDir::open(tmp.join("state")).unwrap();
        let hosts = NetnsHosts::new(&tmp.join("hosts")).expect(
            "test hosts need root, iproute2 and sshd: run as root after scripts/install-deps",
        );
        let name = format!("pool{tag}-portal-1");
        let deploy_key = keys::deploy_key(&state, "testbed").unwrap();
        let host_key = keys::host_key(&state, &name).unwrap();
        let provisioning = Provisioning::from_user_data(
            &keys::user_data(&name, &host_key),
            vec![deploy_key.public.clone()],
        )
        .unwrap();
        let address = hosts.create(&name, &provisioning).unwrap().to_string();
        Host {
            hosts,
            name,
            state,
            address,
            tmp,
        }
    }

    fn ssh(&self) -> Ssh {
        let key = self
            .state
            .read(&format!("hosts/{}/ssh_host_ed25519_key.pub", self.name))
            .unwrap();
        Ssh::connect(
            &self.address,
            22,
            &PinnedKey::parse(key.trim()).unwrap(),
            "root",
            &self.state.path("deploy_ed25519"),
            Duration::from_secs(10),
        )
        .unwrap()
    }

    /// The host's /var/lib/venue, seen from this machine.
    fn var_lib_venue(&self) -> PathBuf {
        self.hosts
            .with_host(&self.name, |h| h.dir.join("var-lib-venue"))
            .unwrap()
    }
}

fn pool(servers: &[(&str, bool)], updated: &str) -> PoolFile {
    PoolFile {
        bbb: servers
            .iter()
            .map(|(n, d)| Entry::new(n, "ev.example.org", Checksum::Sha256, *d))
            .collect(),
        updated: updated.parse::<DateTime<Utc>>().unwrap(),
    }
}

fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "pool.json" && n != "secrets")
        .collect()
}

#[test]
fn the_pool_file_arrives_whole_with_mode_0644_and_is_replaced() {
    let host = Host::start("a");
    let ssh = host.ssh();
    let dir = host.var_lib_venue();
    let file = dir.join("pool.json");
    assert!(!file.exists());

    let first = pool(
        &[("ev-bbb-1", false), ("ev-bbb-2", false)],
        "2026-12-01T08:00:00Z",
    );
    pool::publish(&ssh, &first).unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"bbb": [
            {"name": "ev-bbb-1", "url": "https://ev-bbb-1.ev.example.org/bigbluebutton/api/",
             "secret_file": "/var/lib/venue/secrets/bbb-secret", "checksum": "sha256", "draining": false},
            {"name": "ev-bbb-2", "url": "https://ev-bbb-2.ev.example.org/bigbluebutton/api/",
             "secret_file": "/var/lib/venue/secrets/bbb-secret", "checksum": "sha256", "draining": false}],
         "updated": "2026-12-01T08:00:00Z"})
    );
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o644);
    assert_eq!(meta.uid(), 0);
    let first_inode = meta.ino();

    // The next publish drains one: a new file renamed over the old one.
    let second = pool(
        &[("ev-bbb-1", false), ("ev-bbb-2", true)],
        "2026-12-01T09:00:00Z",
    );
    pool::publish(&ssh, &second).unwrap();
    let again: PoolFile = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(again, second);
    assert_ne!(
        std::fs::metadata(&file).unwrap().ino(),
        first_inode,
        "renamed into place"
    );
    assert_eq!(
        leftovers(&dir),
        Vec::<String>::new(),
        "no temporary file is left"
    );

    // A path that cannot be written fails, naming the host and the path,
    // and leaves the pool as it was.
    let err = pool::publish_at(&ssh, "/proc/venue/pool.json", &first).unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains(&host.address) && msg.contains("/proc/venue/pool.json"),
        "{msg}"
    );
    assert_eq!(
        serde_json::from_str::<PoolFile>(&std::fs::read_to_string(&file).unwrap()).unwrap(),
        second
    );
}

#[test]
fn a_reader_never_sees_half_a_pool() {
    let host = Host::start("b");
    let ssh = host.ssh();
    let file = host.var_lib_venue().join("pool.json");
    // Big enough that a write in place would be seen half done.
    let names: Vec<String> = (1..=400).map(|i| format!("ev-bbb-{i}")).collect();
    let big = |draining: bool, updated: &str| {
        let servers: Vec<(&str, bool)> = names.iter().map(|n| (n.as_str(), draining)).collect();
        pool(&servers, updated)
    };
    pool::publish(&ssh, &big(false, "2026-12-01T08:00:00Z")).unwrap();

    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (done, file) = (done.clone(), file.clone());
        std::thread::spawn(move || {
            let mut reads = 0u32;
            while !done.load(Ordering::Relaxed) {
                let text = std::fs::read_to_string(&file).expect("the file is always there");
                let p: PoolFile = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("a half-written pool ({e}): {} bytes", text.len()));
                assert_eq!(p.bbb.len(), 400);
                reads += 1;
            }
            reads
        })
    };
    for i in 0..20 {
        pool::publish(&ssh, &big(i % 2 == 0, &format!("2026-12-01T09:{i:02}:00Z"))).unwrap();
    }
    done.store(true, Ordering::Relaxed);
    let reads = reader.join().expect("every read was a whole pool");
    assert!(reads > 20, "the reader read {reads} times");
}
