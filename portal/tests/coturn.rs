//! Debian's coturn accepts the TURN REST credentials the portal hands out,
//! and refuses expired ones and ones made with another secret. Needs
//! `turnserver`, `turnutils_peer` and `turnutils_uclient` (apt-get install
//! coturn); fails, not skips, without them.

mod common;

use std::net::UdpSocket;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

fn need(bin: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "`{bin}` is not installed: this test needs Debian's coturn (apt-get install -y coturn)"
    );
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        // turnutils_peer ignores SIGTERM.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_udp_listening(port: u16) {
    for _ in 0..100 {
        if UdpSocket::bind(("127.0.0.1", port)).is_err() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("nothing listens on UDP port {port}");
}

fn uclient(turn_port: u16, peer_port: u16, user: &str, password: &str) -> i32 {
    let out = Command::new("timeout")
        .args([
            "60",
            "turnutils_uclient",
            "-u",
            user,
            "-w",
            password,
            "-e",
            "127.0.0.1",
            "-r",
        ])
        .arg(peer_port.to_string())
        .args(["-n", "5", "-p"])
        .arg(turn_port.to_string())
        .arg("127.0.0.1")
        .output()
        .unwrap();
    out.status.code().unwrap_or(-1)
}

fn start_coturn(dir: &Path, secret: &str) -> (Killed, u16) {
    let port = free_udp_port();
    let relay = 20000 + (std::process::id() % 20000) as u16;
    let conf = dir.join("turnserver.conf");
    std::fs::write(
        &conf,
        format!(
            "listening-ip=127.0.0.1\nrelay-ip=127.0.0.1\nlistening-port={port}\nmin-port={relay}\nmax-port={}\nuse-auth-secret\nstatic-auth-secret={secret}\nrealm=venue.test\nno-tls\nno-dtls\nno-cli\nallow-loopback-peers\nuserdb={}\npidfile={}\nlog-file={}\nsimple-log\n",
            relay + 50,
            dir.join("turndb").display(),
            dir.join("turnserver.pid").display(),
            dir.join("turn.log").display(),
        ),
    )
    .unwrap();
    let child = Command::new("turnserver")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start turnserver");
    wait_udp_listening(port);
    (Killed(child), port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coturn_accepts_the_portals_credentials_and_refuses_expired_ones() {
    for bin in ["turnserver", "turnutils_peer", "turnutils_uclient"] {
        need(bin);
    }
    let dir = TempDir::new("coturn");
    let secret = "coturn-static-auth-secret";
    let (_turn, turn_port) = start_coturn(dir.path(), secret);
    let peer_port = free_udp_port();
    let _peer = Killed(
        Command::new("turnutils_peer")
            .args(["-L", "127.0.0.1", "-p"])
            .arg(peer_port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_udp_listening(peer_port);

    // Credentials as the portal hands them out at /turn.
    let event = write_live_event(dir.path());
    let secret_file = dir.write("turn-secret", &format!("{secret}\n"));
    let extra = format!(
        "[turn]\nuris = [\"turn:127.0.0.1:{turn_port}?transport=udp\"]\nsecret_file = \"{}\"\nttl_seconds = 600\n",
        secret_file.display()
    );
    let config = write_config(dir.path(), 10.0, &[], &extra);
    let state = dir.path().join("state");
    import_tickets(&state, TICKETS);
    let p = Portal::start(&event, &state, Some(&config));
    let c = client();
    let cookie = login(&c, &p.url, "bob@example.org", "bob-ticket-0002").await;
    let (s, _, json) = get(&c, &format!("{}/turn", p.url), &cookie).await;
    assert_eq!(s, 200);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let (user, pass) = (
        v["username"].as_str().unwrap().to_owned(),
        v["password"].as_str().unwrap().to_owned(),
    );

    let ok = tokio::task::spawn_blocking(move || uclient(turn_port, peer_port, &user, &pass))
        .await
        .unwrap();
    assert_eq!(
        ok,
        0,
        "coturn refused the portal's credentials: {}",
        std::fs::read_to_string(dir.path().join("turn.log")).unwrap_or_default()
    );

    let now = chrono::Utc::now().timestamp();
    let expired = conference::protocol::turn::credentials(secret, "venue-2", now - 60);
    let code = tokio::task::spawn_blocking(move || {
        uclient(turn_port, peer_port, &expired.username, &expired.password)
    })
    .await
    .unwrap();
    assert_ne!(code, 0, "coturn accepted expired credentials");
    let wrong = conference::protocol::turn::credentials("another-secret", "venue-2", now + 600);
    let code = tokio::task::spawn_blocking(move || {
        uclient(turn_port, peer_port, &wrong.username, &wrong.password)
    })
    .await
    .unwrap();
    assert_ne!(
        code, 0,
        "coturn accepted credentials made with another secret"
    );
}
