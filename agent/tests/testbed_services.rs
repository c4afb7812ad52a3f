//! The testbed's hosts run real services (hosts/testbed/services): after one
//! `venue up` of hosts/testbed/event.toml, each answers its own protocol,
//! through the event's names and certificate, with the secrets venue
//! deployed, and refuses what it must refuse:
//! - coturn: a TURN allocation (turnutils_uclient) with REST credentials
//!   from the deployed secret over UDP 3478 and TLS 5349; a wrong secret and
//!   an expired credential are refused;
//! - BigBlueButton (fake-bbb behind nginx): getMeetings with the right
//!   checksum, refused with another secret or a disabled algorithm; create,
//!   join, getMeetingInfo, isMeetingRunning, end;
//! - prosody: a BOSH session with a venue-signed token logs in, one without
//!   a token, with a wrong one, or on the guest host is refused;
//! - the portal (venue-portal behind nginx): login with a seeded ticket, a
//!   Join that creates the meeting on the BBB host and lands in it, a Jitsi
//!   Join whose token prosody accepts.
//!
//! A deploy of the same secrets again restarts nothing; a second activation
//! restarts every service without leaving a duplicate, and `venue down`
//! ends them all. Needs root, Nix, sshd, iproute2, pebble,
//! dig, nginx, coturn, prosody (scripts/install-deps) and the built
//! venue-portal and fake-bbb binaries (`cargo build --bins`).

mod common;

use common::{ok, Names};

use std::collections::BTreeMap;

use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use conference::protocol::bbb::{self, Checksum};
use conference::protocol::{jwt, turn};
use serde_json::Value;
use venue_testbed::netns::NetnsHosts;
use venue_testbed::{FakeCloud, FakeConfig};

const DOMAIN: &str = "testbed.example.org";

fn venue(url: &str, env: &[(&str, String)], args: &[&str]) -> Output {
    common::testbed_venue(url, env, args)
        .output()
        .expect("run venue")
}

/// An HTTPS client that trusts only `root` and finds each name at its
/// address; it does not follow redirects (the tests read them).
fn client(root: &[u8], names: &BTreeMap<String, String>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(root).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10));
    for (name, ip) in names {
        b = b.resolve(name, format!("{ip}:443").parse().unwrap());
    }
    b.build().unwrap()
}

async fn text(c: &reqwest::Client, url: &str) -> (u16, String) {
    let r = c
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e:?}"));
    (r.status().as_u16(), r.text().await.unwrap())
}

/// `name=value` of the Set-Cookie header for `name`.
fn cookie(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap().to_owned())
        .find(|v| v.starts_with(&format!("{name}=")))
}

fn csrf_of(html: &str) -> String {
    let key = "name=\"csrf\" value=\"";
    let i = html.find(key).expect("a csrf field") + key.len();
    html[i..i + html[i..].find('"').unwrap()].to_owned()
}

/// Opens a BOSH session at `https://<host>/http-bind` for XMPP domain `to`
/// (with `?token=` when given) and authenticates with SASL ANONYMOUS, as
/// Jitsi Meet does; the answer to the `<auth/>`.
async fn bosh_login(c: &reqwest::Client, host: &str, to: &str, token: Option<&str>) -> String {
    let url = match token {
        Some(t) => format!("https://{host}/http-bind?token={t}"),
        None => format!("https://{host}/http-bind"),
    };
    let open = format!("<body rid='1000' to='{to}' xml:lang='en' wait='10' hold='1' ver='1.6' xmpp:version='1.0' xmlns='http://jabber.org/protocol/httpbind' xmlns:xmpp='urn:xmpp:xbosh'/>");
    let r = c
        .post(&url)
        .header("content-type", "text/xml; charset=utf-8")
        .body(open)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let features = r.text().await.unwrap();
    assert!(
        features.contains("<mechanism>ANONYMOUS</mechanism>") && !features.contains("PLAIN"),
        "only ANONYMOUS (with a token) is offered: {features}"
    );
    let sid = features
        .split("sid='")
        .nth(1)
        .and_then(|s| s.split('\'').next())
        .unwrap_or_else(|| panic!("no sid in {features}"))
        .to_owned();
    let auth = format!("<body rid='1001' sid='{sid}' xmlns='http://jabber.org/protocol/httpbind'><auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='ANONYMOUS'/></body>");
    let r = c
        .post(format!("https://{host}/http-bind"))
        .header("content-type", "text/xml; charset=utf-8")
        .body(auth)
        .send()
        .await
        .unwrap();
    r.text().await.unwrap()
}

/// A TURN allocation with turnutils_uclient, relaying 5 messages to the
/// peer; its exit code (0: allocated and relayed).
fn uclient(server: &str, port: u16, tls: bool, user: &str, pass: &str, peer: &str) -> i32 {
    let mut cmd = Command::new("timeout");
    cmd.args(["60", "turnutils_uclient", "-u", user, "-w", pass])
        .args(["-e", peer, "-r", "3480", "-n", "5"]);
    if tls {
        cmd.args(["-t", "-S"]);
    }
    let out = cmd
        .arg("-p")
        .arg(port.to_string())
        .arg(server)
        .output()
        .expect("turnutils_uclient (apt-get install coturn)");
    out.status.code().unwrap_or(-1)
}

/// The processes running in a network namespace: pid → command name.
fn processes(netns: &str) -> BTreeMap<u32, String> {
    let out = Command::new("ip")
        .args(["netns", "pids", netns])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .filter_map(|p: u32| {
            let comm = std::fs::read_to_string(format!("/proc/{p}/comm")).ok()?;
            Some((p, comm.trim().to_owned()))
        })
        .collect()
}

fn cmdlines(processes: &BTreeMap<u32, String>) -> String {
    processes
        .keys()
        .map(|p| {
            let raw = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
            format!(
                "{p}: {}\n",
                String::from_utf8_lossy(&raw).replace('\0', " ")
            )
        })
        .collect()
}

/// The services a host's activation started: name → pid (its pid files).
fn services(netns: &str) -> BTreeMap<String, u32> {
    let out = on_host(
        netns,
        "cd /var/lib/venue/run && for f in *.pid; do echo \"${f%.pid} $(cat $f)\"; done",
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (name, pid) = l.split_once(' ')?;
            Some((name.to_owned(), pid.trim().parse().ok()?))
        })
        .collect()
}

/// How many processes of each name, without the shells and sshd of the
/// host itself (its boot supervisor, sessions) and the watcher's `sleep`.
fn census(processes: &BTreeMap<u32, String>) -> BTreeMap<String, usize> {
    let mut n = BTreeMap::new();
    for comm in processes
        .values()
        .filter(|c| !["sleep", "sh", "sshd"].contains(&c.as_str()))
    {
        *n.entry(comm.clone()).or_default() += 1;
    }
    n
}

/// Runs `script` on the test host as its sshd would (its mount and network
/// namespaces: its own /nix and /var/lib/venue).
fn on_host(netns: &str, script: &str) -> Output {
    on_host_with_input(netns, script, "")
}

/// Field 22 of /proc/PID/stat: when the process started (tells a reused pid).
fn start_time(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..];
    after_name.split_whitespace().nth(19).map(str::to_owned)
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rfind(')').map(|i| s[i + 2..].starts_with('Z')))
        .unwrap_or(false)
}

/// `on_host` with `input` on the script's stdin.
fn on_host_with_input(netns: &str, script: &str, input: &str) -> Output {
    common::on_test_host(netns, script, input)
}

struct Killed(std::process::Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn every_host_answers_its_real_protocol_with_the_deployed_secrets() {
    let dir = common::scratch("testbed-services");
    let hosts = Arc::new(
        NetnsHosts::new(&dir.join("hosts"))
            .expect("test hosts need root: run as root after scripts/install-deps"),
    );
    let (url, fake) = FakeCloud::start(FakeConfig {
        action_duration: Duration::from_millis(50),
        hook: hosts.clone(),
        ..FakeConfig::default()
    });
    let names_ = Names::start(&fake, &dir);
    let env = names_.env();
    let event = common::example_event("testbed");
    let e = event.to_str().unwrap();
    let state = dir.join("state");
    let s = state.to_str().unwrap();

    let up = venue(&url, &env, &["up", e, "--state", s]);
    ok(&up);
    let fleet: Value =
        serde_json::from_str(&std::fs::read_to_string(state.join("fleet.json")).unwrap()).unwrap();
    let secrets: Value =
        serde_json::from_str(&std::fs::read_to_string(state.join("secrets.json")).unwrap())
            .unwrap();
    let secret = |n: &str| secrets[n].as_str().unwrap().to_owned();
    // role → (server name, address)
    let mut by_role = BTreeMap::new();
    let mut resolve = BTreeMap::new();
    for server in fleet["servers"].as_array().unwrap() {
        let name = server["name"].as_str().unwrap().to_owned();
        let ip = names_.dig(&format!("{name}.{DOMAIN}"), "A")[0].clone();
        resolve.insert(format!("{name}.{DOMAIN}"), ip.clone());
        by_role.insert(server["role"].as_str().unwrap().to_owned(), (name, ip));
    }
    resolve.insert(DOMAIN.to_owned(), names_.dig(DOMAIN, "A")[0].clone());
    assert_eq!(
        resolve[DOMAIN], by_role["portal"].1,
        "the apex is the portal"
    );
    let root = std::fs::read(&names_.pebble.issuer_root).unwrap();
    let c = client(&root, &resolve);
    let netns = |role: &str| {
        hosts
            .with_host(&by_role[role].0, |h| h.netns.clone())
            .unwrap()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    // --- TURN: Debian's coturn with the deployed secret.
    let (coturn, coturn_ip) = by_role["coturn"].clone();
    let _peer = Killed(
        Command::new("ip")
            .args(["netns", "exec", &netns("coturn"), "turnutils_peer", "-L"])
            .arg(&coturn_ip)
            .args(["-p", "3480"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(300));
    let now = chrono::Utc::now().timestamp();
    let good = turn::credentials(&secret("turn-secret"), "probe", now + 600);
    let wrong = turn::credentials("not-the-secret", "probe", now + 600);
    let expired = turn::credentials(&secret("turn-secret"), "probe", now - 60);
    let turn_log = || {
        on_host(
            &netns("coturn"),
            "tail -n 20 /var/lib/venue/run/coturn/turn.log",
        )
        .stdout
        .clone()
    };
    for (port, tls) in [(3478, false), (5349, true)] {
        assert_eq!(
            uclient(
                &coturn_ip,
                port,
                tls,
                &good.username,
                &good.password,
                &coturn_ip
            ),
            0,
            "{coturn} refused an allocation on {port} with the deployed secret: {}",
            String::from_utf8_lossy(&turn_log())
        );
    }
    for bad in [&wrong, &expired] {
        assert_ne!(
            uclient(
                &coturn_ip,
                3478,
                false,
                &bad.username,
                &bad.password,
                &coturn_ip
            ),
            0,
            "{coturn} accepted {}",
            bad.username
        );
    }
    // TLS on 5349 with the event's certificate, verified for the name.
    let verify = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect {coturn_ip}:5349 -servername {coturn}.{DOMAIN} -verify_hostname {coturn}.{DOMAIN} -verify_return_error -CAfile {} </dev/null",
            names_.pebble.issuer_root.display()
        ))
        .output()
        .unwrap();
    let verify_text = String::from_utf8_lossy(&verify.stdout);
    assert!(
        verify.status.success() && verify_text.contains("Verify return code: 0 (ok)"),
        "coturn's TLS does not verify: {verify_text}{}",
        String::from_utf8_lossy(&verify.stderr)
    );

    rt.block_on(async {
        // --- BigBlueButton: fake-bbb behind nginx, checksums as BBB checks them.
        let (bbb_name, _) = &by_role["bbb"];
        let api = format!("https://{bbb_name}.{DOMAIN}/bigbluebutton/api");
        let bbb_secret = secret("bbb-secret");
        let call = |name: &str, params: &[(&str, &str)], secret: &str, alg: Checksum| {
            bbb::url(&api, name, params, secret, alg)
        };
        let (code, body) = text(&c, &call("getMeetings", &[], &bbb_secret, Checksum::Sha256)).await;
        assert_eq!(code, 200);
        assert!(body.contains("<returncode>SUCCESS</returncode>"), "{body}");
        let (_, body) = text(
            &c,
            &call("getMeetings", &[], "another-secret", Checksum::Sha256),
        )
        .await;
        assert!(
            body.contains("<messageKey>checksumError</messageKey>"),
            "{body}"
        );
        // SHA-1 is not in this server's supportedChecksumAlgorithms.
        let (_, body) = text(&c, &call("getMeetings", &[], &bbb_secret, Checksum::Sha1)).await;
        assert!(
            body.contains("<messageKey>checksumError</messageKey>"),
            "{body}"
        );
        let (_, body) = text(&c, &call("getMeetings", &[], &bbb_secret, Checksum::Sha512)).await;
        assert!(body.contains("SUCCESS"), "{body}");
        // A probe meeting: create, join (accepted: a redirect into the client), end.
        let id = [("meetingID", "probe-1")];
        let (_, body) = text(
            &c,
            &call(
                "create",
                &[
                    ("name", "Probe"),
                    ("meetingID", "probe-1"),
                    ("moderatorPW", "mp-1"),
                ],
                &bbb_secret,
                Checksum::Sha256,
            ),
        )
        .await;
        assert!(body.contains("SUCCESS"), "{body}");
        let join = call(
            "join",
            &[
                ("fullName", "Venue probe"),
                ("meetingID", "probe-1"),
                ("password", "mp-1"),
            ],
            &bbb_secret,
            Checksum::Sha256,
        );
        let r = c.get(&join).send().await.unwrap();
        assert_eq!(r.status(), 302, "{join}");
        let into = r.headers()["location"].to_str().unwrap().to_owned();
        let (code, page) = text(&c, &format!("https://{bbb_name}.{DOMAIN}{into}")).await;
        assert_eq!(code, 200);
        assert!(page.contains("Joined probe-1 as MODERATOR"), "{page}");
        let (_, body) = text(
            &c,
            &call("isMeetingRunning", &id, &bbb_secret, Checksum::Sha256),
        )
        .await;
        assert!(body.contains("<running>true</running>"), "{body}");
        let (_, body) = text(
            &c,
            &call("getMeetingInfo", &id, &bbb_secret, Checksum::Sha256),
        )
        .await;
        assert!(body.contains("<fullName>Venue probe</fullName>"), "{body}");
        let (_, body) = text(&c, &call("end", &id, &bbb_secret, Checksum::Sha256)).await;
        assert!(body.contains("sentEndMeetingRequest"), "{body}");
        let (_, body) = text(
            &c,
            &call("isMeetingRunning", &id, &bbb_secret, Checksum::Sha256),
        )
        .await;
        assert!(body.contains("<running>false</running>"), "{body}");

        // --- prosody: BOSH with a venue-signed token, and without.
        let (jitsi_name, _) = &by_role["jitsi"];
        let jitsi = format!("{jitsi_name}.{DOMAIN}");
        let (code, page) = text(&c, &format!("https://{jitsi}/")).await;
        assert_eq!(code, 200, "{page}");
        let token = |secret: &str, domain: &str| {
            jwt::jitsi_token(
                secret.as_bytes(),
                &jwt::JitsiGrant {
                    app_id: "venue",
                    domain,
                    room: "testbed-hallway",
                    user: jwt::JitsiUser {
                        id: "probe".into(),
                        name: "Venue probe".into(),
                        email: "probe@example.org".into(),
                        moderator: false,
                    },
                    now: chrono::Utc::now().timestamp(),
                    ttl: 300,
                },
            )
        };
        let jwt_secret = secret("jwt-secret");
        let good = bosh_login(&c, &jitsi, &jitsi, Some(&token(&jwt_secret, &jitsi))).await;
        assert!(good.contains("<success"), "{good}");
        let none = bosh_login(&c, &jitsi, &jitsi, None).await;
        assert!(
            none.contains("<not-authorized/>") && none.contains("no token"),
            "{none}"
        );
        let forged = bosh_login(&c, &jitsi, &jitsi, Some(&token("not-the-secret", &jitsi))).await;
        assert!(forged.contains("<not-authorized/>"), "{forged}");
        let guest = format!("guest.{jitsi}");
        // Jitsi's guests use the same BOSH URL with the guest domain as `to`.
        let guest_login = bosh_login(&c, &jitsi, &guest, Some(&token(&jwt_secret, &guest))).await;
        assert!(
            guest_login.contains("<not-authorized/>") && guest_login.contains("guest"),
            "{guest_login}"
        );

        // --- the portal behind nginx: health, login with a seeded ticket, joins.
        let portal = format!("https://{DOMAIN}");
        let (code, body) = text(&c, &format!("{portal}/healthz")).await;
        assert_eq!((code, body.as_str()), (200, "ok"));
        let form = c.get(format!("{portal}/login")).send().await.unwrap();
        assert_eq!(form.status(), 200);
        let pre = cookie(&form, "venue_login").expect("a pre-login cookie");
        let csrf = csrf_of(&form.text().await.unwrap());
        let login = c
            .post(format!("{portal}/login"))
            .header("cookie", pre)
            .form(&[
                ("email", "noc@example.org"),
                ("code", "noc1-2345-6789"),
                ("csrf", csrf.as_str()),
                ("next", "/"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(login.status(), 303, "the seeded staff ticket logs in");
        let session = cookie(&login, "venue_session").expect("a session cookie");
        let welcome = c
            .get(format!("{portal}/"))
            .header("cookie", &session)
            .send()
            .await
            .unwrap();
        assert_eq!(welcome.status(), 200);
        let csrf = csrf_of(&welcome.text().await.unwrap());
        // Main stage (BBB): the portal creates the meeting on the bbb host
        // (once its first poll has seen the server) and sends us into it.
        let mut location = String::new();
        for _ in 0..40 {
            let r = c
                .post(format!("{portal}/rooms/main-stage/join"))
                .header("cookie", &session)
                .form(&[("csrf", csrf.as_str())])
                .send()
                .await
                .unwrap();
            if r.status() == 303 || r.status() == 302 {
                location = r.headers()["location"].to_str().unwrap().to_owned();
                break;
            }
            location = format!("{}: {}", r.status(), r.text().await.unwrap());
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert!(location.contains("/bigbluebutton/api/join?"), "{location}");
        let r = c.get(&location).send().await.unwrap();
        assert_eq!(r.status(), 302, "{location}");
        let meeting = call(
            "getMeetingInfo",
            &[("meetingID", "testbed-main-stage")],
            &bbb_secret,
            Checksum::Sha256,
        );
        let (_, info) = text(&c, &meeting).await;
        assert!(info.contains("<fullName>Venue NOC</fullName>"), "{info}");
        // Hallway (Jitsi): the portal's token is one prosody accepts.
        let r = c
            .post(format!("{portal}/rooms/hallway/join"))
            .header("cookie", &session)
            .form(&[("csrf", csrf.as_str())])
            .send()
            .await
            .unwrap();
        let to = r.headers()["location"].to_str().unwrap().to_owned();
        assert!(to.starts_with(&format!("https://{jitsi}/")), "{to}");
        let (code, page) = text(&c, &to).await;
        assert_eq!(code, 200, "the room's page: {page}");
        let portal_token = to
            .split("jwt=")
            .nth(1)
            .expect("a jwt in the Jitsi URL")
            .split('&')
            .next()
            .unwrap();
        let accepted = bosh_login(&c, &jitsi, &jitsi, Some(portal_token)).await;
        assert!(accepted.contains("<success"), "{accepted}");
    });

    // No secret in a service's log or in a host's store (as the host sees
    // them): only coturn's config (mode 0600, outside the store) holds one.
    // grep exits 1 when it searched and found nothing.
    let all: String = secrets
        .as_object()
        .unwrap()
        .values()
        .map(|v| format!("{}\n", v.as_str().unwrap()))
        .collect();
    for role in ["bbb", "coturn", "jitsi", "portal"] {
        for (what, script) in [
            ("a log", "grep -rqF --include=*.log -f - /var/lib/venue/run"),
            ("the store", "grep -rqF -f - /nix/store"),
        ] {
            let out = on_host_with_input(&netns(role), script, &all);
            assert_eq!(
                out.status.code(),
                Some(1),
                "a secret is in {what} of the {role} host, or grep failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    // `venue deploy` again: the same secrets, uploaded anew (new files),
    // restart nothing, as a real host's secrets unit compares contents. The
    // certificate watcher looks every second.
    let before: Vec<_> = ["bbb", "coturn", "jitsi", "portal"]
        .iter()
        .map(|r| services(&netns(r)))
        .collect();
    ok(&venue(&url, &env, &["deploy", e, "--state", s]));
    std::thread::sleep(Duration::from_millis(2500));
    for (role, old) in ["bbb", "coturn", "jitsi", "portal"].iter().zip(&before) {
        assert_eq!(
            &services(&netns(role)),
            old,
            "{role}: restarted by a deploy of the same secrets"
        );
    }

    // A second activation restarts the services in place: every service
    // (by its pid file) a new process, the old one gone, and the same
    // processes by name and number.
    for role in ["bbb", "coturn", "jitsi", "portal"] {
        let ns = netns(role);
        let old = processes(&ns);
        let old_services = services(&ns);
        assert!(
            old_services.contains_key("nginx"),
            "{role}: {old_services:?}"
        );
        let started = std::time::Instant::now();
        let out = on_host(
            &ns,
            "/nix/var/nix/profiles/system/bin/switch-to-configuration switch",
        );
        // A figure for the report, not a test: what a re-activation costs.
        println!(
            "{role}: re-activation (stop and start every service) took {:.2} s",
            started.elapsed().as_secs_f64()
        );
        assert!(
            out.status.success(),
            "{role}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // (A moment for the last service's fork to become what it runs.)
        std::thread::sleep(Duration::from_millis(300));
        let new = processes(&ns);
        let new_services = services(&ns);
        assert_eq!(
            new_services.keys().collect::<Vec<_>>(),
            old_services.keys().collect::<Vec<_>>(),
            "{role}"
        );
        for (service, pid) in &old_services {
            let now = new_services[service];
            assert_ne!(now, *pid, "{role}: {service} was not restarted");
            assert!(
                new.contains_key(&now),
                "{role}: {service} ({now}) is not running"
            );
            assert!(
                new.get(pid) != old.get(pid),
                "{role}: the old {service} ({pid}) still runs"
            );
        }
        assert_eq!(
            census(&new),
            census(&old),
            "{role}: the same services, once each: {}",
            cmdlines(&new)
        );
    }
    // New connections: the old nginx and its kept-alive ones are gone.
    let c = client(&root, &resolve);
    rt.block_on(async {
        let (code, _) = text(&c, &format!("https://{DOMAIN}/healthz")).await;
        assert_eq!(code, 200);
        let api = format!("https://{}.{DOMAIN}/bigbluebutton/api", by_role["bbb"].0);
        let (_, body) = text(
            &c,
            &bbb::url(
                &api,
                "getMeetings",
                &[],
                &secret("bbb-secret"),
                Checksum::Sha256,
            ),
        )
        .await;
        assert!(body.contains("SUCCESS"), "{body}");
    });
    let good = turn::credentials(
        &secret("turn-secret"),
        "probe",
        chrono::Utc::now().timestamp() + 600,
    );
    assert_eq!(
        uclient(
            &coturn_ip,
            3478,
            false,
            &good.username,
            &good.password,
            &coturn_ip
        ),
        0
    );
    drop(_peer);

    // down: every service ends with its host.
    let running: Vec<(u32, String)> = ["bbb", "coturn", "jitsi", "portal"]
        .iter()
        .flat_map(|r| processes(&netns(r)).into_keys())
        .filter_map(|p| Some((p, start_time(p)?)))
        .collect();
    assert!(running.len() >= 12, "{running:?}");
    ok(&venue(&url, &env, &["down", e, "--yes", "--state", s]));
    for (pid, started) in running {
        // The same process (not a reused pid) that is not yet a zombie.
        let alive = || start_time(pid).as_ref() == Some(&started) && !is_zombie(pid);
        for _ in 0..50 {
            if !alive() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(
            !alive(),
            "process {pid} ({}) outlived its host",
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .unwrap_or_default()
                .trim()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
