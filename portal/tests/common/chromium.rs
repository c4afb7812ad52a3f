//! Headless Chromium driven through chromedriver (WebDriver, plain HTTP),
//! the ticket login in it, and a stage streamed to a real nginx-rtmp origin
//! by ffmpeg's test pattern, for the browser tests (tests/chromium.rs,
//! tests/watch_chat.rs). Needs Debian's `chromium`, `chromium-driver` and
//! `ffmpeg`; fails, not skips, without them.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

pub const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub fn need(path: &str, package: &str) {
    assert!(
        std::path::Path::new(path).exists(),
        "{path} is missing: this test needs Debian's {package} (apt-get install -y {package})"
    );
}

pub struct Driver {
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
    /// A browser with a phone's window (400×850).
    pub async fn start(profile: &std::path::Path) -> Driver {
        Driver::start_sized(profile, 400, 850).await
    }

    /// A browser whose window is `width`×`height`.
    pub async fn start_sized(profile: &std::path::Path, width: u32, height: u32) -> Driver {
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
                         format!("--user-data-dir={}", profile.display()),
                         format!("--window-size={width},{height}")]
            }
        }}});
        let v = d.call("POST", "/session", caps).await;
        d.session = v["sessionId"]
            .as_str()
            .expect("a WebDriver session")
            .to_owned();
        d
    }

    pub async fn call(&self, method: &str, path: &str, body: Value) -> Value {
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

    pub async fn go(&self, url: &str) {
        self.call("POST", "/url", json!({ "url": url })).await;
    }
    pub async fn url(&self) -> String {
        self.call("GET", "/url", Value::Null)
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }
    /// Waits until the browser's URL starts with `prefix` (a click that
    /// submits a form may return before the navigation is done).
    pub async fn wait_url(&self, prefix: &str) -> String {
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
    pub async fn find(&self, css: &str) -> String {
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
    pub async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.call(
            "POST",
            &format!("/element/{e}/value"),
            json!({ "text": text }),
        )
        .await;
    }
    pub async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.call("POST", &format!("/element/{e}/click"), json!({}))
            .await;
    }
    /// Clicks and waits until a new page has loaded (a form that posts and
    /// redirects back to the same URL gives no other sign).
    pub async fn click_and_load(&self, css: &str) {
        self.script("window.venueOldPage = true; return 0").await;
        self.click(css).await;
        for _ in 0..100 {
            let fresh = self
                .script("return window.venueOldPage === undefined && document.readyState === 'complete'")
                .await;
            if fresh == true {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no new page after clicking {css}");
    }
    /// Resizes the window so that pages get a `width`×`height` viewport
    /// (the window's own frame takes some of its size, even headless).
    pub async fn set_viewport(&self, width: i64, height: i64) {
        let inner = "return [window.innerWidth, window.innerHeight]";
        let now = self.script(inner).await;
        let rect = self.call("GET", "/window/rect", Value::Null).await;
        let grow = |k: &str, i: usize, want: i64| {
            rect[k].as_i64().expect("a window size") + want
                - now[i].as_i64().expect("a viewport size")
        };
        self.call(
            "POST",
            "/window/rect",
            json!({"width": grow("width", 0, width), "height": grow("height", 1, height)}),
        )
        .await;
        let got = self.script(inner).await;
        assert_eq!(
            got,
            json!([width, height]),
            "the viewport after resizing the window"
        );
    }
    /// The viewport as a PNG.
    pub async fn png(&self) -> Vec<u8> {
        use base64::Engine as _;
        let v = self.call("GET", "/screenshot", Value::Null).await;
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("a screenshot"))
            .expect("a base64 screenshot")
    }
    /// Saves a screenshot when VENUE_SCREENSHOT_DIR is set (to look at the pages).
    pub async fn screenshot(&self, name: &str) {
        if let Some(dir) = std::env::var_os("VENUE_SCREENSHOT_DIR") {
            let png = self.png().await;
            std::fs::write(std::path::Path::new(&dir).join(format!("{name}.png")), png).unwrap();
        }
    }
    pub async fn script(&self, js: &str) -> Value {
        self.call("POST", "/execute/sync", json!({"script": js, "args": []}))
            .await
    }
}

pub async fn log_in(d: &Driver, base: &str, email: &str, code: &str, next: &str) {
    d.go(&format!("{base}/login?next={}", next.replace('/', "%2F")))
        .await;
    d.type_into("#email", email).await;
    d.type_into("#code", code).await;
    // Waits for the page after the form (with `next` = "/" every portal
    // URL, the login form's too, starts like the one wanted).
    d.click_and_load("form[action='/login'] button[type=submit]")
        .await;
    assert_eq!(
        d.url().await,
        format!("{base}{next}"),
        "{email} did not log in"
    );
}

pub async fn body_text(d: &Driver) -> String {
    d.script("return document.querySelector('main').innerText")
        .await
        .as_str()
        .unwrap()
        .to_owned()
}

/// A stage pushed as RTMP to a real nginx-rtmp origin (super::origin) by
/// ffmpeg's test pattern: the HLS the portal's Watch page plays. Stopped on
/// drop.
pub struct Origin {
    ffmpeg: Child,
    nginx: super::origin::RtmpOrigin,
}

impl Origin {
    pub fn start(dir: &std::path::Path) -> Origin {
        need("/usr/bin/ffmpeg", "ffmpeg");
        let nginx = super::origin::RtmpOrigin::start(dir, 1);
        let ffmpeg = Command::new("ffmpeg")
            .args([
                "-nostdin",
                "-loglevel",
                "error",
                "-re",
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=640x360:rate=25",
            ])
            .args([
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=440",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
            ])
            .args(["-g", "25", "-c:a", "aac", "-f", "flv"])
            .arg(format!("{}/main-track", nginx.rtmp_url()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ffmpeg");
        let origin = Origin { ffmpeg, nginx };
        assert!(
            origin
                .nginx
                .wait_segments("main-track", 2, Duration::from_secs(20)),
            "the origin made no playlist"
        );
        origin
    }

    pub fn hls(&self) -> String {
        self.nginx.hls()
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        let _ = self.ffmpeg.kill();
        let _ = self.ffmpeg.wait();
    }
}

/// The largest `currentTime` of the Watch page's video within 30 s (stops
/// looking once it is past 2 s; a loaded 2-core CI machine runs ffmpeg,
/// nginx and several Chromiums at once).
pub async fn playing_time(d: &Driver) -> f64 {
    let mut played = 0.0;
    for _ in 0..300 {
        played = d
            .script("return document.getElementById('stream').currentTime")
            .await
            .as_f64()
            .unwrap_or(0.0);
        if played > 2.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    played
}
