//! `venue machine install` (the install phase for one machine outside a
//! rented fleet; tests/vm/install.nix runs it on a real kernel) against a
//! test host that boots as "Ubuntu", with the testbed's toy installer
//! (hosts/testbed/installer.nix). Needs root, Nix, sshd, iproute2.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use venue_testbed::netns::{Boot, NetnsHosts, Provisioning};

const NIX_CONFIG: &str = "experimental-features = nix-command flakes\nsandbox = false\nbuild-users-group =\nsubstituters =";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let path = dir.join(name);
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&path)
        .output()
        .expect("ssh-keygen");
    assert!(out.status.success(), "{out:?}");
    let public = std::fs::read_to_string(format!("{}.pub", path.display())).unwrap();
    (path, public.trim().to_owned())
}

/// nix-build of an expression, offline: its output path.
fn build(expr: &str) -> String {
    let out = Command::new("nix-build")
        .args(["--no-out-link", "--expr", expr])
        .env("NIX_CONFIG", NIX_CONFIG)
        .output()
        .expect("nix-build");
    assert!(
        out.status.success(),
        "nix-build failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn venue(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_venue"))
        .args(args)
        .env("VENUE_KEXEC_WAIT_MS", "4000")
        .env("NIX_CONFIG", NIX_CONFIG)
        .output()
        .expect("run venue")
}

#[test]
fn one_machine_is_installed_over_its_pinned_key_and_only_with_erase_disk() {
    let dir = common::scratch("machine-install");
    let hosts = NetnsHosts::new(&dir.join("hosts"))
        .expect("test hosts need root: run as root after scripts/install-deps");
    let (deploy, deploy_pub) = keygen(&dir, "deploy");
    let (host_key, host_pub) = keygen(&dir, "host");
    let (other_key, _) = keygen(&dir, "other");
    let provisioning = Provisioning {
        authorized_keys: vec![deploy_pub],
        host_key_private: std::fs::read_to_string(&host_key).unwrap(),
    };
    let name = "machine-1";
    let address = hosts
        .create_as(
            name,
            &provisioning,
            &Boot::Public {
                os: "ubuntu-24.04".into(),
            },
        )
        .unwrap()
        .to_string();
    let mode = || hosts.with_host(name, |h| h.mode()).unwrap();
    assert_eq!(mode(), "ubuntu");

    let testbed = repo().join("hosts/testbed").canonicalize().unwrap();
    let fleet = format!("{{ servers = [ {{ name = \"{name}\"; }} ]; }}");
    let kexec = build(&format!(
        "(import {}/installer.nix {{ fleet = {fleet}; }}).kexec",
        testbed.display()
    )) + "/nixos-kexec-installer-noninteractive-x86_64-linux.tar.gz";
    let disko = build(&format!(
        "(import {}/installer.nix {{ fleet = {fleet}; }}).disko.{name}",
        testbed.display()
    ));
    let system = build(&format!(
        "(import {}/systems.nix {{ fleet = {{ servers = [ ]; }}; }}).base",
        testbed.display()
    ));
    let args = |key: &Path| -> Vec<String> {
        [
            "machine",
            "install",
            &address,
            "--host-key",
            &key.display().to_string(),
            "--identity",
            &deploy.display().to_string(),
            "--kexec",
            &kexec,
            "--disko",
            &disko,
            "--system",
            &system,
            "--json",
        ]
        .map(String::from)
        .to_vec()
    };
    let run = |extra: &[&str], key: &Path| {
        let mut a = args(key);
        a.extend(extra.iter().map(|s| s.to_string()));
        venue(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };

    // Without the confirmation: nothing happens.
    let out = run(&[], &host_key);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--erase-disk"),
        "{out:?}"
    );

    // Pinned to another key: refused at the first connection, nothing sent.
    let out = run(&["--erase-disk"], &other_key);
    assert!(!out.status.success());
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report[0]["install"], "refused", "{report}");
    assert_eq!(mode(), "ubuntu");
    let ubuntu_root = hosts
        .with_host(name, |h| h.dir.join("ubuntu/root"))
        .unwrap();
    let sent: Vec<_> = std::fs::read_dir(&ubuntu_root)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with("kexec"))
        .collect();
    assert!(sent.is_empty(), "something reached the host: {sent:?}");

    // Its own key: installed, rebooted, running the system, same key.
    let out = run(&["--erase-disk"], &host_key);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&out.stderr));
    });
    assert!(
        out.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(report[0]["install"], "installed", "{report}");
    assert_eq!(report[0]["system"], system.as_str(), "{report}");
    assert_eq!(mode(), "nixos");
    let disk = hosts.with_host(name, |h| h.disk()).unwrap();
    let on_disk = std::fs::read_to_string(disk.join("etc/ssh/ssh_host_ed25519_key")).unwrap();
    assert_eq!(
        on_disk.trim(),
        std::fs::read_to_string(&host_key).unwrap().trim()
    );
    let public = std::fs::read_to_string(disk.join("etc/ssh/ssh_host_ed25519_key.pub")).unwrap();
    assert_eq!(
        public.split_whitespace().nth(1),
        host_pub.split_whitespace().nth(1)
    );
    let phases: Vec<&str> = report[0]["phases"]
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
    ] {
        assert!(phases.contains(&p), "{p} missing from {phases:?}");
    }
    eprintln!("venue machine install: {}", report[0]["phases"]);

    // Again: it runs NixOS already, nothing to do.
    let out = run(&["--erase-disk"], &host_key);
    assert!(out.status.success(), "{out:?}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report[0]["install"], "already", "{report}");
    drop(hosts);
    let _ = std::fs::remove_dir_all(&dir);
}
