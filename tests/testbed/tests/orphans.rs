//! A test process killed before its hosts' Drop leaves them behind: their
//! namespace, their link and the services in them. The next process that
//! makes test hosts removes them, and never another live process's hosts.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use venue_testbed::netns::sweep_orphans;

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(out.status.success(), "ip {args:?}: {out:?}");
}

fn netns_exists(name: &str) -> bool {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.split_whitespace().next() == Some(name))
}

fn link_exists(name: &str) -> bool {
    Command::new("ip")
        .args(["link", "show", name])
        .output()
        .unwrap()
        .status
        .success()
}

/// A host as a killed test leaves it: a namespace with a service in it and
/// the machine's end of its link.
fn leftover(id: u32, index: u32) -> (String, String, std::process::Child) {
    let netns = format!("venue-{id:x}-{index}");
    let outer = format!("vo{id:x}x{index}");
    let inner = format!("vi{id:x}x{index}");
    ip(&["netns", "add", &netns]);
    ip(&[
        "link", "add", &outer, "type", "veth", "peer", "name", &inner,
    ]);
    ip(&["link", "set", &inner, "netns", &netns]);
    let service = Command::new("ip")
        .args(["netns", "exec", &netns, "sleep", "300"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    (netns, outer, service)
}

#[test]
fn hosts_of_a_gone_test_process_are_removed_and_a_live_ones_kept() {
    if !is_root() {
        assert!(
            std::env::var_os("CI").is_none(),
            "test hosts need root in CI"
        );
        eprintln!("skipped: test hosts need root");
        return;
    }
    let live: BTreeSet<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .map(|pid| pid % 0xffff)
        .collect();
    // An id no running process has: its maker is gone.
    let gone = (0x1000..0xfff0)
        .rev()
        .find(|id| !live.contains(id))
        .unwrap();
    let (orphan, orphan_link, mut orphan_service) = leftover(gone, 7);
    // One of this process's own: alive, so kept.
    let own = std::process::id() % 0xffff;
    let (kept, kept_link, mut kept_service) = leftover(own, 4093);

    sweep_orphans();

    assert!(!netns_exists(&orphan), "{orphan} was not removed");
    assert!(!link_exists(&orphan_link), "{orphan_link} was not removed");
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(status) = orphan_service.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.is_some(), "the orphan's service still runs");

    let kept_ok = netns_exists(&kept) && link_exists(&kept_link);
    assert!(
        kept_service.try_wait().unwrap().is_none(),
        "a live process's service was killed"
    );
    let _ = kept_service.kill();
    let _ = kept_service.wait();
    let _ = Command::new("ip").args(["netns", "del", &kept]).status();
    let _ = Command::new("ip")
        .args(["link", "del", &kept_link])
        .status();
    assert!(kept_ok, "a live process's host was removed");
}
