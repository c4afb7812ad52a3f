//! The portal as an OpenID Connect provider in tests: a portal with `[oidc]`
//! on a port known in advance (the issuer names it), PKCE pairs, and a
//! browser-like client that follows redirects and keeps cookies per origin.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

use super::{Portal, TempDir};

pub const CLIENT_ID: &str = "venue-chat";
pub const CLIENT_SECRET: &str = "client-secret-for-the-tests-0123";

/// A free loopback port (closed again: the caller binds it right away).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A portal that is an OIDC provider for one client.
pub struct Provider {
    pub portal: Option<Portal>,
    pub issuer: String,
    pub redirect_uri: String,
    pub state: PathBuf,
    pub config: PathBuf,
    pub port: u16,
    pub event: PathBuf,
}

impl Provider {
    /// Starts the portal with tickets (`super::TICKETS`) and `[oidc]` for a
    /// client whose callback is `redirect_uri`.
    pub fn start(dir: &TempDir, redirect_uri: &str) -> Provider {
        Provider::start_with(dir, redirect_uri, &super::lpc_event(), "", free_port())
    }

    /// Like `start`, for `event`, with `extra` (tables) appended to the
    /// configuration file, on `port`.
    pub fn start_with(
        dir: &TempDir,
        redirect_uri: &str,
        event: &Path,
        extra: &str,
        port: u16,
    ) -> Provider {
        let state = dir.path().join("state");
        super::import_tickets(&state, super::TICKETS);
        let secret = dir.write("oidc-client-secret", &format!("{CLIENT_SECRET}\n"));
        let issuer = format!("http://127.0.0.1:{port}");
        let config = dir.write(
            "portal.toml",
            &format!(
                "[oidc]\nissuer = \"{issuer}\"\nclient_id = \"{CLIENT_ID}\"\n\
                 client_secret_file = \"{}\"\nredirect_uri = \"{redirect_uri}\"\n{extra}",
                secret.display()
            ),
        );
        let portal = Provider::spawn(event, &state, &config, port);
        Provider {
            portal: Some(portal),
            issuer,
            redirect_uri: redirect_uri.to_owned(),
            state,
            config,
            port,
            event: event.to_owned(),
        }
    }

    fn spawn(event: &Path, state: &Path, config: &Path, port: u16) -> Portal {
        Portal::start_at(event, state, Some(config), &format!("127.0.0.1:{port}"))
    }

    /// Stops the portal and starts it again on the same port and state.
    pub fn restart(&mut self) {
        drop(self.portal.take());
        self.portal = Some(Provider::spawn(
            &self.event,
            &self.state,
            &self.config,
            self.port,
        ));
    }

    pub fn url(&self) -> &str {
        &self.portal.as_ref().expect("a running portal").url
    }

    pub fn log(&self) -> String {
        self.portal.as_ref().map(Portal::log).unwrap_or_default()
    }
}

/// A PKCE verifier and its S256 challenge.
pub fn pkce() -> (String, String) {
    let verifier = URL_SAFE_NO_PAD.encode(portal::random_bytes::<32>());
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

/// The query parameters of a URL, decoded.
pub fn query(url: &str) -> HashMap<String, String> {
    let q = url.split_once('?').map(|(_, q)| q).unwrap_or("");
    form_urlencoded::parse(q.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Like a browser without JavaScript: follows redirects one by one and
/// keeps cookies per origin. Secure cookies are kept on http loopback, as
/// browsers do for 127.0.0.1.
#[derive(Default)]
pub struct Browser {
    jar: HashMap<String, HashMap<String, String>>,
}

pub struct Page {
    pub status: u16,
    pub url: String,
    pub location: Option<String>,
    pub body: String,
}

fn origin(url: &str) -> String {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    rest.split('/').next().unwrap_or("").to_owned()
}

fn absolute(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        location.to_owned()
    } else {
        let scheme = base.split_once("://").map(|(s, _)| s).unwrap_or("http");
        format!("{scheme}://{}{location}", origin(base))
    }
}

impl Browser {
    fn cookie_header(&self, url: &str) -> Option<String> {
        let jar = self.jar.get(&origin(url))?;
        (!jar.is_empty()).then(|| {
            jar.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    fn keep_cookies(&mut self, url: &str, resp: &reqwest::Response) {
        let jar = self.jar.entry(origin(url)).or_default();
        for v in resp.headers().get_all("set-cookie") {
            let v = v.to_str().unwrap();
            let (kv, attrs) = v.split_once(';').unwrap_or((v, ""));
            let Some((k, val)) = kv.trim().split_once('=') else {
                continue;
            };
            let expired = attrs
                .split(';')
                .any(|a| a.trim().eq_ignore_ascii_case("max-age=0"));
            if expired {
                jar.remove(k);
            } else {
                jar.insert(k.to_owned(), val.to_owned());
            }
        }
    }

    /// One request, no redirect followed.
    pub async fn send(&mut self, req: reqwest::RequestBuilder, url: &str) -> Page {
        let req = match self.cookie_header(url) {
            Some(c) => req.header("cookie", c),
            None => req,
        };
        let resp = req.send().await.unwrap();
        self.keep_cookies(url, &resp);
        let status = resp.status().as_u16();
        let location = resp
            .headers()
            .get("location")
            .map(|l| absolute(url, l.to_str().unwrap()));
        Page {
            status,
            url: url.to_owned(),
            location,
            body: resp.text().await.unwrap(),
        }
    }

    pub async fn get(&mut self, c: &reqwest::Client, url: &str) -> Page {
        self.send(c.get(url), url).await
    }

    /// GETs `url` and follows redirects until one leaves for `stop_at` (a
    /// URL prefix, not fetched) or a page answers; returns the last answer.
    pub async fn follow(&mut self, c: &reqwest::Client, url: &str, stop_at: &str) -> Page {
        let mut page = self.get(c, url).await;
        for _ in 0..10 {
            match &page.location {
                Some(next) if (300..400).contains(&page.status) && !next.starts_with(stop_at) => {
                    let next = next.clone();
                    page = self.get(c, &next).await;
                }
                _ => return page,
            }
        }
        panic!("more than 10 redirects from {url}");
    }

    /// Fills in the portal's login form on `page` and posts it; follows the
    /// redirects after it like `follow`.
    pub async fn log_in(
        &mut self,
        c: &reqwest::Client,
        page: &Page,
        email: &str,
        code: &str,
        stop_at: &str,
    ) -> Page {
        assert_eq!(page.status, 200, "expected the login form at {}", page.url);
        let csrf = super::csrf_of(&page.body);
        let next = hidden(&page.body, "next");
        let action = absolute(&page.url, "/login");
        let posted = self
            .send(
                c.post(&action).form(&[
                    ("email", email),
                    ("code", code),
                    ("csrf", &csrf),
                    ("next", &next),
                ]),
                &action,
            )
            .await;
        match &posted.location {
            Some(l) if posted.status == 303 && !l.starts_with(stop_at) => {
                let l = l.clone();
                self.follow(c, &l, stop_at).await
            }
            _ => posted,
        }
    }
}

/// The value of the hidden input `name` (HTML-unescaped for `&amp;`).
pub fn hidden(html: &str, name: &str) -> String {
    let pat = format!("name=\"{name}\" value=\"");
    let i = html.find(&pat).unwrap_or_else(|| panic!("no {name} field")) + pat.len();
    html[i..i + html[i..].find('"').unwrap()]
        .replace("&amp;", "&")
        .replace("&quot;", "\"")
}
