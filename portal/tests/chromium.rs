//! Headless Chromium, driven through chromedriver (WebDriver), logs in with
//! the form, reads the timetable and presses Join, ending on the fake
//! BigBlueButton's client page. Needs Debian's `chromium` and
//! `chromium-driver`; fails, not skips, without them.

mod common;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::fake_bbb::FakeBbb;
use common::*;
use conference::protocol::bbb::Checksum;
use serde_json::{json, Value};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn need(path: &str, package: &str) {
    assert!(
        std::path::Path::new(path).exists(),
        "{path} is missing: this test needs Debian's {package} (apt-get install -y chromium chromium-driver)"
    );
}

struct Driver {
    child: Child,
    base: String,
    session: String,
    http: reqwest::Client,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Ending the WebDriver session closes Chromium; killing chromedriver
        // alone would leave the browser running. Plain HTTP: Drop cannot await.
        if !self.session.is_empty() {
            use std::io::{Read, Write};
            let addr = self.base.trim_start_matches("http://").to_owned();
            if let Ok(mut s) = std::net::TcpStream::connect(&addr) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(20)));
                let _ = write!(
                    s,
                    "DELETE /session/{} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    self.session
                );
                // Read the answer (chromedriver keeps the connection open).
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while let Ok(n) = s.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_ascii_lowercase();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len = text
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len {
                            break;
                        }
                    }
                }
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    async fn start(profile: &std::path::Path) -> Driver {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let mut ready = false;
        for _ in 0..100 {
            if let Ok(r) = http.get(format!("{base}/status")).send().await {
                if r.status().is_success() {
                    ready = true;
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(ready, "chromedriver did not start");
        let mut d = Driver {
            child,
            base,
            session: String::new(),
            http,
        };
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                         "--disable-background-networking", "--disable-component-update",
                         "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                         format!("--user-data-dir={}", profile.display()), "--window-size=400,850"]
            }
        }}});
        let v = d.call("POST", "/session", caps).await;
        d.session = v["sessionId"]
            .as_str()
            .expect("a WebDriver session")
            .to_owned();
        d
    }

    async fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let url = if path == "/session" {
            format!("{}{path}", self.base)
        } else {
            format!("{}/session/{}{path}", self.base, self.session)
        };
        let req = match method {
            "GET" => self.http.get(url),
            _ => self
                .http
                .post(url)
                .header("content-type", "application/json")
                .body(body.to_string()),
        };
        let text = req.send().await.unwrap().text().await.unwrap();
        let v: Value =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("WebDriver said: {text}"));
        assert!(
            v["value"].get("error").is_none(),
            "WebDriver {path}: {}",
            v["value"]
        );
        v["value"].clone()
    }

    async fn go(&self, url: &str) {
        self.call("POST", "/url", json!({ "url": url })).await;
    }
    async fn url(&self) -> String {
        self.call("GET", "/url", Value::Null)
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }
    /// Waits until the browser's URL starts with `prefix` (a click that
    /// submits a form may return before the navigation is done).
    async fn wait_url(&self, prefix: &str) -> String {
        let mut at = String::new();
        for _ in 0..100 {
            at = self.url().await;
            if at.starts_with(prefix) {
                let state = self.script("return document.readyState").await;
                if state == "complete" {
                    return at;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        at
    }
    async fn find(&self, css: &str) -> String {
        let v = self
            .call(
                "POST",
                "/element",
                json!({"using": "css selector", "value": css}),
            )
            .await;
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}"))
            .to_owned()
    }
    async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.call(
            "POST",
            &format!("/element/{e}/value"),
            json!({ "text": text }),
        )
        .await;
    }
    async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.call("POST", &format!("/element/{e}/click"), json!({}))
            .await;
    }
    /// Saves a screenshot when VENUE_SCREENSHOT_DIR is set (to look at the pages).
    async fn screenshot(&self, name: &str) {
        if let Some(dir) = std::env::var_os("VENUE_SCREENSHOT_DIR") {
            use base64::Engine as _;
            let v = self.call("GET", "/screenshot", Value::Null).await;
            let png = base64::engine::general_purpose::STANDARD
                .decode(v.as_str().unwrap())
                .unwrap();
            std::fs::write(std::path::Path::new(&dir).join(format!("{name}.png")), png).unwrap();
        }
    }
    async fn script(&self, js: &str) -> Value {
        self.call("POST", "/execute/sync", json!({"script": js, "args": []}))
            .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_logs_in_reads_the_timetable_and_joins() {
    need("/usr/bin/chromium", "chromium");
    need("/usr/bin/chromedriver", "chromium-driver");
    let dir = TempDir::new("chromium");
    let fake = FakeBbb::start("browser-secret", &[Checksum::Sha256]).await;
    let event = write_live_event(dir.path());
    let config = write_config(
        dir.path(),
        0.5,
        &[("bbb-a", &fake.url(), "browser-secret", "sha256")],
        "",
    );
    let state = dir.path().join("state");
    import_tickets(&state, TICKETS);
    let p = Portal::start(&event, &state, Some(&config));
    let profile = dir.path().join("profile");
    let d = Driver::start(&profile).await;

    // Without a session the timetable sends the browser to the login form.
    d.go(&format!("{}/timetable", p.url)).await;
    assert!(
        d.url().await.contains("/login?next=%2Ftimetable"),
        "{}",
        d.url().await
    );
    d.screenshot("login").await;
    d.type_into("#email", "bob@example.org").await;
    d.type_into("#code", "bob-ticket-0002").await;
    d.click("form[action='/login'] button[type=submit]").await;
    // Back on the timetable, logged in.
    let at = d.wait_url(&format!("{}/timetable", p.url)).await;
    if at != format!("{}/timetable", p.url) {
        let text = d.script("return document.body.innerText").await;
        panic!(
            "after logging in the browser is at {at}: {text}\n{}",
            p.log()
        );
    }
    let text = d.script("return document.body.innerText").await;
    let text = text.as_str().unwrap();
    assert!(text.contains("Running now"), "{text}");
    // The title with HTML in it shows as text and makes no element.
    assert!(text.contains("Live <b>kernel</b> talk"), "{text}");
    assert_eq!(
        d.script("return document.querySelectorAll('main b').length")
            .await,
        0
    );
    assert!(text.contains("UTC"));
    // The page fits a phone's width (400 px window): no horizontal scrolling.
    let wide = d
        .script("return document.documentElement.scrollWidth > window.innerWidth")
        .await;
    assert_eq!(wide, false, "the timetable is wider than a phone");

    d.screenshot("timetable").await;
    d.go(&format!("{}/", p.url)).await;
    d.screenshot("welcome").await;
    d.go(&format!("{}/timetable", p.url)).await;
    // Join the running session: through the portal's redirect to the fake BBB.
    d.click("form[action='/rooms/main-track/join'] button")
        .await;
    d.wait_url(&format!(
        "http://{}/html5client/join?sessionToken=",
        fake.addr
    ))
    .await;
    let joined = d.script("var e = document.getElementById('joined'); return e ? e.innerText : document.body.innerText").await;
    assert_eq!(
        joined.as_str().unwrap(),
        "Joined live-main-track as VIEWER (Bob)"
    );
    assert!(d.url().await.starts_with(&format!(
        "http://{}/html5client/join?sessionToken=",
        fake.addr
    )));
    assert_eq!(fake.calls("create"), 1);
    assert_eq!(fake.calls("join"), 1);
}
