//! Test hosts reach each other through this machine on a new one too, where
//! IPv4 forwarding starts off: making hosts must turn on what they rely on,
//! not a test or stage that happened to run before.
//!
//! Its own test binary: it turns forwarding off, which no other test in the
//! same process may see half-way.

use std::path::PathBuf;
use std::process::Command;

use venue_testbed::netns::{NetnsHosts, Provisioning};

fn host_key(dir: &std::path::Path, name: &str) -> String {
    let path = dir.join(format!("{name}.key"));
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&path)
        .output()
        .expect("ssh-keygen (openssh-client)");
    assert!(out.status.success(), "{out:?}");
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn hosts_reach_each_other_when_the_machine_started_without_forwarding() {
    if !std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
    {
        assert!(
            std::env::var_os("CI").is_none(),
            "test hosts need root in CI"
        );
        eprintln!("skipped: test hosts need root");
        return;
    }
    let dir: PathBuf =
        std::env::temp_dir().join(format!("venue-forwarding-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // As a new machine has it.
    std::fs::write("/proc/sys/net/ipv4/ip_forward", "0\n").unwrap();

    let hosts = NetnsHosts::new(&dir.join("hosts")).unwrap();
    let provisioning = |name| Provisioning {
        authorized_keys: vec![],
        host_key_private: host_key(&dir, name),
    };
    let _a = hosts.create("fwd-a", &provisioning("fwd-a")).unwrap();
    let b = hosts.create("fwd-b", &provisioning("fwd-b")).unwrap();
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
            .unwrap()
            .trim(),
        "1",
        "making test hosts turns forwarding on"
    );
    // From inside host a, host b's sshd answers (through this machine).
    let netns_a = hosts.with_host("fwd-a", |h| h.netns.clone()).unwrap();
    let out = Command::new("ip")
        .args(["netns", "exec", &netns_a, "timeout", "5", "bash", "-c"])
        .arg(format!("exec 3<>/dev/tcp/{b}/22 && head -c 4 <&3"))
        .output()
        .unwrap();
    let reached = String::from_utf8_lossy(&out.stdout).starts_with("SSH-");
    drop(hosts);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        reached,
        "host a could not reach host b's sshd: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
