//! Venue images (the snapshot fast path) against fake-hcloud:
//! `venue image build`'s cloud steps, `up` with `image = "auto"` choosing
//! the newest snapshot of the event's base system (real Nix evaluates the
//! profile hash), `image list` / `status` with the monthly cost, `down`
//! keeping the snapshots, `image delete`. Every request is checked against
//! the OpenAPI spec.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

use common::ok;
use serde_json::{json, Value};
use venue_agent::commands::image::build::{self, BuildOptions, Target};
use venue_agent::images::{Arch, Source};
use venue_agent::model::state::StateDir;
use venue_testbed::FakeHandle;

fn venue(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_venue"))
        .args(args)
        .env("HCLOUD_ENDPOINT", url)
        .env("HCLOUD_TOKEN", "fake-token")
        .env("VENUE_CLOUD_POLL_MS", "10")
        .env("NIX_CONFIG", "experimental-features = nix-command flakes\nsandbox = false\nbuild-users-group =\nsubstituters =")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run venue")
}

/// A small event whose systems file has a toy `base` (real Nix builds it
/// offline); `generation` changes the base, and so its profile hash.
fn event(dir: &Path, generation: u32) -> PathBuf {
    std::fs::write(
        dir.join("systems.nix"),
        format!(
            r#"{{ fleet }}: {{
  base = builtins.derivation {{
    name = "toy-base"; system = "x86_64-linux"; builder = "/bin/sh";
    args = [ "-c" "set -e; export PATH=/bin:/usr/bin; mkdir -p $out/bin; echo 'base {generation}' > $out/base" ];
  }};
}}
"#
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("event.toml"),
        r#"id = "imgtest"
name = "image test"
timezone = "Europe/Berlin"
domain = "imgtest.example.org"
attendees = 10

[cloud]
location = "fsn1"

[deploy]
systems = "systems.nix"

[[day]]
date = "2026-12-01"
open = "10:00"
close = "12:00"

[[room]]
name = "Hallway"
kind = "hack"
backend = "jitsi"
peak = 10
"#,
    )
    .unwrap();
    dir.join("event.toml")
}

fn source(dir: &Path) -> Source {
    Source::Systems {
        file: dir.join("systems.nix"),
        installer: None,
        event: "imgtest".into(),
        domain: "imgtest.example.org".into(),
    }
}

fn offline_nix() {
    std::env::set_var(
        "NIX_CONFIG",
        "experimental-features = nix-command flakes\nsandbox = false\nbuild-users-group =\nsubstituters =",
    );
}

/// Makes a snapshot the way the API does (server, poweroff, create_image)
/// with these labels; returns its id. The server is deleted afterwards.
fn snapshot(fake: &FakeHandle, url: &str, name: &str, labels: Value) -> u64 {
    let client = common::client(url, &fake.token());
    let call = |m: reqwest::Method, path: &str, body: Option<Value>| -> Value {
        venue_agent::runtime::block_on(client.request(m, path, &[], body.as_ref()))
            .unwrap_or_else(|e| panic!("{path}: {e}"))
    };
    let wait = |v: &Value| {
        let id = v["action"]["id"].as_u64().unwrap();
        for _ in 0..500 {
            let a = call(reqwest::Method::GET, &format!("/actions/{id}"), None);
            if a["action"]["status"] != "running" {
                assert_eq!(a["action"]["status"], "success", "{a}");
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        panic!("action {id} never finished");
    };
    let s = call(
        reqwest::Method::POST,
        "/servers",
        Some(
            json!({"name": name, "server_type": "cx23", "image": "ubuntu-24.04", "location": "fsn1"}),
        ),
    );
    wait(&s);
    let sid = s["server"]["id"].as_u64().unwrap();
    wait(&call(
        reqwest::Method::POST,
        &format!("/servers/{sid}/actions/poweroff"),
        None,
    ));
    let i = call(
        reqwest::Method::POST,
        &format!("/servers/{sid}/actions/create_image"),
        Some(json!({"type": "snapshot", "description": name, "labels": labels})),
    );
    wait(&i);
    wait(&call(
        reqwest::Method::DELETE,
        &format!("/servers/{sid}"),
        None,
    ));
    i["image"]["id"].as_u64().unwrap()
}

fn server_images(fake: &FakeHandle) -> Vec<(String, Value)> {
    fake.with_state(|s| {
        s.servers()
            .into_iter()
            .map(|v| (v["name"].as_str().unwrap().to_owned(), v["image"].clone()))
            .collect()
    })
}

#[test]
fn up_boots_the_newest_snapshot_of_its_base_and_down_keeps_it() {
    offline_nix();
    let dir = common::scratch("image-up");
    let e = event(&dir, 1);
    let e = e.to_str().unwrap();
    let state = dir.join("state");
    let s = state.to_str().unwrap();
    let (url, fake) = common::fake();

    // No venue image yet: Ubuntu, and nothing evaluated.
    let up: Value = serde_json::from_str(&ok(&venue(
        &url,
        &["up", e, "--no-deploy", "--json", "--state", s],
    )))
    .unwrap();
    assert_eq!(up["from_snapshot"], json!([]), "{up}");
    let first = server_images(&fake);
    assert!(!first.is_empty());
    assert!(first.iter().all(|(_, i)| i["name"] == "ubuntu-24.04"));
    ok(&venue(
        &url,
        &["down", e, "--yes", "--discard", "--state", s],
    ));

    // Snapshots: two of this base (the newer must win), one of another
    // base, one for arm, and one that is nobody's venue image.
    let hash = source(&dir).hash(Arch::X86).unwrap();
    let other = {
        let d = common::scratch("image-other");
        event(&d, 2);
        source(&d).hash(Arch::X86).unwrap()
    };
    assert_ne!(hash, other, "another base has another profile hash");
    let older = snapshot(
        &fake,
        &url,
        "b1",
        json!({"venue/image": hash, "venue/arch": "x86"}),
    );
    let newer = snapshot(
        &fake,
        &url,
        "b2",
        json!({"venue/image": hash, "venue/arch": "x86"}),
    );
    let foreign = snapshot(
        &fake,
        &url,
        "b3",
        json!({"venue/image": other, "venue/arch": "x86"}),
    );
    let unlabelled = snapshot(&fake, &url, "b4", json!({"backup": "mine"}));
    assert!(older < newer);

    let up: Value = serde_json::from_str(&ok(&venue(
        &url,
        &["up", e, "--no-deploy", "--json", "--state", s],
    )))
    .unwrap();
    let images = server_images(&fake);
    assert_eq!(images.len(), first.len());
    for (name, image) in &images {
        assert_eq!(
            image["id"], newer,
            "{name} boots the newest snapshot of its base"
        );
        assert_eq!(image["type"], "snapshot");
    }
    let mut from: Vec<String> = serde_json::from_value(up["from_snapshot"].clone()).unwrap();
    from.sort();
    let mut names: Vec<String> = images.iter().map(|(n, _)| n.clone()).collect();
    names.sort();
    assert_eq!(from, names);

    // list and status: every venue image (not the unlabelled one), with
    // its monthly cost at the API's price per GB-month.
    let list: Value =
        serde_json::from_str(&ok(&venue(&url, &["image", "list", "--json"]))).unwrap();
    let ids: Vec<u64> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids.len(), 3, "{list}");
    assert!(!ids.contains(&unlabelled));
    for r in list.as_array().unwrap() {
        let size = r["image_size_gb"].as_f64().unwrap();
        // The fake's price: 0.011 EUR per GB-month.
        assert_eq!(
            r["monthly_micro_eur"].as_u64().unwrap(),
            (size * 11_000.0).round() as u64,
            "{r}"
        );
    }
    let table = ok(&venue(&url, &["image", "list"]));
    assert!(
        table.contains(&hash) && table.contains("EUR a month"),
        "{table}"
    );
    let status: Value = serde_json::from_str(&ok(&venue(&url, &["status", e, "--json"]))).unwrap();
    assert_eq!(status["images"].as_array().unwrap().len(), 3, "{status}");
    let sum: u64 = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["monthly_micro_eur"].as_u64().unwrap())
        .sum();
    assert_eq!(status["images_monthly_micro_eur"], sum);
    let text = ok(&venue(&url, &["status", e]));
    assert!(text.contains("venue images"), "{text}");

    // down: the event's servers go, every snapshot stays.
    let before = fake.with_state(|s| s.images().len());
    ok(&venue(
        &url,
        &["down", e, "--yes", "--discard", "--state", s],
    ));
    assert_eq!(common::held_count(&fake, "imgtest"), 0);
    assert_eq!(fake.with_state(|s| s.images().len()), before);

    // delete: only venue images; --all-but-newest keeps the newest per base.
    let refused = venue(&url, &["image", "delete", &unlabelled.to_string()]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("not a venue image"),
        "{refused:?}"
    );
    let deleted: Value = serde_json::from_str(&ok(&venue(
        &url,
        &["image", "delete", "--all-but-newest", "--json"],
    )))
    .unwrap();
    assert_eq!(deleted["deleted"], json!([older]));
    let left: Vec<u64> = fake.with_state(|s| {
        s.images()
            .iter()
            .map(|i| i["id"].as_u64().unwrap())
            .collect()
    });
    assert_eq!(left.len(), 3);
    assert!(left.contains(&newer) && left.contains(&foreign) && left.contains(&unlabelled));
    let deleted: Value = serde_json::from_str(&ok(&venue(
        &url,
        &["image", "delete", &foreign.to_string(), "--json"],
    )))
    .unwrap();
    assert_eq!(deleted["deleted"], json!([foreign]));

    // Snapshots exist but the base cannot be evaluated: said, and Ubuntu.
    let systems = std::fs::read_to_string(dir.join("systems.nix")).unwrap();
    std::fs::write(dir.join("systems.nix"), "{ fleet }: { }\n").unwrap();
    let up = venue(&url, &["up", e, "--no-deploy", "--state", s]);
    ok(&up);
    let stderr = String::from_utf8_lossy(&up.stderr);
    assert!(
        stderr.contains("cannot tell which venue image fits")
            && stderr.contains("no `base` attribute"),
        "{stderr}"
    );
    assert!(server_images(&fake)
        .iter()
        .all(|(_, i)| i["name"] == "ubuntu-24.04"));
    ok(&venue(
        &url,
        &["down", e, "--yes", "--discard", "--state", s],
    ));
    std::fs::write(dir.join("systems.nix"), systems).unwrap();

    // An explicit image is used as given, snapshots or not.
    let text = std::fs::read_to_string(e).unwrap().replace(
        "location = \"fsn1\"",
        "location = \"fsn1\"\nimage = \"debian-12\"",
    );
    std::fs::write(e, text).unwrap();
    ok(&venue(&url, &["up", e, "--no-deploy", "--state", s]));
    assert!(server_images(&fake)
        .iter()
        .all(|(_, i)| i["name"] == "debian-12"));
    ok(&venue(
        &url,
        &["down", e, "--yes", "--discard", "--state", s],
    ));

    common::assert_spec_clean(&fake);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `venue image build`'s cloud side, with the install step recorded instead
/// of run (the netns test below runs the real one): a build server left by
/// a crashed build is removed, the cheapest x86 type is rented from Ubuntu
/// with a pinned host key, powered off before create_image, the snapshot
/// carries the profile labels, and nothing of the build is left.
#[test]
fn image_build_rents_snapshots_and_leaves_only_the_image() {
    offline_nix();
    let dir = common::scratch("image-build");
    event(&dir, 3);
    let (url, fake) = common::fake();
    let client = common::client(&url, &fake.token());
    // What a crashed build leaves: a labelled server.
    let crashed = venue_agent::runtime::block_on(client.request(
        reqwest::Method::POST,
        "/servers",
        &[],
        Some(&json!({"name": "venue-image-x86-crashed", "server_type": "cx23", "image": "ubuntu-24.04",
                      "labels": {"venue/image-build": "old", "venue/arch": "x86"}})),
    ))
    .unwrap();
    let crashed = crashed["server"]["id"].as_u64().unwrap();

    let state = StateDir::open(dir.join("state")).unwrap();
    let seen: Mutex<Vec<(String, String, String, PathBuf)>> = Mutex::new(Vec::new());
    let f2 = fake.clone();
    let seen_by_install = &seen;
    let broken = std::sync::atomic::AtomicBool::new(false);
    let broken_install = &broken;
    let install = move |t: &Target| -> anyhow::Result<()> {
        if broken_install.load(std::sync::atomic::Ordering::SeqCst) {
            anyhow::bail!("the install failed");
        }
        // The server runs when the install step gets it, from Ubuntu.
        let (status, image) = f2.with_state(|s| {
            let v = s
                .servers()
                .into_iter()
                .find(|v| v["name"] == t.name)
                .unwrap();
            (v["status"].clone(), v["image"]["name"].clone())
        });
        assert_eq!((status, image), (json!("running"), json!("ubuntu-24.04")));
        seen_by_install.lock().unwrap().push((
            t.name.to_owned(),
            t.address.to_owned(),
            t.host_key.to_owned(),
            t.system.clone(),
        ));
        Ok(())
    };
    let opts = BuildOptions {
        source: source(&dir),
        arch: Arch::X86,
        location: "fsn1".into(),
        state: &state,
        force: false,
    };
    let report = venue_agent::runtime::block_on(build::build(&client, &opts, &install)).unwrap();
    assert!(report.built);
    assert_eq!(
        report.server_type.as_deref(),
        Some("cx23"),
        "the cheapest x86 type"
    );
    let hash = source(&dir).hash(Arch::X86).unwrap();
    assert_eq!(report.profile, hash);
    assert_eq!(report.steps.len(), 7, "{:?}", report.steps);

    let images = fake.with_state(|s| s.images());
    assert_eq!(images.len(), 1);
    let image = &images[0];
    assert_eq!(image["id"], report.image);
    assert_eq!(image["status"], "available");
    assert_eq!(
        image["labels"],
        json!({"venue/image": hash, "venue/arch": "x86"})
    );
    assert!(
        fake.with_state(|s| s.servers().is_empty()),
        "the build servers are gone, the crashed one too"
    );
    assert!(
        fake.with_state(|s| s.ssh_keys().is_empty()),
        "the build's SSH key is gone"
    );
    let _ = crashed;
    let installed = std::mem::take(&mut *seen.lock().unwrap());
    assert_eq!(installed.len(), 1);
    let (name, _address, host_key, system) = &installed[0];
    assert_eq!(image["created_from"]["name"], json!(name));
    let pinned =
        std::fs::read_to_string(state.path(&format!("hosts/{name}/ssh_host_ed25519_key.pub")))
            .unwrap();
    assert_eq!(host_key.trim(), pinned.trim());
    assert!(
        system.join("base").is_file(),
        "the base system was built: {}",
        system.display()
    );

    // The order of things: power off before the snapshot, the server
    // deleted after it.
    let xs = fake.exchanges();
    let pos = |what: &str| {
        xs.iter()
            .position(|x| x.path.ends_with(what))
            .unwrap_or(usize::MAX)
    };
    assert!(pos("/actions/poweroff") < pos("/actions/create_image"));
    let deletes: Vec<usize> = xs
        .iter()
        .enumerate()
        .filter(|(_, x)| x.method == "DELETE" && x.path.starts_with("/servers/"))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        deletes.len(),
        2,
        "the crashed build's server and this build's"
    );
    let rent = xs
        .iter()
        .position(|x| {
            x.method == "POST"
                && x.path == "/servers"
                && x.request
                    .as_ref()
                    .is_some_and(|r| r["name"] != "venue-image-x86-crashed")
        })
        .unwrap();
    assert!(
        deletes[0] < rent,
        "the crashed build is cleaned before renting"
    );
    assert!(*deletes.last().unwrap() > pos("/actions/create_image"));

    // Again: the image is up to date, nothing is rented.
    let n = fake.requests();
    let again = venue_agent::runtime::block_on(build::build(&client, &opts, &install)).unwrap();
    assert!(!again.built);
    assert_eq!(again.image, report.image);
    assert!(fake.requests() - n <= 2, "one lookup");
    assert!(seen.lock().unwrap().is_empty());

    // A failed install, then a build server whose creation fails: each
    // build fails and leaves no server and no key; the image stays.
    let force = BuildOptions {
        force: true,
        ..opts
    };
    broken.store(true, std::sync::atomic::Ordering::SeqCst);
    let err = venue_agent::runtime::block_on(build::build(&client, &force, &install)).unwrap_err();
    assert!(format!("{err:#}").contains("the install failed"), "{err:#}");
    broken.store(false, std::sync::atomic::Ordering::SeqCst);
    fake.fail_next_actions(1);
    let err = venue_agent::runtime::block_on(build::build(&client, &force, &install)).unwrap_err();
    assert!(
        format!("{err:#}").contains("creating the build server"),
        "{err:#}"
    );
    assert!(fake.with_state(|s| s.servers().is_empty()));
    assert!(fake.with_state(|s| s.ssh_keys().is_empty()));
    assert_eq!(fake.with_state(|s| s.images().len()), 1);

    common::assert_spec_clean(&fake);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The snapshot path on real test hosts (root; network namespaces with
/// sshd and their own /nix, as testbed_e2e.rs): `venue up` from Ubuntu
/// (the install phase), `venue image build`, then `venue up` from the
/// snapshot, which skips the install; the seconds of both paths printed
/// side by side. `image list` and `status` show the snapshot. Both `down`s
/// archive before they delete: the second completes with the first run's
/// recordings under new times, deletes every server and leaves the snapshot.
#[test]
fn testbed_up_from_a_snapshot_skips_the_install() {
    use std::sync::Arc;
    use std::time::Instant;
    use venue_testbed::netns::NetnsHosts;
    use venue_testbed::{FakeCloud, FakeConfig};

    offline_nix();
    let dir = common::scratch("image-netns");
    let hosts = Arc::new(
        NetnsHosts::new(&dir.join("hosts"))
            .expect("test hosts need root: run as root after scripts/install-deps"),
    );
    let (url, fake) = FakeCloud::start(FakeConfig {
        action_duration: std::time::Duration::from_millis(50),
        hook: hosts.clone(),
        ..FakeConfig::default()
    });
    let event = common::example_event("testbed");
    // Snapshots chosen by venue; no names or certificates (testbed_e2e's subject).
    let text = std::fs::read_to_string(&event)
        .unwrap()
        .replace("image = \"ubuntu-24.04\"", "image = \"auto\"")
        .replace("[dns]\nzone = \"example.org\"", "");
    assert!(text.contains("image = \"auto\"") && !text.contains("[dns]"));
    std::fs::write(&event, text).unwrap();
    let e = event.to_str().unwrap();
    let state = dir.join("state");
    let s = state.to_str().unwrap();
    let up = |label: &str| -> (Value, f64) {
        let started = Instant::now();
        let out = venue(&url, &["up", e, "--json", "--state", s]);
        let secs = started.elapsed().as_secs_f64();
        let v: Value = serde_json::from_str(&ok(&out)).unwrap();
        for d in v["deploy"].as_array().unwrap() {
            assert!(
                d["outcome"] == "healthy" || d["outcome"] == "unchanged",
                "{label}: {d}"
            );
        }
        (v, secs)
    };

    // 1. No image yet: every server starts from Ubuntu and is installed.
    let (from_ubuntu, ubuntu_secs) = up("from Ubuntu");
    assert_eq!(from_ubuntu["provision"]["from_snapshot"], json!([]));
    assert!(server_images(&fake)
        .iter()
        .all(|(_, i)| i["name"] == "ubuntu-24.04"));
    // down archives (the bbb host's recordings), verifies, and only then
    // deletes.
    ok(&venue(&url, &["down", e, "--yes", "--state", s]));
    assert_eq!(common::held_count(&fake, "testbed"), 0);
    assert!(hosts.names().is_empty());
    let archive = state.join("archive");
    let first_archive = common::assert_archive_complete(&archive);
    assert_archived_items(&first_archive);

    // 2. The image.
    let started = Instant::now();
    let built: Value = serde_json::from_str(&ok(&venue(
        &url,
        &[
            "image",
            "build",
            e,
            "--json",
            "--state",
            dir.join("build").to_str().unwrap(),
        ],
    )))
    .unwrap();
    let build_secs = started.elapsed().as_secs_f64();
    assert_eq!(built["built"], true, "{built}");
    let image = built["image"].as_u64().unwrap();
    assert!(
        fake.with_state(|s| s.servers().is_empty()),
        "the build server is gone"
    );
    assert!(hosts.names().is_empty());

    // 3. From the snapshot: every host boots the installed base, keyed from
    // its own user_data (the pin holds), and is only deployed. Rented
    // first without the deploy: a snapshot carries no secrets, so nothing
    // of the venue runs and the health check fails...
    ok(&venue(&url, &["up", e, "--no-deploy", "--state", s]));
    let rented = hosts.names();
    assert_eq!(rented.len(), 4);
    let address = |name: &str| hosts.with_host(name, |h| h.address.to_string()).unwrap();
    for name in &rented {
        let secrets = hosts
            .with_host(name, |h| h.disk().join("var/lib/venue/secrets"))
            .unwrap();
        assert!(
            std::fs::read_dir(&secrets).map_or(true, |d| d.count() == 0),
            "{name}: the image carries secrets"
        );
        assert_eq!(
            common::http_status(&address(name), "/healthz"),
            None,
            "{name} answers before its deploy"
        );
    }
    // ...until the deploy.
    let (from_image, image_secs) = up("from the snapshot");
    for name in &rented {
        assert_eq!(
            common::http_status(&address(name), "/healthz"),
            Some(200),
            "{name}"
        );
    }
    let mut from: Vec<String> =
        serde_json::from_value(from_image["provision"]["from_snapshot"].clone()).unwrap();
    from.sort();
    let mut names: Vec<String> = server_images(&fake)
        .into_iter()
        .map(|(n, i)| {
            assert_eq!(i["id"], image, "{n} boots the image");
            n
        })
        .collect();
    names.sort();
    assert_eq!(from, names);
    assert_eq!(names.len(), 4);
    // They booted the installed base (the image's disk) before the deploy,
    // keyed from their own user_data: the image carries the build server's
    // host key, each host answers with its own pinned one.
    let base = built_base(&from_ubuntu, &from_image);
    let build_state = dir.join("build");
    let image_key =
        std::fs::read_to_string(hosts.image_dir(image).join("etc/ssh/ssh_host_ed25519_key"))
            .unwrap();
    let build_key = std::fs::read_dir(build_state.join("hosts"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path().join("ssh_host_ed25519_key")).unwrap())
        .next()
        .unwrap();
    assert_eq!(
        image_key, build_key,
        "the image holds the build server's key"
    );
    for name in &names {
        let on_disk = hosts
            .with_host(name, |h| {
                std::fs::read_to_string(h.disk().join("etc/ssh/ssh_host_ed25519_key")).unwrap()
            })
            .unwrap();
        let pinned =
            std::fs::read_to_string(state.join(format!("hosts/{name}/ssh_host_ed25519_key")))
                .unwrap();
        assert_eq!(on_disk, pinned, "{name} took its key from its user_data");
        assert_ne!(on_disk, image_key);
    }
    let installs = |v: &Value| -> Vec<String> {
        v["install"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|h| h["install"].as_str().unwrap_or("?").to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    if !installs(&from_image).is_empty() {
        assert!(
            installs(&from_image).iter().all(|i| i == "snapshot"),
            "{from_image}"
        );
        assert!(
            installs(&from_ubuntu).iter().all(|i| i == "installed"),
            "{from_ubuntu}"
        );
    }
    let _ = base;
    let deploy_secs = |v: &Value| -> f64 {
        v["deploy"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["seconds"].as_f64().unwrap_or(0.0))
            .fold(0.0, f64::max)
    };
    println!(
        "snapshot path (testbed, 4 hosts): up from Ubuntu + install {ubuntu_secs:.1}s (slowest deploy {:.1}s); \
         image build {build_secs:.1}s ({}); up from the snapshot {image_secs:.1}s (slowest deploy {:.1}s)",
        deploy_secs(&from_ubuntu),
        built["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| format!("{} {}s", s[0].as_str().unwrap(), s[1]))
            .collect::<Vec<_>>()
            .join(", "),
        deploy_secs(&from_image),
    );
    println!(
        "seconds of `venue up` from Ubuntu: {}; from the snapshot: {}",
        from_ubuntu["seconds"], from_image["seconds"]
    );
    println!("install phases from Ubuntu: {}", from_ubuntu["install"]);
    println!(
        "install phases from the snapshot: {}",
        from_image["install"]
    );

    // 4. Listed with its cost; down leaves it and nothing else.
    let list = ok(&venue(&url, &["image", "list"]));
    assert!(list.contains(&image.to_string()), "{list}");
    let status: Value = serde_json::from_str(&ok(&venue(&url, &["status", e, "--json"]))).unwrap();
    assert_eq!(status["images"][0]["id"], image, "{status}");
    assert!(status["images_monthly_micro_eur"].as_u64().unwrap() > 0);
    // The second down archives too. The snapshot hosts' recordings are the
    // first run's files under new times (copied at their first
    // activation): recorded with the new time, not copied again, and the
    // archive verifies, so every server goes.
    let journal_before = common::journal(&state).len();
    ok(&venue(&url, &["down", e, "--yes", "--state", s]));
    let second_archive = common::assert_archive_complete(&archive);
    assert_archived_items(&second_archive);
    let steps = common::journal(&state)[journal_before..].to_vec();
    let bbb = "testbed-bbb-1";
    let (before, after) = (&first_archive[bbb], &second_archive[bbb]);
    assert_eq!(before.len(), after.len());
    for (old, new) in before.iter().zip(after) {
        let path = &new.path;
        assert_eq!(old.path, new.path);
        assert_eq!(old.sha256, new.sha256, "{path}");
        assert_ne!(old.mtime, new.mtime, "{path}: the host's time is new");
        assert!(
            steps.contains(&format!(
                "{bbb}: {path} holds the archived content under a new time: recorded"
            )),
            "{path}: {steps:#?}"
        );
    }
    assert!(
        !steps
            .iter()
            .any(|w| w.starts_with(&format!("{bbb}: copied "))),
        "a recording crossed again: {steps:#?}"
    );
    // Every server of the event is gone, by the fake's state and its bill:
    // four from Ubuntu, four from the snapshot, each with an end.
    assert_eq!(common::held_count(&fake, "testbed"), 0);
    assert_eq!(fake.with_state(|s| s.servers().len()), 0);
    assert!(hosts.names().is_empty());
    let servers: Vec<_> = fake
        .bill()
        .resources
        .into_iter()
        .filter(|l| l.kind == "server" && l.labels.get("venue/event") == Some(&json!("testbed")))
        .collect();
    assert_eq!(servers.len(), 8, "{servers:#?}");
    assert!(
        servers.iter().all(|l| l.deleted.is_some()),
        "a server of the event was never deleted: {servers:#?}"
    );
    let images = fake.with_state(|s| s.images());
    assert_eq!(images.len(), 1, "down keeps the image");
    assert_eq!(images[0]["id"], image);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The testbed's archive without the portal binary (so the portal host
/// declares nothing): the bbb host's seven sample recordings.
fn assert_archived_items(
    archive: &std::collections::BTreeMap<String, Vec<venue_agent::archive::manifest::Entry>>,
) {
    let hosts: Vec<&String> = archive.keys().collect();
    assert_eq!(hosts, ["testbed-bbb-1"], "{archive:#?}");
    let bbb = &archive["testbed-bbb-1"];
    assert_eq!(bbb.len(), 7, "{bbb:#?}");
    assert!(bbb.iter().all(|e| {
        let p = &e.path;
        p.starts_with("recordings-published/") || p.starts_with("recordings-raw/")
    }));
}

/// The system the snapshot hosts ran before their deploy: the base, which
/// the Ubuntu hosts never ran (they were installed with their own systems).
fn built_base(from_ubuntu: &Value, from_image: &Value) -> String {
    let systems = |v: &Value| -> Vec<String> {
        v["install"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|h| h["system"].as_str().unwrap_or("").to_owned())
            .collect()
    };
    let booted = systems(from_image);
    assert_eq!(booted.len(), 4, "{from_image}");
    assert!(
        booted
            .iter()
            .all(|s| s == &booted[0] && s.ends_with("-toy-system-base")),
        "every snapshot host booted the base: {booted:?}"
    );
    assert!(!systems(from_ubuntu).contains(&booted[0]));
    booted[0].clone()
}
