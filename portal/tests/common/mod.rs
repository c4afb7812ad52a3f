//! Test harness: temporary directories, the portal binary started on a free
//! loopback port, logins through the real form, a live event around now.
#![allow(dead_code)]

pub mod chat;
pub mod chromium;
pub mod fake_bbb;
pub mod fake_jitsi;
pub mod oidc;
pub mod origin;
pub mod synapse;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chrono::{Duration as Span, Utc};

pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let n: u64 = u64::from_le_bytes(portal::random_bytes::<8>());
        let p = std::env::temp_dir().join(format!("venue-portal-test-{name}-{n:x}"));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_venue-portal")
}

pub fn lpc_event() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../hosts/lpc-2020/event.toml")
}

/// Runs `venue-portal tickets import` on `csv`.
pub fn import_tickets(state: &Path, csv: &str) {
    let file = state.join("tickets.csv");
    std::fs::create_dir_all(state).unwrap();
    std::fs::write(&file, csv).unwrap();
    let out = Command::new(bin())
        .args(["tickets", "import"])
        .arg(&file)
        .arg("--state")
        .arg(state)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tickets import failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub const TICKETS: &str = "email,code,role,name\n\
ada@example.org,ada-ticket-0001,attendee,Ada Lovelace\n\
bob@example.org,bob-ticket-0002,attendee,Bob\n\
carol@example.org,carol-ticket-03,staff,Carol Staff\n\
dan@example.org,dan-ticket-0004,attendee,\n";

/// A running `venue-portal serve`.
pub struct Portal {
    pub url: String,
    child: Child,
    pub log: PathBuf,
}

impl Portal {
    pub fn start(event: &Path, state: &Path, config: Option<&Path>) -> Portal {
        Portal::start_at(event, state, config, "127.0.0.1:0")
    }

    /// Starts the portal on `listen` (ADDR:PORT), for a URL known in advance.
    pub fn start_at(event: &Path, state: &Path, config: Option<&Path>, listen: &str) -> Portal {
        std::fs::create_dir_all(state).unwrap();
        let log = state.join("portal.log");
        let mut cmd = Command::new(bin());
        cmd.args(["serve", "--listen", listen, "--event"])
            .arg(event)
            .arg("--state")
            .arg(state)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap());
        if let Some(c) = config {
            cmd.arg("--config").arg(c);
        }
        let mut child = cmd.spawn().expect("start venue-portal");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(u) = line.strip_prefix("venue-portal listening on ") {
                    let _ = tx.send(u.to_owned());
                }
            }
        });
        let url = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(u) => u,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "venue-portal did not start: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        };
        Portal { url, child, log }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Portal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP client that does not follow redirects.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// The value of the first `name="csrf"` field.
pub fn csrf_of(html: &str) -> String {
    let i =
        html.find("name=\"csrf\" value=\"").expect("a csrf field") + "name=\"csrf\" value=\"".len();
    html[i..i + html[i..].find('"').unwrap()].to_owned()
}

/// `name=value` of a Set-Cookie header for `name`.
pub fn set_cookie(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap().to_owned())
        .find(|v| v.starts_with(&format!("{name}=")))
}

/// Logs in through the form; returns the POST's response and the login cookie used.
pub async fn login_response(
    c: &reqwest::Client,
    base: &str,
    email: &str,
    code: &str,
) -> reqwest::Response {
    let form = c.get(format!("{base}/login")).send().await.unwrap();
    assert_eq!(form.status(), 200);
    let pre = set_cookie(&form, "venue_login").expect("the login form sets a pre-login cookie");
    let html = form.text().await.unwrap();
    let csrf = csrf_of(&html);
    c.post(format!("{base}/login"))
        .header("cookie", pre)
        .form(&[
            ("email", email),
            ("code", code),
            ("csrf", csrf.as_str()),
            ("next", "/"),
        ])
        .send()
        .await
        .unwrap()
}

/// Logs in through the form as a client behind the loopback proxy at
/// address `from` (the portal trusts `X-Forwarded-For` from loopback).
pub async fn login_from(
    c: &reqwest::Client,
    base: &str,
    email: &str,
    code: &str,
    from: &str,
) -> reqwest::Response {
    let form = c.get(format!("{base}/login")).send().await.unwrap();
    let pre = set_cookie(&form, "venue_login").unwrap();
    let csrf = csrf_of(&form.text().await.unwrap());
    c.post(format!("{base}/login"))
        .header("cookie", pre)
        .header("x-forwarded-for", from)
        .form(&[("email", email), ("code", code), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap()
}

/// Runs the portal binary with `args`; returns (success, stdout, stderr).
pub fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin()).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Logs in and returns the session cookie (`venue_session=...`).
pub async fn login(c: &reqwest::Client, base: &str, email: &str, code: &str) -> String {
    let resp = login_response(c, base, email, code).await;
    assert_eq!(resp.status(), 303, "login of {email} failed");
    set_cookie(&resp, "venue_session").expect("a session cookie")
}

/// GET with a cookie; returns status, Location and body.
pub async fn get(c: &reqwest::Client, url: &str, cookie: &str) -> (u16, String, String) {
    let r = c.get(url).header("cookie", cookie).send().await.unwrap();
    let status = r.status().as_u16();
    let loc = r
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, loc, r.text().await.unwrap())
}

/// POST a form with a cookie; returns status, Location and body.
pub async fn post(
    c: &reqwest::Client,
    url: &str,
    cookie: &str,
    form: &[(&str, &str)],
) -> (u16, String, String) {
    let r = c
        .post(url)
        .header("cookie", cookie)
        .form(form)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let loc = r
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, loc, r.text().await.unwrap())
}

/// The CSRF token of a logged-in session (from the welcome page).
pub async fn session_csrf(c: &reqwest::Client, base: &str, cookie: &str) -> String {
    let (s, _, html) = get(c, &format!("{base}/"), cookie).await;
    assert_eq!(s, 200);
    csrf_of(&html)
}

/// `[[day]]` tables for the day before `today`, `today` and the day after,
/// open all day (UTC).
pub fn days_around(today: chrono::NaiveDate) -> String {
    [-1i64, 0, 1]
        .iter()
        .map(|d| {
            format!(
                "[[day]]\ndate = \"{}\"\nopen = \"00:00\"\nclose = \"23:59\"\n\n",
                today + Span::days(*d)
            )
        })
        .collect()
}

/// An event around now: yesterday, today and tomorrow (UTC), with
/// - `Main Track` (session, BBB, no webcams): "Live <b>kernel</b> talk" by
///   Ada Lovelace running now, and a talk in three hours;
/// - `Later Track` (session, BBB): only a talk in three hours;
/// - `Hallway` (hack, BBB), `Jitsi Corner` (hack, Jitsi), `Green Room`
///   (private, BBB), `Staff` (staff, BBB).
pub fn write_live_event(dir: &Path) -> PathBuf {
    let now = Utc::now();
    let today = now.date_naive();
    let days = days_around(today);
    let event = format!(
        r#"id = "live"
name = "Live Test Conference"
timezone = "UTC"
domain = "live.example.org"
attendees = 100
chat = "https://chat.live.example.org/"
code_of_conduct = "https://live.example.org/coc"
contact = "mailto:team@live.example.org"
schedule = "schedule.xml"

{days}
[[room]]
name = "Main Track"
kind = "session"
backend = "bbb"
peak = 80
webcams = false

[[room]]
name = "Later Track"
kind = "session"
backend = "bbb"
peak = 40

[[room]]
name = "Hallway"
kind = "hack"
backend = "bbb"
peak = 20

[[room]]
name = "Jitsi Corner"
kind = "hack"
backend = "jitsi"
peak = 20

[[room]]
name = "Green Room"
kind = "private"
backend = "bbb"
peak = 5

[[room]]
name = "Staff"
kind = "staff"
backend = "bbb"
peak = 10
"#
    );
    let ev = |guid: &str, room: &str, title: &str, start: chrono::DateTime<Utc>, person: &str| {
        format!(
            r#"<event guid="{guid}" id="{guid}"><date>{}</date><start>{}</start><duration>01:00</duration><room>{room}</room><title>{title}</title><type>Talk</type><persons><person id="1">{person}</person></persons></event>"#,
            start.format("%Y-%m-%dT%H:%M:%S+00:00"),
            start.format("%H:%M")
        )
    };
    let start = now - Span::minutes(10);
    let later = now + Span::hours(3);
    let schedule = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<schedule><conference><title>Live</title><time_zone_name>UTC</time_zone_name></conference>
<day index="1" date="{today}"><room name="Main Track">{}{}</room><room name="Later Track">{}</room></day></schedule>"#,
        ev(
            "live-1",
            "Main Track",
            "Live &lt;b&gt;kernel&lt;/b&gt; talk",
            start,
            "Ada Lovelace"
        ),
        ev(
            "live-2",
            "Main Track",
            "A later talk",
            later,
            "Somebody Else"
        ),
        ev(
            "live-3",
            "Later Track",
            "Only later",
            later,
            "Somebody Else"
        ),
    );
    std::fs::write(dir.join("schedule.xml"), schedule).unwrap();
    let p = dir.join("event.toml");
    std::fs::write(&p, event).unwrap();
    p
}

/// A config file for the given BBB servers `(name, url, secret, checksum)`.
pub fn write_config(
    dir: &Path,
    poll: f64,
    servers: &[(&str, &str, &str, &str)],
    extra: &str,
) -> PathBuf {
    let mut c = format!(
        "session_secret_file = \"{}\"\npoll_interval_seconds = {poll}\n",
        {
            let p = dir.join("session-secret");
            std::fs::write(&p, "a-session-secret-for-tests-0123456789\n").unwrap();
            p.display().to_string()
        }
    );
    c.push_str(extra);
    for (name, url, secret, checksum) in servers {
        let sf = dir.join(format!("{name}.secret"));
        std::fs::write(&sf, format!("{secret}\n")).unwrap();
        c.push_str(&format!(
            "[[bbb]]\nname = \"{name}\"\nurl = \"{url}\"\nsecret_file = \"{}\"\nchecksum = \"{checksum}\"\n",
            sf.display()
        ));
    }
    let p = dir.join("portal.toml");
    std::fs::write(&p, c).unwrap();
    p
}
