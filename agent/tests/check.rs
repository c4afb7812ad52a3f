//! `venue check`'s probes against real peers on loopback, each working and
//! each broken on purpose, found by the matching probe with a message that
//! names the host and the cause:
//! - Debian's coturn (UDP and TLS, certificates from a CA made here): a real
//!   allocation with the event's REST credentials; a host with another
//!   secret; coturn stopped; a certificate with 10 days left (warning) and
//!   one with 1 day left (failure); `--watch` reporting coturn's failure and
//!   its recovery within one interval;
//! - the testbed's BigBlueButton API (tests/testbed/src/bbb.rs, checksums as
//!   BBB checks them): getMeetings, a probe meeting created, joined, ended;
//!   a server with another secret; load against the plan;
//! - the real venue-portal (serving, with that BBB behind it): /healthz, the
//!   login page, a probe ticket made and removed with its ticket command that
//!   logs in and gets a Join URL; the portal down;
//! - Debian's prosody with the testbed's token module
//!   (hosts/testbed/services/mod_auth_venue_token.lua): BOSH, a venue-signed
//!   token accepted, none refused, the guest host refused, another secret
//!   refused.
//!
//! Needs coturn and prosody (scripts/install-deps) and the venue-portal
//! binary (`cargo build --bins`, as `cargo test --workspace` does).

mod common;

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use conference::protocol::bbb::Checksum;
use conference::{Event, Role};
use venue_agent::check::portal::TicketDesk;
use venue_agent::check::{self, Check, EventSecrets, Ports, Probe, Target};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn need(bin: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "`{bin}` is not installed: scripts/install-deps installs it"
    );
}

fn free_port() -> u16 {
    // A port free for both TCP and UDP.
    loop {
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn wait_tcp(port: u16, child: &mut Child, what: &str) {
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited with {status} before listening on {port}");
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("{what} does not listen on {port}");
}

/// Kills the child when dropped.
struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const EVENT: &str = r#"
id = "chk"
name = "check test"
timezone = "UTC"
domain = "check.test"
attendees = 40
[cloud]
location = "fsn1"
image = "ubuntu-24.04"
[[day]]
date = "2026-12-01"
open = "10:00"
close = "12:00"
[[room]]
name = "Main stage"
kind = "session"
backend = "bbb"
peak = 10
[[room]]
name = "Hallway"
kind = "hack"
backend = "jitsi"
peak = 10
"#;

fn write_event(dir: &Path) -> PathBuf {
    let file = dir.join("event.toml");
    std::fs::write(&file, EVENT).unwrap();
    file
}

fn secrets() -> EventSecrets {
    EventSecrets {
        bbb: "bbb-secret-of-the-event".into(),
        turn: "turn-secret-of-the-event".into(),
        jwt: "jwt-secret-of-the-event".into(),
    }
}

fn target(name: &str, role: Role, service_name: &str, ports: Ports) -> Target {
    Target {
        name: name.into(),
        role,
        address: LOCALHOST,
        service_name: service_name.into(),
        names: vec![service_name.into()],
        primary: true,
        ports,
    }
}

fn make_check(dir: &Path, targets: Vec<Target>, roots: &[String]) -> Check {
    let event = Event::load(&write_event(dir)).unwrap();
    let extra: Vec<(String, Vec<u8>)> = roots
        .iter()
        .map(|r| ("test CA".to_owned(), r.as_bytes().to_vec()))
        .collect();
    Check {
        event: Arc::new(event),
        targets,
        secrets: secrets(),
        checksum: Checksum::Sha256,
        jitsi_app_id: "venue".into(),
        resolver: None,
        tls: check::tls::config_with(&extra).unwrap(),
        timeout: Duration::from_secs(3),
        tickets: None,
    }
}

fn find<'a>(probes: &'a [Probe], name: &str) -> &'a Probe {
    probes
        .iter()
        .find(|p| p.probe == name)
        .unwrap_or_else(|| panic!("no probe {name} in {probes:#?}"))
}

// ---------------------------------------------------------------- coturn

/// A CA, and certificates signed by it that end in a chosen number of days.
struct Ca {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl Ca {
    fn new() -> Ca {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "venue check test CA");
        Ca {
            issuer: rcgen::CertifiedIssuer::self_signed(
                params,
                rcgen::KeyPair::generate().unwrap(),
            )
            .unwrap(),
        }
    }

    fn root(&self) -> String {
        self.issuer.pem()
    }

    /// (chain PEM, key PEM) for `name`, ending at midnight UTC `days` days from now.
    fn leaf(&self, name: &str, days: i64) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
        let end = (chrono::Utc::now() + chrono::Duration::days(days)).date_naive();
        use chrono::Datelike;
        params.not_after = rcgen::date_time_ymd(end.year(), end.month() as u8, end.day() as u8);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

struct Coturn {
    _child: Killed,
    udp: u16,
    tls: u16,
}

/// Debian's turnserver on 127.0.0.1 with `secret`, TLS with `cert`.
fn coturn(dir: &Path, secret: &str, cert: &(String, String), ports: Option<(u16, u16)>) -> Coturn {
    need("turnserver");
    let (udp, tls) = ports.unwrap_or_else(|| (free_port(), free_port()));
    let relay = 30000 + (udp % 20000);
    std::fs::write(dir.join("chain.pem"), &cert.0).unwrap();
    std::fs::write(dir.join("key.pem"), &cert.1).unwrap();
    let conf = dir.join("turnserver.conf");
    std::fs::write(
        &conf,
        format!(
            "listening-ip=127.0.0.1\nrelay-ip=127.0.0.1\nlistening-port={udp}\ntls-listening-port={tls}\n\
             alt-listening-port=0\nalt-tls-listening-port=0\n\
             min-port={relay}\nmax-port={}\nuse-auth-secret\nstatic-auth-secret={secret}\nrealm=check.test\n\
             cert={}\npkey={}\nno-dtls\nno-cli\nfingerprint\nuserdb={}\npidfile={}\nlog-file={}\nsimple-log\n",
            relay + 40,
            dir.join("chain.pem").display(),
            dir.join("key.pem").display(),
            dir.join("turndb").display(),
            dir.join("turnserver.pid").display(),
            dir.join("turn.log").display(),
        ),
    )
    .unwrap();
    let mut child = Command::new("turnserver")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start turnserver");
    wait_tcp(tls, &mut child, "turnserver");
    wait_tcp(udp, &mut child, "turnserver");
    Coturn {
        _child: Killed(child),
        udp,
        tls,
    }
}

/// coturn with the event's TURN secret and a certificate for its name.
fn event_coturn(dir: &Path, ca: &Ca) -> Coturn {
    coturn(
        dir,
        &secrets().turn,
        &ca.leaf("chk-coturn-1.check.test", 60),
        None,
    )
}

fn turn_target(c: &Coturn) -> Target {
    target(
        "chk-coturn-1",
        Role::Coturn,
        "chk-coturn-1.check.test",
        Ports {
            // The TLS probe reads coturn's own certificate on its TLS port.
            https: c.tls,
            turn: c.udp,
            turns: c.tls,
            plain_http: false,
        },
    )
}

/// The TURN and TLS probes of one coturn host.
async fn turn_round(check: &Check) -> Vec<Probe> {
    let t = &check.targets[0];
    let mut p = check::turn::probes(check, t).await;
    p.extend(check::tls::probes(check, t).await);
    p
}

fn scratch(name: &str) -> PathBuf {
    common::scratch(&format!("check-{name}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turn_allocates_with_the_events_secret_over_udp_and_tls() {
    let dir = scratch("turn-ok");
    let ca = Ca::new();
    let c = event_coturn(&dir, &ca);
    let check = make_check(&dir, vec![turn_target(&c)], &[ca.root()]);
    let p = turn_round(&check).await;
    for name in ["turn udp", "turn tls", "turn wrong secret"] {
        let probe = find(&p, name);
        assert!(probe.ok && !probe.warning, "{probe:#?}");
    }
    assert!(find(&p, "turn udp")
        .message
        .contains("allocated relay 127.0.0.1:"));
    assert!(find(&p, "turn wrong secret")
        .message
        .contains("refused (401)"));
    let tls = find(&p, "tls chk-coturn-1.check.test");
    assert!(
        tls.ok && !tls.warning && tls.message.contains("days left"),
        "{tls:#?}"
    );

    // Without the test CA the chain does not verify.
    let untrusted = make_check(&dir, vec![turn_target(&c)], &[]);
    let p = turn_round(&untrusted).await;
    let tls = find(&p, "tls chk-coturn-1.check.test");
    assert!(!tls.ok, "{tls:#?}");
    assert!(
        tls.message.contains("certificate refused"),
        "{}",
        tls.message
    );
    assert!(!find(&p, "turn tls").ok);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turn_finds_a_host_with_another_secret_and_a_stopped_coturn() {
    let dir = scratch("turn-broken");
    let ca = Ca::new();
    let cert = ca.leaf("chk-coturn-1.check.test", 60);
    let c = coturn(&dir, "the-host-has-another-secret", &cert, None);
    let check = make_check(&dir, vec![turn_target(&c)], &[ca.root()]);
    let p = turn_round(&check).await;
    for name in ["turn udp", "turn tls"] {
        let probe = find(&p, name);
        assert!(!probe.ok, "{probe:#?}");
        assert!(
            probe
                .message
                .starts_with("coturn on chk-coturn-1 (127.0.0.1): ")
                && probe
                    .message
                    .contains("refused the event's TURN credentials (401")
                && probe.message.contains("the host has another TURN secret"),
            "{}",
            probe.message
        );
    }
    // A wrong secret is refused either way: that probe passes.
    assert!(find(&p, "turn wrong secret").ok);

    // Stopped: every TURN probe fails, naming the port.
    drop(c);
    let p = turn_round(&check).await;
    let udp = find(&p, "turn udp");
    assert!(!udp.ok);
    assert!(
        udp.message
            .starts_with("coturn on chk-coturn-1 (127.0.0.1): UDP ")
            && (udp.message.contains("refused") || udp.message.contains("no answer")),
        "{}",
        udp.message
    );
    let tls = find(&p, "turn tls");
    assert!(
        !tls.ok && tls.message.contains("cannot connect"),
        "{}",
        tls.message
    );
    assert!(!find(&p, "turn wrong secret").ok, "no answer is no refusal");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_about_to_expire_warns_then_fails() {
    let dir = scratch("tls-expiry");
    let ca = Ca::new();
    let name = "chk-coturn-1.check.test";
    let c = coturn(&dir, &secrets().turn, &ca.leaf(name, 10), None);
    let check = make_check(&dir, vec![turn_target(&c)], &[ca.root()]);
    let tls = check::tls::probes(&check, &check.targets[0]).await;
    assert!(tls[0].ok && tls[0].warning, "{:#?}", tls[0]);
    assert!(
        tls[0]
            .message
            .starts_with("warning: the certificate for chk-coturn-1.check.test")
            && tls[0].message.contains("expires in 9 days"),
        "{}",
        tls[0].message
    );

    let ports = Some((c.udp, c.tls));
    drop(c);
    let c = coturn(&dir, &secrets().turn, &ca.leaf(name, 1), ports);
    let tls = check::tls::probes(&check, &check.targets[0]).await;
    assert!(!tls[0].ok, "{:#?}", tls[0]);
    assert!(
        tls[0]
            .message
            .starts_with("coturn on chk-coturn-1 (127.0.0.1): TLS ")
            && tls[0].message.contains("expires in 0 days"),
        "{}",
        tls[0].message
    );
    drop(c);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A TCP front for `to` that resets the first `resets` connections (RST,
/// as a server that cuts a handshake) and forwards the others.
async fn resetting_front(to: u16, resets: usize) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut n = 0;
        while let Ok((mut client, _)) = listener.accept().await {
            n += 1;
            if n <= resets {
                // Reset, not a clean close: what the coturn seen did.
                client.set_zero_linger().unwrap();
                drop(client);
                continue;
            }
            tokio::spawn(async move {
                let mut server = tokio::net::TcpStream::connect(("127.0.0.1", to))
                    .await
                    .unwrap();
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            });
        }
    });
    addr
}

/// A handshake the server cuts once is tried again and succeeds; cut every
/// time, it fails with both errors; a refused certificate is not retried.
#[tokio::test]
async fn a_handshake_cut_once_is_tried_again_and_a_refused_one_is_not() {
    let dir = scratch("tls-cut");
    let ca = Ca::new();
    let name = "chk-coturn-1.check.test";
    let c = coturn(&dir, &secrets().turn, &ca.leaf(name, 90), None);
    let check = make_check(&dir, vec![turn_target(&c)], &[ca.root()]);

    let once = resetting_front(c.tls, 1).await;
    assert!(check::tls::connect(&check, once, name).await.is_ok());

    let always = resetting_front(c.tls, usize::MAX).await;
    let err = check::tls::connect(&check, always, name).await.unwrap_err();
    assert!(err.contains("(twice; the first: TLS "), "{err}");

    // Another CA's chain: refused at once, not tried twice.
    let other = make_check(&dir, vec![turn_target(&c)], &[Ca::new().root()]);
    let counted = resetting_front(c.tls, 0).await;
    let err = check::tls::connect(&other, counted, name)
        .await
        .unwrap_err();
    assert!(
        err.contains("certificate refused") && !err.contains("twice"),
        "{err}"
    );
    drop(c);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Lines the watcher prints, as they come, with when they came.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Printed>>);

/// Bytes not yet ending a line, and the lines with when they came.
type Printed = (Vec<u8>, Vec<(Instant, String)>);

impl Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut g = self.0.lock().unwrap();
        g.0.extend_from_slice(buf);
        while let Some(i) = g.0.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = g.0.drain(..=i).collect();
            let text = String::from_utf8_lossy(&line).trim_end().to_owned();
            g.1.push((Instant::now(), text));
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Lines {
    /// Waits up to `within` for a line after `since` matching `pred`.
    async fn wait(&self, since: Instant, within: Duration, pred: impl Fn(&str) -> bool) -> Instant {
        let deadline = Instant::now() + within;
        loop {
            if let Some((at, _)) = self
                .0
                .lock()
                .unwrap()
                .1
                .iter()
                .find(|(at, l)| *at >= since && pred(l))
            {
                return *at;
            }
            if Instant::now() > deadline {
                let all: Vec<String> = self
                    .0
                    .lock()
                    .unwrap()
                    .1
                    .iter()
                    .map(|(_, l)| l.clone())
                    .collect();
                panic!(
                    "no such line within {within:?}; printed:\n{}",
                    all.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_reports_a_failure_and_its_recovery_within_one_interval() {
    let dir = scratch("watch");
    let ca = Ca::new();
    // Named `localhost`, so that the round's DNS probe (the system's
    // resolver) passes too.
    let cert = ca.leaf("localhost", 60);
    let c = coturn(&dir, &secrets().turn, &cert, None);
    let ports = Some((c.udp, c.tls));
    let mut t = turn_target(&c);
    t.service_name = "localhost".into();
    t.names = vec!["localhost".into()];
    let check = Arc::new(make_check(&dir, vec![t], &[ca.root()]));
    let interval = Duration::from_secs(2);
    let lines = Lines::default();
    let started = Instant::now();
    let task = {
        let (check, mut out) = (check.clone(), lines.clone());
        tokio::spawn(async move { check::watch::watch(&check, interval, false, &mut out).await })
    };
    // The first round in full.
    lines
        .wait(started, Duration::from_secs(10), |l| {
            l.contains("all 5 probes passed")
        })
        .await;
    let before = lines.0.lock().unwrap().1.len();

    let broken = Instant::now();
    drop(c);
    let seen = lines
        .wait(broken, interval * 3, |l| {
            l.contains("failing") && l.contains("turn udp")
        })
        .await;
    // A round starts within one interval and takes well under a second here.
    assert!(
        seen - broken <= interval + Duration::from_millis(1500),
        "failure seen after {:?}",
        seen - broken
    );
    {
        let g = lines.0.lock().unwrap();
        let fail =
            g.1.iter()
                .find(|(_, l)| l.contains("failing") && l.contains("turn udp"))
                .unwrap();
        assert!(
            fail.1.contains("coturn on chk-coturn-1 (127.0.0.1)"),
            "{}",
            fail.1
        );
        // Only changes: not the whole table again.
        assert!(
            g.1[before..].iter().all(|(_, l)| !l.starts_with("HOST")),
            "{:?}",
            g.1
        );
    }

    let fixed = Instant::now();
    let c = coturn(&dir, &secrets().turn, &cert, ports);
    let seen = lines
        .wait(fixed, interval * 3, |l| {
            l.contains("recovered") && l.contains("turn udp")
        })
        .await;
    assert!(
        seen - fixed <= interval + Duration::from_millis(1500),
        "recovery seen after {:?}",
        seen - fixed
    );
    task.abort();
    drop(c);
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------- BBB

async fn bbb_server(secret: &str) -> (u16, Arc<std::sync::Mutex<venue_testbed::bbb::BbbState>>) {
    let (app, state) = venue_testbed::bbb::router(secret, &[Checksum::Sha256, Checksum::Sha512]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum_serve(listener, app).await });
    (port, state)
}

async fn axum_serve(listener: tokio::net::TcpListener, app: axum::Router) {
    axum::serve(listener, app).await.unwrap();
}

fn bbb_target(port: u16) -> Target {
    target(
        "chk-bbb-1",
        Role::Bbb,
        "chk-bbb-1.check.test",
        Ports {
            https: port,
            plain_http: true,
            ..Ports::default()
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bbb_answers_creates_joins_and_ends_a_probe_meeting() {
    let dir = scratch("bbb-ok");
    let (port, state) = bbb_server(&secrets().bbb).await;
    let check = make_check(&dir, vec![bbb_target(port)], &[]);
    let t = &check.targets[0];
    let p = check::bbb::probes(&check, t).await;
    let api = find(&p, "bbb api");
    assert!(
        api.ok && api.message.contains("getMeetings SUCCESS"),
        "{api:#?}"
    );
    let meeting = find(&p, "bbb meeting");
    assert!(
        meeting.ok && meeting.message.contains("created, joined, ended"),
        "{meeting:#?}"
    );
    // Ended: nothing of the probe's is left on the server.
    assert!(state.lock().unwrap().meetings.is_empty());

    // People in the room's meeting (the portal names it <event>-<slug>):
    // within the plan, then above the room's peak, then above a meeting's limit.
    let crowd = |n: usize| {
        let mut s = state.lock().unwrap();
        s.meetings.insert(
            "chk-main-stage".into(),
            venue_testbed::bbb::Meeting {
                id: "chk-main-stage".into(),
                name: "Main stage".into(),
                create_time: 0,
                attendee_pw: "a".into(),
                moderator_pw: "m".into(),
                attendees: (0..n)
                    .map(|i| venue_testbed::bbb::Attendee {
                        user_id: format!("u{i}"),
                        name: format!("U {i}"),
                        moderator: false,
                        listen_only: true,
                    })
                    .collect(),
            },
        );
    };
    crowd(7);
    let load = check::load::probes(&check, t).await;
    assert!(load[0].ok && !load[0].warning, "{:#?}", load[0]);
    assert_eq!(load[0].message, "7 of 150 people; rooms main-stage 7/10");
    crowd(12);
    let load = check::load::probes(&check, t).await;
    assert!(load[0].ok && load[0].warning, "{:#?}", load[0]);
    assert!(load[0]
        .message
        .contains("Main stage has 12 people, planned for 10"));
    crowd(101);
    let load = check::load::probes(&check, t).await;
    assert!(!load[0].ok, "{:#?}", load[0]);
    assert!(
        load[0]
            .message
            .contains("more than one meeting holds (100)"),
        "{}",
        load[0].message
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bbb_with_another_secret_is_named() {
    let dir = scratch("bbb-secret");
    let (port, state) = bbb_server("the-host-has-another-secret").await;
    let check = make_check(&dir, vec![bbb_target(port)], &[]);
    let p = check::bbb::probes(&check, &check.targets[0]).await;
    for name in ["bbb api", "bbb meeting"] {
        let probe = find(&p, name);
        assert!(!probe.ok, "{probe:#?}");
        assert!(
            probe.message.starts_with("BBB on chk-bbb-1 (127.0.0.1): ")
                && probe
                    .message
                    .contains("checksumError: the host has another secret"),
            "{}",
            probe.message
        );
    }
    assert!(state.lock().unwrap().rejected >= 2);
    // Not listening at all: the cause is the connection.
    drop(state);
    let closed = free_port();
    let check = make_check(&dir, vec![bbb_target(closed)], &[]);
    let p = check::bbb::probes(&check, &check.targets[0]).await;
    assert!(find(&p, "bbb api").message.contains("cannot connect"));
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------- portal

fn portal_binary() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_venue"))
        .parent()
        .unwrap()
        .join("venue-portal");
    assert!(
        bin.is_file(),
        "{} is missing: `cargo build --bins` first",
        bin.display()
    );
    bin
}

/// The portal's own ticket command on its state directory, as
/// `venue-portal-ctl` runs it on a host.
struct LocalTickets {
    state: PathBuf,
    added: Mutex<Vec<String>>,
}

impl LocalTickets {
    fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new(portal_binary())
            .args(args)
            .arg("--state")
            .arg(&self.state)
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "venue-portal {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl TicketDesk for LocalTickets {
    fn add(&self, email: &str) -> anyhow::Result<String> {
        self.added.lock().unwrap().push(email.to_owned());
        Ok(self
            .run(&["tickets", "add", email, "--staff", "--name", "venue check"])?
            .trim()
            .to_owned())
    }
    fn remove(&self, email: &str) -> anyhow::Result<()> {
        self.run(&["tickets", "revoke", email]).map(|_| ())
    }
}

fn tickets_in(state: &Path) -> i64 {
    let db = rusqlite::Connection::open(state.join("portal.sqlite")).unwrap();
    db.query_row("SELECT count(*) FROM tickets", [], |r| r.get(0))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portal_logs_in_a_probe_ticket_and_gets_a_join_url_then_fails_when_down() {
    let dir = scratch("portal");
    let (bbb_port, bbb_state) = bbb_server(&secrets().bbb).await;
    let event = write_event(&dir);
    std::fs::write(dir.join("bbb-secret"), secrets().bbb).unwrap();
    std::fs::write(
        dir.join("session"),
        "a-session-secret-of-32-bytes-or-more!!",
    )
    .unwrap();
    let config = dir.join("portal.toml");
    std::fs::write(
        &config,
        format!(
            "session_secret_file = \"{}\"\n[[bbb]]\nname = \"chk-bbb-1\"\nurl = \"http://127.0.0.1:{bbb_port}/bigbluebutton/api\"\nsecret_file = \"{}\"\nchecksum = \"sha256\"\n",
            dir.join("session").display(),
            dir.join("bbb-secret").display()
        ),
    )
    .unwrap();
    let state = dir.join("state");
    let port = free_port();
    let mut child = Command::new(portal_binary())
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--event")
        .arg(&event)
        .arg("--state")
        .arg(&state)
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_tcp(port, &mut child, "venue-portal");
    let portal = Killed(child);
    // One ticket of an attendee, which the probe must leave alone.
    LocalTickets {
        state: state.clone(),
        added: Mutex::default(),
    }
    .run(&["tickets", "add", "attendee@example.org"])
    .unwrap();

    let desk = Arc::new(LocalTickets {
        state: state.clone(),
        added: Mutex::default(),
    });
    let mut check = make_check(
        &dir,
        vec![target(
            "chk-portal-1",
            Role::Portal,
            "check.test",
            Ports {
                https: port,
                plain_http: true,
                ..Ports::default()
            },
        )],
        &[],
    );
    check.tickets = Some(desk.clone());
    let t = check.targets[0].clone();
    let p = check::portal::probes(&check, &t).await;
    for name in ["portal healthz", "portal login page", "portal join"] {
        assert!(find(&p, name).ok, "{:#?}", find(&p, name));
    }
    let join = find(&p, "portal join");
    assert!(
        join.message.contains("joins Main stage")
            && join.message.contains(&format!(
                "http://127.0.0.1:{bbb_port}/bigbluebutton/api/join"
            )),
        "{}",
        join.message
    );
    // The portal created the room's meeting on BBB for the Join.
    assert!(bbb_state
        .lock()
        .unwrap()
        .meetings
        .contains_key("chk-main-stage"));
    // The probe ticket is gone again; the attendee's is not.
    assert_eq!(desk.added.lock().unwrap().len(), 1);
    assert_eq!(tickets_in(&state), 1);

    // The portal down: each probe says so, naming the host.
    drop(portal);
    check.timeout = Duration::from_secs(2);
    let p = check::portal::probes(&check, &t).await;
    for name in ["portal healthz", "portal login page", "portal join"] {
        let probe = find(&p, name);
        assert!(!probe.ok, "{probe:#?}");
        assert!(
            probe
                .message
                .starts_with("portal on chk-portal-1 (127.0.0.1): ")
                && probe.message.contains("cannot connect"),
            "{}",
            probe.message
        );
    }
    // Even a failed login leaves no probe ticket behind.
    assert_eq!(tickets_in(&state), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------- Jitsi

/// Debian's prosody with the testbed's token module for `host` and the
/// guest host, BOSH on `port`.
fn prosody(dir: &Path, host: &str, jwt_secret: &str) -> (Killed, u16) {
    need("prosody");
    let port = free_port();
    let c2s = free_port();
    let plugins = Path::new(env!("CARGO_MANIFEST_DIR")).join("../hosts/testbed/services");
    assert!(
        plugins.join("mod_auth_venue_token.lua").is_file(),
        "the testbed's prosody module is missing"
    );
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::write(dir.join("jwt-secret"), jwt_secret).unwrap();
    let conf = dir.join("prosody.cfg.lua");
    std::fs::write(
        &conf,
        format!(
            r#"
run_as_root = true
daemonize = false
pidfile = "{d}/prosody.pid"
data_path = "{d}/data"
plugin_paths = {{ "{plugins}" }}
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {c2s} }}
s2s_ports = {{ }}
http_ports = {{ {port} }}
http_interfaces = {{ "127.0.0.1" }}
https_ports = {{ }}
consider_bosh_secure = true
c2s_require_encryption = false
log = {{ info = "{d}/prosody.log" }}
modules_enabled = {{ "bosh", "saslauth", "disco", "ping" }}
modules_disabled = {{ "s2s", "tls", "register", "posix" }}
storage = "internal"
VirtualHost "{host}"
  authentication = "venue_token"
  venue_token_secret_file = "{d}/jwt-secret"
  venue_token_app_id = "venue"
VirtualHost "guest.{host}"
  authentication = "venue_token"
  venue_token_refuse = "guest access is disabled on this venue"
"#,
            d = dir.display(),
            plugins = plugins.display(),
        ),
    )
    .unwrap();
    let mut child = Command::new("prosody")
        .args(["-F", "--config"])
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prosody");
    wait_tcp(port, &mut child, "prosody");
    (Killed(child), port)
}

fn jitsi_target(port: u16) -> Target {
    target(
        "chk-jitsi-1",
        Role::Jitsi,
        "chk-jitsi-1.check.test",
        Ports {
            https: port,
            plain_http: true,
            ..Ports::default()
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jitsi_accepts_a_venue_token_and_refuses_none_and_guests() {
    let dir = scratch("jitsi");
    let host = "chk-jitsi-1.check.test";
    let (_prosody, port) = prosody(&dir, host, &secrets().jwt);
    let check = make_check(&dir, vec![jitsi_target(port)], &[]);
    let p = check::jitsi::probes(&check, &check.targets[0]).await;
    let bosh = find(&p, "jitsi bosh");
    assert!(bosh.ok && bosh.message.contains("ANONYMOUS"), "{bosh:#?}");
    let token = find(&p, "jitsi token");
    assert!(token.ok, "{token:#?}");
    let none = find(&p, "jitsi no token");
    assert!(
        none.ok && none.message.contains("not-authorized: no token"),
        "{none:#?}"
    );
    let guest = find(&p, "jitsi guest");
    assert!(
        guest.ok && guest.message.contains("guest access is disabled"),
        "{guest:#?}"
    );

    // The host has another JWT secret: the event's tokens are refused.
    let mut other = make_check(&dir, vec![jitsi_target(port)], &[]);
    other.secrets.jwt = "another-secret".into();
    let p = check::jitsi::probes(&other, &other.targets[0]).await;
    let token = find(&p, "jitsi token");
    assert!(!token.ok, "{token:#?}");
    assert!(
        token
            .message
            .starts_with("Jitsi on chk-jitsi-1 (127.0.0.1): prosody refused a venue-signed token")
            && token.message.contains("another JWT secret"),
        "{}",
        token.message
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// coturn keeps a released allocation's session for a while, so a client
/// port the kernel hands out again meets 437 (Allocation Mismatch) under
/// another username; the probe then tries from another port (RFC 8656 §7.4),
/// as a browser's TURN client does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allocation_mismatch_on_a_reused_client_port_is_tried_from_another_port() {
    use check::turn::{allocate_udp_from, allocate_udp_on, Error};
    let dir = scratch("turn-437");
    let ca = Ca::new();
    let c = event_coturn(&dir, &ca);
    let server = std::net::SocketAddr::new(LOCALHOST, c.udp);
    let expires = chrono::Utc::now().timestamp() + 600;
    let creds =
        |at: i64| conference::protocol::turn::credentials(&secrets().turn, "venue-check", at);
    let bind = |port: u16| async move {
        tokio::net::UdpSocket::bind((LOCALHOST, port))
            .await
            .unwrap()
    };

    // A probe allocates and releases from a port…
    let first = bind(0).await;
    let port = first.local_addr().unwrap().port();
    allocate_udp_on(first, server, &creds(expires))
        .await
        .unwrap();
    // …and the next, a second later (another username), gets the same port.
    match allocate_udp_on(bind(port).await, server, &creds(expires + 1)).await {
        // "Mismatched allocation: wrong transaction ID" or "Allocation
        // mismatch: wrong credentials", as the session stands.
        Err(Error::Refused(437, reason)) => {
            assert!(reason.to_lowercase().contains("mismatch"), "{reason}")
        }
        other => panic!("coturn no longer holds a released session: {other:?}"),
    }
    // The probe's way: from that port first, then from another.
    let relay = allocate_udp_from(bind(port).await, server, &creds(expires + 2))
        .await
        .unwrap();
    assert_eq!(relay.ip(), LOCALHOST);
    let _ = std::fs::remove_dir_all(&dir);
}
