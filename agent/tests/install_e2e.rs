//! The install phase on real test hosts: fake-hcloud creates
//! every server of hosts/testbed/event.toml from `ubuntu-24.04`, so each
//! starts as "Ubuntu" (no Nix, os-release says Ubuntu; tests/testbed/src/netns.rs),
//! and `venue up` kexecs it into the toy installer, runs the toy disko,
//! copies the system into /mnt with real Nix, runs the toy nixos-install,
//! reboots it and deploys (hosts/testbed/installer.nix). Faults live in the
//! toys, armed per host by the test. Needs root, Nix, sshd, iproute2.

mod common;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::dice::Dice;
use common::ok;
use serde_json::Value;
use venue_testbed::netns::NetnsHosts;
use venue_testbed::{FakeCloud, FakeConfig, FakeHandle};

const NIX_CONFIG: &str = "experimental-features = nix-command flakes\nsandbox = false\nbuild-users-group =\nsubstituters =";

struct Bed {
    dir: PathBuf,
    // The event's DNS zone and ACME (Pebble), when the test keeps `[dns]`.
    names: Option<common::Names>,
    hosts: Arc<NetnsHosts>,
    url: String,
    fake: FakeHandle,
    event: String,
    state: String,
}

impl Bed {
    fn new(tag: &str) -> Bed {
        Bed::make(tag, false)
    }

    /// With the event's names and its one certificate (Pebble).
    fn with_names(tag: &str) -> Bed {
        Bed::make(tag, true)
    }

    fn make(tag: &str, names: bool) -> Bed {
        let dir = common::scratch(tag);
        let hosts = Arc::new(
            NetnsHosts::new(&dir.join("hosts"))
                .expect("test hosts need root: run as root after scripts/install-deps"),
        );
        let (url, fake) = FakeCloud::start(FakeConfig {
            action_duration: Duration::from_millis(50),
            hook: hosts.clone(),
            ..FakeConfig::default()
        });
        let event = common::example_event("testbed");
        let mut text = std::fs::read_to_string(&event).unwrap();
        if !names {
            // Names and certificates are testbed_e2e's subject.
            text = text.replace("[dns]\nzone = \"example.org\"", "");
            assert!(!text.contains("[dns]"));
        }
        assert!(text.contains("image = \"ubuntu-24.04\""));
        assert!(text.contains("installer = \"installer.nix\""));
        std::fs::write(&event, text).unwrap();
        let state = dir.join("state").display().to_string();
        Bed {
            names: names.then(|| common::Names::start(&fake, &dir)),
            event: event.display().to_string(),
            state,
            dir,
            hosts,
            url,
            fake,
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_venue"));
        c.args(args)
            .args(["--state", &self.state])
            .env("HCLOUD_ENDPOINT", &self.url)
            .env("HCLOUD_TOKEN", "fake-token")
            .env("VENUE_CLOUD_POLL_MS", "10")
            .env("VENUE_KEXEC_WAIT_MS", "4000")
            .env("NIX_CONFIG", NIX_CONFIG)
            .stdin(Stdio::null());
        if let Some(names) = &self.names {
            c.envs(names.env());
        }
        c
    }

    fn venue(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run venue")
    }

    /// `venue up --json`: its report, and whether it succeeded.
    fn up(&self) -> (Value, bool, String) {
        let out = self.venue(&["up", &self.event, "--json"]);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "venue up printed no report ({e}):\n{}\n{stderr}",
                String::from_utf8_lossy(&out.stdout)
            )
        });
        (v, out.status.success(), stderr)
    }

    /// The servers exist (all Ubuntu), nothing installed yet.
    fn rent(&self) -> Vec<String> {
        ok(&self.venue(&["up", &self.event, "--no-deploy"]));
        let names = self.hosts.names();
        assert_eq!(names.len(), 4, "{names:?}");
        for n in &names {
            assert_eq!(self.mode(n), "ubuntu", "{n}");
        }
        names
    }

    fn mode(&self, name: &str) -> String {
        self.hosts.with_host(name, |h| h.mode()).unwrap()
    }

    fn server_ids(&self) -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = self.fake.with_state(|s| {
            s.servers()
                .iter()
                .map(|v| {
                    (
                        v["name"].as_str().unwrap().to_owned(),
                        v["id"].as_u64().unwrap(),
                    )
                })
                .collect()
        });
        v.sort();
        v
    }

    /// The pinned public host key venue generated for `name`.
    fn pinned(&self, name: &str) -> String {
        let text = std::fs::read_to_string(
            Path::new(&self.state).join(format!("hosts/{name}/ssh_host_ed25519_key.pub")),
        )
        .unwrap();
        let mut parts = text.split_whitespace();
        format!("{} {}", parts.next().unwrap(), parts.next().unwrap())
    }

    fn down(&self) {
        ok(&self.venue(&["down", &self.event, "--yes", "--discard"]));
        assert_eq!(self.fake.with_state(|s| s.servers().len()), 0);
        assert_eq!(common::held_count(&self.fake, "testbed"), 0);
        assert!(self.hosts.names().is_empty());
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        self.hosts.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The system the disk's profile names (what the toy boot loader starts).
fn installed_system(disk: &Path) -> Option<String> {
    let profiles = disk.join("nix/var/nix/profiles");
    let link = std::fs::read_link(profiles.join("system")).ok()?;
    let target = std::fs::read_link(profiles.join(link)).ok()?;
    Some(target.display().to_string())
}

/// Every regular file under `dir` (following nothing).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        let ty = e.file_type().unwrap();
        if ty.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn by_host(v: &Value, section: &str) -> std::collections::BTreeMap<String, Value> {
    v[section]
        .as_array()
        .unwrap_or_else(|| panic!("no {section} in {v}"))
        .iter()
        .map(|r| (r["host"].as_str().unwrap().to_owned(), r.clone()))
        .collect()
}

/// The host runs its system after the deploy: switched now, or found
/// running it (its first boot had its secrets, and started its services).
fn assert_running(d: &Value) {
    assert!(
        d["outcome"] == "healthy" || d["outcome"] == "unchanged",
        "{d}"
    );
}

fn print_seconds(label: &str, v: &Value) {
    eprintln!("{label}: seconds per phase of venue up: {}", v["seconds"]);
    for r in v["install"].as_array().into_iter().flatten() {
        eprintln!(
            "  {} {} in {}s: {}",
            r["host"], r["install"], r["seconds"], r["phases"]
        );
    }
}

#[test]
fn ubuntu_servers_are_installed_deployed_and_taken_down() {
    let bed = Bed::new("install-e2e");
    // A stock Ubuntu server has no Nix: deploying to it before the install fails.
    bed.rent();
    let early = bed.venue(&["deploy", &bed.event, "--json"]);
    assert!(!early.status.success());
    let early: Value = serde_json::from_slice(&early.stdout).unwrap();
    for r in early.as_array().unwrap() {
        assert_eq!(r["outcome"], "failed", "{r}");
        assert!(
            r["message"].as_str().unwrap().contains("command not found"),
            "{r}"
        );
    }
    let started = Instant::now();
    let (v, success, stderr) = bed.up();
    let up_secs = started.elapsed().as_secs_f64();
    print_seconds("from Ubuntu", &v);
    eprintln!("venue up took {up_secs:.1}s");
    assert!(success, "{v}\n{stderr}");
    let install = by_host(&v, "install");
    let deploy = by_host(&v, "deploy");
    assert_eq!(install.len(), 4, "{v}");
    for (name, r) in &install {
        assert_eq!(r["install"], "installed", "{r}");
        assert_eq!(r["recreated"], 0, "{r}");
        let d = &deploy[name];
        assert_running(d);
        // /run/current-system after the reboot was the system deploy activated.
        assert_eq!(r["system"], d["system"], "{name}");
        let phases: Vec<&str> = r["phases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p[0].as_str().unwrap())
            .collect();
        for p in [
            "kexec",
            "partition",
            "copy system",
            "nixos-install",
            "reboot",
            "check",
        ] {
            assert!(phases.contains(&p), "{name} lacks phase {p}: {phases:?}");
        }
        assert_eq!(bed.mode(name), "nixos");
        let disk = bed.hosts.with_host(name, |h| h.disk()).unwrap();
        assert_eq!(
            installed_system(&disk).as_deref(),
            d["system"].as_str(),
            "{name}'s disk boots its system"
        );
        // The installed system answers with the pinned key (it is the key
        // the agent connected with): the same one is on its disk.
        let on_disk =
            std::fs::read_to_string(disk.join("etc/ssh/ssh_host_ed25519_key.pub")).unwrap();
        assert_eq!(on_disk.trim(), bed.pinned(name));
        let mode = std::fs::metadata(disk.join("etc/ssh/ssh_host_ed25519_key"))
            .unwrap()
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
    }
    let ids = bed.server_ids();
    assert_eq!(ids.len(), 4);

    // Again: every host runs NixOS already; nothing installed or copied.
    let (again, success, stderr) = bed.up();
    print_seconds("re-run", &again);
    assert!(success, "{again}\n{stderr}");
    for (_, r) in by_host(&again, "install") {
        assert_eq!(r["install"], "already", "{r}");
    }
    for (_, d) in by_host(&again, "deploy") {
        assert_eq!(d["outcome"], "unchanged", "{d}");
    }
    assert_eq!(bed.server_ids(), ids, "no server made again");
    bed.down();
}

/// Kills `child` (SIGKILL: a crash, nothing cleaned up).
fn crash(mut child: Child) {
    child.kill().unwrap();
    let _ = child.wait();
}

#[test]
fn a_crash_at_each_install_step_then_a_rerun_converges() {
    let bed = Bed::new("install-crash");
    let names = bed.rent();
    let ids = bed.server_ids();
    // Two crashed runs, each with every host held at another step, then a
    // clean run: every step boundary is crossed by a crash once. The last
    // host's disko ran to its end in the first round: the second resumes
    // with the copy and must not wipe the disk again (a file left on it
    // stays).
    let rounds: [[&str; 4]; 2] = [
        [
            "block-kexec-before",
            "block-disko-before",
            "block-disko-after",
            "block-nixos-install-before",
        ],
        [
            "block-nixos-install-after",
            "block-reboot-before",
            "block-disko-before",
            "block-nixos-install-after",
        ],
    ];
    let laid_out = bed.hosts.with_host(&names[3], |h| h.disk()).unwrap();
    for (round, faults) in rounds.iter().enumerate() {
        if round == 1 {
            std::fs::write(laid_out.join("left-by-the-test"), "").unwrap();
        }
        for (name, fault) in names.iter().zip(faults) {
            bed.hosts
                .with_host(name, |h| {
                    // A mark left by the previous round.
                    let _ = std::fs::remove_file(h.dir.join(format!("hw/reached-{fault}")));
                    h.set_fault(fault, "")
                })
                .unwrap()
                .unwrap();
        }
        let child = bed
            .command(&["up", &bed.event, "--json"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(240);
        loop {
            let reached: Vec<bool> = names
                .iter()
                .zip(faults)
                .map(|(n, f)| bed.hosts.with_host(n, |h| h.reached(f)).unwrap())
                .collect();
            if reached.iter().all(|r| *r) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: not every host reached its fault: {reached:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        crash(child);
        for (name, fault) in names.iter().zip(faults) {
            bed.hosts.with_host(name, |h| h.clear_fault(fault)).unwrap();
        }
        // Let the held toys give up.
        std::thread::sleep(Duration::from_millis(500));
        let modes: Vec<String> = names.iter().map(|n| bed.mode(n)).collect();
        eprintln!("after crash {round}: {modes:?}");
        if round == 1 {
            assert!(
                laid_out.join("left-by-the-test").exists(),
                "{}: disko ran again on a disk laid out in this installer boot",
                names[3]
            );
        }
        assert_eq!(bed.server_ids(), ids, "no server was made again");
    }
    let (v, success, stderr) = bed.up();
    print_seconds("after the crashes", &v);
    assert!(success, "{v}\n{stderr}");
    let deploy = by_host(&v, "deploy");
    for (name, r) in by_host(&v, "install") {
        assert!(
            r["install"] == "installed" || r["install"] == "already",
            "{r}"
        );
        assert_running(&deploy[&name]);
        assert_eq!(bed.mode(&name), "nixos");
    }
    assert_eq!(bed.server_ids(), ids, "no duplicate server");
    bed.down();
}

#[test]
fn silent_kexec_is_retried_then_recreated_and_a_new_key_is_refused() {
    let bed = Bed::new("install-faults");
    let names = bed.rent();
    let ids = bed.server_ids();
    let (always, once, new_key, clean) = (&names[0], &names[1], &names[2], &names[3]);
    let fault = |n: &str, f: &str, content: &str| {
        bed.hosts
            .with_host(n, |h| h.set_fault(f, content))
            .unwrap()
            .unwrap()
    };
    fault(always, "kexec-silent", "");
    fault(once, "kexec-silent", "1");
    fault(new_key, "kexec-new-key", "");
    let (v, success, stderr) = bed.up();
    print_seconds("with faults", &v);
    assert!(!success, "a refused host fails the run: {v}\n{stderr}");
    let install = by_host(&v, "install");
    let deploy = by_host(&v, "deploy");

    // Kexec never took: retried, then the server was deleted and created
    // again under its name (a new id), installed and deployed.
    assert_eq!(
        install[always]["install"], "installed",
        "{}",
        install[always]
    );
    assert_eq!(install[always]["recreated"], 1);
    assert_running(&deploy[always]);
    let now = bed.server_ids();
    assert_eq!(now.len(), 4, "no duplicate: {now:?}");
    let old_id = ids.iter().find(|(n, _)| n == always).unwrap().1;
    let new_id = now.iter().find(|(n, _)| n == always).unwrap().1;
    assert_ne!(old_id, new_id, "{always} was made again");
    for (n, id) in &ids {
        if n != always {
            assert!(now.contains(&(n.clone(), *id)), "{n} kept its server");
        }
    }
    // Silent once: the second kexec took.
    assert_eq!(install[once]["install"], "installed", "{}", install[once]);
    assert_eq!(install[once]["recreated"], 0);
    assert_running(&deploy[once]);

    // Another key after kexec: refused; nothing was copied or written.
    assert_eq!(
        install[new_key]["install"], "refused",
        "{}",
        install[new_key]
    );
    assert_eq!(deploy[new_key]["outcome"], "refused", "{}", deploy[new_key]);
    assert_eq!(bed.mode(new_key), "installer");
    let (disk, ram) = bed
        .hosts
        .with_host(new_key, |h| (h.disk(), h.ram()))
        .unwrap();
    assert_eq!(files_under(&disk), Vec::<PathBuf>::new(), "disk untouched");
    assert_eq!(
        files_under(&ram.join("nix")),
        Vec::<PathBuf>::new(),
        "the installer's store got nothing"
    );
    assert!(
        !ram.join("var/lib/venue/secrets").exists(),
        "no secrets sent"
    );

    assert_eq!(install[clean]["install"], "installed");
    assert_running(&deploy[clean]);
    bed.down();
}

/// The files of a host's secrets directory on its disk, by name, after
/// checking the modes the agent promises: the directory 0700, each file
/// 0400, owned by root, not empty.
fn secrets_on_disk(disk: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    use std::os::unix::fs::MetadataExt;
    let dir = disk.join("var/lib/venue/secrets");
    let meta = std::fs::metadata(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    assert_eq!(meta.mode() & 0o777, 0o700, "{}", dir.display());
    let mut files = std::collections::BTreeMap::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_str().unwrap().to_owned();
        assert!(
            !name.starts_with('.'),
            "a temp file was left: {}",
            p.display()
        );
        let m = std::fs::metadata(&p).unwrap();
        assert_eq!(m.mode() & 0o777, 0o400, "{}", p.display());
        assert_eq!(m.uid(), 0, "{}", p.display());
        let content = std::fs::read(&p).unwrap();
        assert!(!content.is_empty(), "{} is empty", p.display());
        files.insert(name, content);
    }
    files
}

#[test]
fn the_first_boot_has_its_secrets_and_a_service_without_one_refuses_to_start() {
    let bed = Bed::with_names("install-secrets");
    let names = bed.rent();
    // `venue up`, stopped right after its install phase: nothing deployed.
    let out = bed
        .command(&["up", &bed.event, "--json"])
        .env("VENUE_TEST_CRASH_AFTER", "1:Installed in")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success() && log.contains("crashing after"),
        "{log}"
    );
    let journal = std::fs::read_to_string(Path::new(&bed.state).join("journal.jsonl")).unwrap();
    assert!(
        !journal.contains("\"command\":\"deploy\""),
        "deployed already:\n{journal}"
    );

    let host = |name: &str| {
        bed.hosts
            .with_host(name, |h| {
                (
                    h.disk(),
                    h.address.to_string(),
                    h.netns.clone(),
                    h.dir.clone(),
                )
            })
            .unwrap()
    };
    let mut installed = std::collections::BTreeMap::new();
    for name in &names {
        assert_eq!(bed.mode(name), "nixos", "{name}");
        let (disk, address, _, dir) = host(name);
        let files = secrets_on_disk(&disk);
        // The certificate too (the event has `[dns]`): the toy's nginx and
        // coturn refuse to start without it.
        for f in ["tls-fullchain.pem", "tls-key.pem"] {
            assert!(
                files.contains_key(f),
                "{name} lacks {f}: {:?}",
                files.keys()
            );
        }
        // The first boot found them and started the services.
        assert!(
            common::eventually(60, || common::http_status(&address, "/healthz")
                == Some(200)),
            "{name} is not healthy after its first boot: {}",
            std::fs::read_to_string(dir.join("services.log")).unwrap_or_default()
        );
        installed.insert(name.clone(), files);
    }

    let coturn = names.iter().find(|n| n.contains("coturn")).unwrap();
    let (disk, address, netns, dir) = host(coturn);
    // A secret of white space only is no secret (coturn's `head -n1` would
    // read an empty line): the services refuse it as modules/common.nix does.
    std::fs::write(disk.join("var/lib/venue/secrets/turn-secret"), " \n").unwrap();
    let out = common::on_test_host(
        &netns,
        "sh /nix/var/nix/profiles/system/services/bin/start",
        "",
    );
    assert!(
        !out.status.success()
            && String::from_utf8_lossy(&out.stderr).contains("/var/lib/venue/secrets/turn-secret is missing or empty (the agent writes it at venue deploy): refusing to start"),
        "{out:?}"
    );
    assert_eq!(common::http_status(&address, "/healthz"), None);
    // Without its secret the TURN server refuses to start at boot, and the
    // host does not answer its health check.
    std::fs::write(disk.join("var/lib/venue/secrets/turn-secret"), "").unwrap();
    common::reboot_test_host(&netns);
    let refused = common::eventually(60, || {
        std::fs::read_to_string(dir.join("services.log"))
            .unwrap_or_default()
            .contains("turn-secret is missing or empty (the agent writes it at venue deploy): refusing to start")
    });
    assert!(
        refused,
        "{}",
        std::fs::read_to_string(dir.join("services.log")).unwrap_or_default()
    );
    assert_eq!(common::http_status(&address, "/healthz"), None);

    // The deploy brings it back: every host gets exactly the files its
    // install wrote.
    let (v, success, stderr) = bed.up();
    assert!(success, "{v}\n{stderr}");
    let deploy = by_host(&v, "deploy");
    assert_eq!(deploy[coturn]["outcome"], "healthy", "{}", deploy[coturn]);
    assert_eq!(common::http_status(&address, "/healthz"), Some(200));
    for name in &names {
        assert_running(&deploy[name]);
        let sent = secrets_on_disk(&host(name).0);
        assert_eq!(
            sent.keys().collect::<Vec<_>>(),
            installed[name].keys().collect::<Vec<_>>(),
            "{name}"
        );
        assert!(sent == installed[name], "{name}: other contents");
        assert_eq!(deploy[name]["secrets"], sent.len(), "{name}");
    }
    bed.down();
}

/// SIGKILL for `venue up` and everything it started (its nix copy and ssh):
/// a crash of the agent's session, nothing cleaned up.
fn crash_group(mut child: Child) {
    let group = format!("-{}", child.id());
    let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
    let _ = child.kill();
    let _ = child.wait();
}

/// What a test host booted, in order (its boot loop logs each boot).
fn boots(bed: &Bed, name: &str) -> Vec<String> {
    let log = bed
        .hosts
        .with_host(name, |h| std::fs::read_to_string(h.dir.join("boot.log")))
        .unwrap()
        .unwrap_or_default();
    log.lines()
        .filter_map(|l| l.split_once(" booting ").map(|(_, m)| m.trim().to_owned()))
        .collect()
}

/// Boots as runs: `ubuntu×1 installer×2 nixos×1`.
fn runs(boots: &[String]) -> String {
    let mut out: Vec<(String, usize)> = Vec::new();
    for b in boots {
        match out.last_mut() {
            Some((m, n)) if m == b => *n += 1,
            _ => out.push((b.clone(), 1)),
        }
    }
    out.iter()
        .map(|(m, n)| format!("{m}×{n}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `venue up --json` that must finish within `limit`; killed and failed
/// otherwise.
fn up_within(bed: &Bed, limit: Duration, seed: u64) -> (Value, bool, String, f64) {
    let started = Instant::now();
    let mut child = bed
        .command(&["up", &bed.event, "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    // Read both pipes while waiting, so that a full pipe never stalls it.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut s).unwrap();
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = Vec::new();
        std::io::Read::read_to_end(&mut stderr, &mut s).unwrap();
        s
    });
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if started.elapsed() > limit {
            crash_group(child);
            let stderr = String::from_utf8_lossy(&err.join().unwrap()).into_owned();
            let booted: Vec<(String, String)> = bed
                .hosts
                .names()
                .into_iter()
                .map(|n| (n.clone(), runs(&boots(bed, &n))))
                .collect();
            panic!(
                "VENUE_CHAOS_SEED={seed}: the final venue up did not finish within {limit:?}:\n{stderr}\nboots: {booted:?}"
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let success = child.wait().unwrap().success();
    let stdout = out.join().unwrap();
    let stderr = String::from_utf8_lossy(&err.join().unwrap()).into_owned();
    let v = serde_json::from_slice(&stdout).unwrap_or_else(|e| {
        panic!(
            "VENUE_CHAOS_SEED={seed}: venue up printed no report ({e}):\n{}\n{stderr}",
            String::from_utf8_lossy(&stdout)
        )
    });
    (v, success, stderr, started.elapsed().as_secs_f64())
}

/// `venue up` SIGKILLed at random moments of the install phase (not only at
/// the toys' block points: mid-upload, mid-kexec, mid-copy, mid-reboot),
/// several times, then once more to the end: it must converge. The seed is
/// printed; `VENUE_CHAOS_SEED=N` replays a run's kill times.
#[test]
fn venue_up_killed_at_random_moments_of_the_install_converges() {
    let seed = std::env::var("VENUE_CHAOS_SEED")
        .ok()
        .map(|s| s.parse().expect("VENUE_CHAOS_SEED: a number"))
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                % 1_000_000
        });
    eprintln!("VENUE_CHAOS_SEED={seed}");
    let mut dice = Dice::new(seed);
    let bed = Bed::new("install-chaos");
    let names = bed.rent();
    let ids = bed.server_ids();
    let kills = 12;
    for kill in 0..kills {
        if names.iter().all(|n| bed.mode(n) == "nixos") {
            eprintln!("kill {kill}: every host runs NixOS already: no more kills");
            break;
        }
        // A run takes a second to start (the build, the cloud) and a few
        // more for the install: kills land all over it. The first run also
        // builds the toy installer.
        let after = if kill == 0 {
            dice.millis(800, 5000)
        } else {
            dice.millis(300, 3000)
        };
        // Its log says what it waited for and took up again.
        let log = std::fs::File::create(bed.dir.join(format!("killed-{kill}.log"))).unwrap();
        let child = bed
            .command(&["up", &bed.event, "--json"])
            .env("VENUE_LOG", "venue_agent::install=info")
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap();
        std::thread::sleep(after);
        crash_group(child);
        let log = std::fs::read_to_string(bed.dir.join(format!("killed-{kill}.log"))).unwrap();
        for l in log.lines().filter(|l| {
            [
                "earlier run",
                "taking it up again",
                "laid out in this",
                "still waiting",
            ]
            .iter()
            .any(|w| l.contains(w))
        }) {
            eprintln!("  {l}");
        }
        let modes: Vec<String> = names.iter().map(|n| bed.mode(n)).collect();
        eprintln!("kill {kill} after {after:?}: {modes:?}");
        assert_eq!(
            bed.server_ids(),
            ids,
            "VENUE_CHAOS_SEED={seed}: no server was made again"
        );
    }
    let (v, success, stderr, secs) = up_within(&bed, Duration::from_secs(240), seed);
    print_seconds("after the random kills", &v);
    eprintln!("VENUE_CHAOS_SEED={seed}: the final venue up took {secs:.1}s");
    assert!(success, "VENUE_CHAOS_SEED={seed}: {v}\n{stderr}");
    let install = by_host(&v, "install");
    let deploy = by_host(&v, "deploy");
    assert_eq!(install.len(), 4, "{v}");
    for name in &names {
        let r = &install[name];
        assert!(
            r["install"] == "installed" || r["install"] == "already",
            "VENUE_CHAOS_SEED={seed}: {r}"
        );
        assert_eq!(r["recreated"], 0, "VENUE_CHAOS_SEED={seed}: {r}");
        let d = &deploy[name];
        assert_running(d);
        assert_eq!(bed.mode(name), "nixos", "{name}");
        // Installed once: the host went ubuntu → installer → NixOS and
        // booted its disk once (a wiped or half-written disk that was
        // booted would show as boots of NixOS that never answer).
        let booted = boots(&bed, name);
        let rank = |m: &str| {
            ["ubuntu", "installer", "nixos"]
                .iter()
                .position(|x| *x == m)
        };
        let ranks: Vec<_> = booted.iter().map(|m| rank(m)).collect();
        assert!(
            ranks.windows(2).all(|w| w[0] <= w[1]) && ranks.iter().all(Option::is_some),
            "VENUE_CHAOS_SEED={seed}: {name} booted {}",
            runs(&booted)
        );
        assert_eq!(
            booted.iter().filter(|m| *m == "nixos").count(),
            1,
            "VENUE_CHAOS_SEED={seed}: {name} booted {}",
            runs(&booted)
        );
        let disk = bed.hosts.with_host(name, |h| h.disk()).unwrap();
        assert_eq!(
            installed_system(&disk).as_deref(),
            d["system"].as_str(),
            "{name}'s disk boots its system"
        );
        // The pinned key was kept across every kexec and reboot.
        let on_disk =
            std::fs::read_to_string(disk.join("etc/ssh/ssh_host_ed25519_key.pub")).unwrap();
        assert_eq!(on_disk.trim(), bed.pinned(name), "{name}");
        let secrets = secrets_on_disk(&disk);
        assert!(!secrets.is_empty(), "{name} has no secrets on its disk");
        assert_eq!(d["secrets"], secrets.len(), "{name}: {d}");
    }
    assert_eq!(
        bed.server_ids(),
        ids,
        "VENUE_CHAOS_SEED={seed}: no duplicate server"
    );
    bed.down();
}
