//! The chat (the event's Matrix homeserver), as Element and a ticket holder
//! meet it:
//!
//! - `chat discovery`: the portal's name delegates Matrix to `chat.<domain>`
//!   (`/.well-known/matrix/client` and `/server`), whose client API answers;
//! - `chat login flows`: the homeserver offers SSO through the portal (the
//!   `oidc-venue` provider) and login tokens, and no passwords;
//! - `chat message`: a probe ticket (an attendee, made on the portal host over
//!   the pinned SSH and revoked after, as the portal probe's) goes through
//!   the SSO redirect chain (homeserver → portal's authorize → ticket login →
//!   homeserver's callback → Element with a login token), logs in with
//!   `m.login.token`, sends a message to a room of its own and reads it back,
//!   then leaves and forgets the room and logs out. The revoked ticket's
//!   Matrix account is deactivated by the portal's chat sync.
//!
//! The chain is driven like a browser without JavaScript: redirects followed
//! one at a time, cookies kept per host. [`sso_login`] is public so that
//! tests log ticket holders in the same way.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::Url;
use serde_json::{json, Value};

use super::portal::{blocking, hidden, random_hex, strip_tags};
use super::{http, probe, probe_within, Check, Outcome, Probe, Target};
use conference::Role;

/// The IdP ID of the portal on the homeserver: `oidc-` + modules/chat.nix's
/// `idp_id`.
pub const IDP: &str = "oidc-venue";

/// The public name of the chat: `chat.<domain>` (modules/chat.nix's hostName).
pub fn public_name(domain: &str) -> String {
    format!("chat.{}", domain.to_ascii_lowercase())
}

/// Where Element lives, and where the SSO chain hands over the login token
/// (modules/chat.nix's `sso.client_whitelist`).
pub fn element_url(chat_base: &str) -> String {
    format!("{}/", chat_base.trim_end_matches('/'))
}

pub async fn probes(check: &Check, target: &Target) -> Vec<Probe> {
    let what = format!("HTTPS {}", target.ports.https);
    let portal = check.targets.iter().find(|t| t.role == Role::Portal);
    let (client, chat_base, portal_base) = match clients(check, target, portal) {
        Ok(c) => c,
        Err(e) => {
            return vec![probe(check, target, "chat", &what, async { Outcome::Fail(e) }).await]
        }
    };
    let (discovery, flows, message) = tokio::join!(
        probe(check, target, "chat discovery", &what, async {
            match discover(&client, portal_base.as_deref(), &chat_base).await {
                Ok(m) => Outcome::Ok(m),
                Err(e) => Outcome::Fail(e),
            }
        }),
        probe(check, target, "chat login flows", &what, async {
            match login_flows(&client, &chat_base).await {
                Ok(m) => Outcome::Ok(m),
                Err(e) => Outcome::Fail(e),
            }
        }),
        // A ticket over SSH, a dozen requests and a ticket removed: a longer
        // allowance, within which the chain has its own (so removal runs).
        probe_within(
            target,
            "chat message",
            &what,
            check.timeout * 6,
            message_probe(check, &client, &chat_base, portal_base.is_some())
        ),
    );
    vec![discovery, flows, message]
}

/// One client that reaches the chat's name at the chat host and the event's
/// domain at the portal host (the SSO chain crosses both), the chat's base
/// URL, and the portal's (None: no portal in the fleet).
fn clients(
    check: &Check,
    chat: &Target,
    portal: Option<&Target>,
) -> Result<(reqwest::Client, String, Option<String>), String> {
    let port = chat.ports.https;
    let scheme = if chat.ports.plain_http {
        "http"
    } else {
        "https"
    };
    let base = |name: &str, port: u16| {
        if (scheme, port) == ("https", 443) {
            format!("https://{name}")
        } else {
            format!("{scheme}://{name}:{port}")
        }
    };
    let mut builder = reqwest::Client::builder()
        .use_preconfigured_tls((*check.tls).clone())
        .resolve(&chat.service_name, chat.socket(port))
        .redirect(reqwest::redirect::Policy::none())
        .timeout(check.timeout)
        .connect_timeout(Duration::from_secs(3).min(check.timeout))
        .user_agent(concat!("venue-check/", env!("CARGO_PKG_VERSION")));
    if let Some(p) = portal {
        builder = builder.resolve(&p.service_name, p.socket(p.ports.https));
    }
    let client = builder
        .build()
        .map_err(|e| format!("cannot make an HTTP client: {e}"))?;
    Ok((
        client,
        base(&chat.service_name, port),
        portal.map(|p| base(&p.service_name, p.ports.https)),
    ))
}

async fn get_json(client: &reqwest::Client, url: &str) -> Result<Value, String> {
    let resp = client
        .get(url)
        .send()
        .await
        .map_err(|e| format!("{url}: {}", http::cause(&e)))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(format!("{url} answered HTTP {status}"));
    }
    resp.json()
        .await
        .map_err(|e| format!("{url} answered no JSON: {}", http::cause(&e)))
}

/// Client and server discovery from the event's domain, then the client
/// API at the base URL it names.
async fn discover(
    client: &reqwest::Client,
    portal_base: Option<&str>,
    chat_base: &str,
) -> Result<String, String> {
    let portal_base =
        portal_base.ok_or("the fleet has no portal: nothing delegates Matrix to the chat")?;
    let url = format!("{portal_base}/.well-known/matrix/client");
    let found = get_json(client, &url).await?;
    let base = found["m.homeserver"]["base_url"]
        .as_str()
        .unwrap_or_default()
        .trim_end_matches('/');
    if base != chat_base {
        return Err(format!(
            "{url} names the homeserver {:?}, not {chat_base}",
            found["m.homeserver"]["base_url"]
        ));
    }
    let url = format!("{portal_base}/.well-known/matrix/server");
    let server = get_json(client, &url).await?;
    let host = chat_base.split("://").nth(1).unwrap_or(chat_base);
    let want = if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:443")
    };
    if server["m.server"].as_str() != Some(want.as_str()) {
        return Err(format!(
            "{url} delegates to {:?}, not {want}",
            server["m.server"]
        ));
    }
    let url = format!("{chat_base}/_matrix/client/versions");
    let versions = get_json(client, &url).await?;
    let n = versions["versions"].as_array().map_or(0, Vec::len);
    if n == 0 {
        return Err(format!("{url} lists no client API version"));
    }
    Ok(format!(
        "{portal_base} delegates to {chat_base}, whose client API answers ({n} versions)"
    ))
}

/// SSO through the portal and login tokens; never passwords.
async fn login_flows(client: &reqwest::Client, chat_base: &str) -> Result<String, String> {
    let url = format!("{chat_base}/_matrix/client/v3/login");
    let found = get_json(client, &url).await?;
    let flows: Vec<&Value> = found["flows"]
        .as_array()
        .map(|f| f.iter().collect())
        .unwrap_or_default();
    let kinds: Vec<&str> = flows.iter().filter_map(|f| f["type"].as_str()).collect();
    if kinds.contains(&"m.login.password") {
        return Err(format!(
            "{url} offers password login: ticket holders must log in through the portal only"
        ));
    }
    let portal_idp = flows.iter().any(|f| {
        f["type"] == "m.login.sso"
            && f["identity_providers"]
                .as_array()
                .is_some_and(|p| p.iter().any(|i| i["id"] == IDP))
    });
    if !portal_idp {
        return Err(format!(
            "{url} offers no SSO login through the portal ({IDP}); flows: {}",
            kinds.join(", ")
        ));
    }
    if !kinds.contains(&"m.login.token") {
        return Err(format!(
            "{url} offers no m.login.token (the SSO login's last step)"
        ));
    }
    Ok(format!(
        "{url}: SSO through {IDP} and login tokens, no passwords"
    ))
}

async fn message_probe(
    check: &Check,
    client: &reqwest::Client,
    chat_base: &str,
    has_portal: bool,
) -> Outcome {
    if !has_portal {
        return Outcome::Fail("the fleet has no portal: nobody can log in to the chat".into());
    }
    let Some(desk) = check.tickets.clone() else {
        return Outcome::Fail(
            "no way to make a probe ticket (no SSH access to the portal host)".into(),
        );
    };
    // A homeserver that does not answer gets no ticket made for it.
    if let Err(e) = get_json(client, &format!("{chat_base}/_matrix/client/versions")).await {
        return Outcome::Fail(e);
    }
    let email = format!("venue-check-{}@check.invalid", random_hex(6));
    let code = match blocking(&desk, {
        let email = email.clone();
        move |d| d.add_attendee(&email)
    })
    .await
    {
        Ok(code) => code,
        Err(e) => return Outcome::Fail(format!("making the probe ticket: {e:#}")),
    };
    let text = format!("venue check {}", random_hex(8));
    let sent = tokio::time::timeout(
        check.timeout * 4,
        login_and_send(client, chat_base, &email, &code, &text),
    )
    .await
    .unwrap_or_else(|_| {
        Err(format!(
            "logging in and sending took more than {} s",
            (check.timeout * 4).as_secs_f64()
        ))
    });
    let removed = blocking(&desk, {
        let email = email.clone();
        move |d| d.remove(&email)
    })
    .await;
    match (sent, removed) {
        (_, Err(e)) => Outcome::Fail(format!(
            "the probe ticket {email} could not be removed: {e:#}; remove it with `venue-portal-ctl tickets revoke {email}`"
        )),
        (Err(e), Ok(())) => Outcome::Fail(e),
        (Ok(user), Ok(())) => Outcome::Ok(format!(
            "a ticket logs in through the portal as {user}, sends a message and reads it back"
        )),
    }
}

/// Logs in, makes a room, sends `text`, reads it back, leaves, forgets and
/// logs out; returns the Matrix user.
async fn login_and_send(
    client: &reqwest::Client,
    chat_base: &str,
    email: &str,
    code: &str,
    text: &str,
) -> Result<String, String> {
    let login = sso_login(client, chat_base, email, code).await?;
    let m = Matrix {
        client,
        base: chat_base,
        token: &login.access_token,
    };
    let result = async {
        let room = m
            .post(
                "/_matrix/client/v3/createRoom",
                json!({
                    "preset": "private_chat",
                    "visibility": "private",
                    "name": "venue check",
                    "creation_content": {"m.federate": false},
                }),
            )
            .await?["room_id"]
            .as_str()
            .ok_or("createRoom answered no room_id")?
            .to_owned();
        let sent = m.send_text(&room, text).await;
        let read = match &sent {
            Ok(event) => m.find(&room, event, text).await,
            Err(_) => Ok(()),
        };
        // The room goes whatever happened to the message.
        let left = m.leave(&room).await;
        sent?;
        read?;
        left
    }
    .await;
    let out = m.post("/_matrix/client/v3/logout", json!({})).await;
    result?;
    out.map(|_| login.user_id)
}

/// A logged-in Matrix session.
#[derive(Clone)]
pub struct Login {
    pub user_id: String,
    pub access_token: String,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("user_id", &self.user_id)
            .finish_non_exhaustive()
    }
}

/// The Matrix client-server calls the probe makes, with a session's token.
pub struct Matrix<'a> {
    pub client: &'a reqwest::Client,
    pub base: &'a str,
    pub token: &'a str,
}

impl Matrix<'_> {
    async fn call(&self, req: reqwest::RequestBuilder, path: &str) -> Result<Value, String> {
        let resp = req
            .bearer_auth(self.token)
            .send()
            .await
            .map_err(|e| format!("{path}: {}", http::cause(&e)))?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(format!(
                "{path} answered HTTP {status} {} {}",
                body["errcode"].as_str().unwrap_or_default(),
                body["error"].as_str().unwrap_or_default()
            ));
        }
        Ok(body)
    }

    pub async fn get(&self, path: &str) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        self.call(self.client.get(&url), path).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        self.call(self.client.post(&url).json(&body), path).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        self.call(self.client.put(&url).json(&body), path).await
    }

    /// Joins a room by ID or alias; returns its ID.
    pub async fn join(&self, room: &str) -> Result<String, String> {
        let joined = self
            .post(
                &format!("/_matrix/client/v3/join/{}", encode(room)),
                json!({}),
            )
            .await?;
        joined["room_id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("joining {room} answered no room_id"))
    }

    /// Sends a text message; returns its event ID.
    pub async fn send_text(&self, room: &str, text: &str) -> Result<String, String> {
        let txn = random_hex(8);
        let sent = self
            .put(
                &format!(
                    "/_matrix/client/v3/rooms/{}/send/m.room.message/{txn}",
                    encode(room)
                ),
                json!({"msgtype": "m.text", "body": text}),
            )
            .await?;
        sent["event_id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| "sending answered no event_id".to_owned())
    }

    /// The bodies of a room's latest messages, newest first.
    pub async fn latest(&self, room: &str, limit: u32) -> Result<Vec<(String, String)>, String> {
        let page = self
            .get(&format!(
                "/_matrix/client/v3/rooms/{}/messages?dir=b&limit={limit}",
                encode(room)
            ))
            .await?;
        Ok(page["chunk"]
            .as_array()
            .map(|c| {
                c.iter()
                    .filter(|e| e["type"] == "m.room.message")
                    .map(|e| {
                        (
                            e["event_id"].as_str().unwrap_or_default().to_owned(),
                            e["content"]["body"].as_str().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn find(&self, room: &str, event: &str, text: &str) -> Result<(), String> {
        let latest = self.latest(room, 10).await?;
        if latest.iter().any(|(id, body)| id == event && body == text) {
            Ok(())
        } else {
            Err(format!(
                "the message sent ({event}) is not among the room's latest ({} messages)",
                latest.len()
            ))
        }
    }

    pub async fn leave(&self, room: &str) -> Result<(), String> {
        self.post(
            &format!("/_matrix/client/v3/rooms/{}/leave", encode(room)),
            json!({}),
        )
        .await?;
        self.post(
            &format!("/_matrix/client/v3/rooms/{}/forget", encode(room)),
            json!({}),
        )
        .await
        .map(|_| ())
    }
}

/// A room ID or alias as one path segment (`!`, `#` and `:` escaped).
pub fn encode(segment: &str) -> String {
    let mut out = String::new();
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Cookies per host, as a browser keeps them (the chain sets Synapse's
/// `oidc_session` on the chat's name and the portal's login cookies on the
/// event's domain).
#[derive(Default)]
struct Jar {
    hosts: HashMap<String, BTreeMap<String, String>>,
}

impl Jar {
    fn header(&self, url: &Url) -> Option<String> {
        let jar = self.hosts.get(url.host_str()?)?;
        (!jar.is_empty()).then(|| {
            jar.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    /// Takes the `Set-Cookie` values of an answer from `url`.
    fn keep<'a>(&mut self, url: &Url, set_cookies: impl Iterator<Item = &'a str>) {
        let Some(host) = url.host_str() else { return };
        let jar = self.hosts.entry(host.to_owned()).or_default();
        for v in set_cookies {
            let (kv, attrs) = v.split_once(';').unwrap_or((v, ""));
            let Some((k, val)) = kv.trim().split_once('=') else {
                continue;
            };
            let gone = attrs.split(';').any(|a| {
                let a = a.trim().to_ascii_lowercase();
                a == "max-age=0" || a.starts_with("expires=thu, 01 jan 1970")
            });
            if gone {
                jar.remove(k);
            } else {
                jar.insert(k.to_owned(), val.to_owned());
            }
        }
    }
}

/// An answer of the chain: status, where it sends to, the page.
struct Step {
    url: Url,
    status: u16,
    location: Option<Url>,
    body: String,
}

async fn send(jar: &mut Jar, req: reqwest::RequestBuilder, url: &Url) -> Result<Step, String> {
    let req = match jar.header(url) {
        Some(c) => req.header(COOKIE, c),
        None => req,
    };
    let resp = req
        .send()
        .await
        .map_err(|e| format!("{}: {}", without_query(url), http::cause(&e)))?;
    jar.keep(
        url,
        resp.headers()
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok()),
    );
    let status = resp.status().as_u16();
    let location = resp
        .headers()
        .get(LOCATION)
        .and_then(|l| l.to_str().ok())
        .and_then(|l| url.join(l).ok());
    let body = resp.text().await.unwrap_or_default();
    Ok(Step {
        url: url.clone(),
        status,
        location,
        body,
    })
}

/// Scheme, host and path: queries in the chain carry codes and tokens.
fn without_query(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
}

/// Whether `url` is Element's page `element` itself (any query): where the
/// chain hands over the login token. Synapse's own pages share its host.
fn is_page(url: &Url, element: &Url) -> bool {
    url.scheme() == element.scheme()
        && url.host_str() == element.host_str()
        && url.port_or_known_default() == element.port_or_known_default()
        && url.path() == element.path()
}

/// Follows redirects from `step` until one goes to `stop` (not fetched) or
/// a page answers.
async fn follow(
    client: &reqwest::Client,
    jar: &mut Jar,
    mut step: Step,
    stop: &Url,
) -> Result<Step, String> {
    for _ in 0..12 {
        match &step.location {
            Some(next) if (300..400).contains(&step.status) && !is_page(next, stop) => {
                let next = next.clone();
                step = send(jar, client.get(next.clone()), &next).await?;
            }
            _ => return Ok(step),
        }
    }
    Err(format!(
        "more than 12 redirects, the last to {}",
        step.location
            .as_ref()
            .map(without_query)
            .unwrap_or_default()
    ))
}

/// A ticket holder's whole login to the chat: the homeserver's SSO
/// redirect, the portal's authorize and ticket login, the homeserver's
/// callback, the login token handed to Element, and `m.login.token`.
/// A refused ticket ends at the portal's login page with its error.
pub async fn sso_login(
    client: &reqwest::Client,
    chat_base: &str,
    email: &str,
    code: &str,
) -> Result<Login, String> {
    let element = element_url(chat_base);
    let element_page = Url::parse(&element).map_err(|e| format!("{element}: {e}"))?;
    let mut jar = Jar::default();
    let start = Url::parse(&format!(
        "{chat_base}/_matrix/client/v3/login/sso/redirect/{IDP}"
    ))
    .map_err(|e| format!("{chat_base}: {e}"))?;
    let mut start = start;
    start.query_pairs_mut().append_pair("redirectUrl", &element);
    let first = send(&mut jar, client.get(start.clone()), &start).await?;
    if !(300..400).contains(&first.status) {
        return Err(format!(
            "{} answered HTTP {} instead of sending to the portal",
            without_query(&start),
            first.status
        ));
    }
    let mut page = follow(client, &mut jar, first, &element_page).await?;
    if page.status == 200 && page.body.contains("name=\"code\"") {
        // The portal's ticket login, then back through authorize.
        let csrf = hidden(&page.body, "csrf")
            .ok_or_else(|| format!("{} has no CSRF field", without_query(&page.url)))?;
        let next = unescape(&hidden(&page.body, "next").unwrap_or_default());
        let action = page
            .url
            .join("/login")
            .map_err(|e| format!("{}: {e}", page.url))?;
        let posted = send(
            &mut jar,
            client.post(action.clone()).form(&[
                ("email", email),
                ("code", code),
                ("csrf", csrf.as_str()),
                ("next", next.as_str()),
            ]),
            &action,
        )
        .await?;
        if !(300..400).contains(&posted.status) {
            let said = posted
                .body
                .split("class=\"error\"")
                .nth(1)
                .map(|s| {
                    strip_tags(&format!("<{s}"))
                        .chars()
                        .take(160)
                        .collect::<String>()
                })
                .unwrap_or_default();
            return Err(format!(
                "the portal refused the ticket {email}: {} answered HTTP {} {said}",
                without_query(&action),
                posted.status
            ));
        }
        page = follow(client, &mut jar, posted, &element_page).await?;
    }
    let back = match &page.location {
        Some(l) if (300..400).contains(&page.status) && is_page(l, &element_page) => l.clone(),
        _ => {
            let title = page
                .body
                .split("<title>")
                .nth(1)
                .and_then(|s| s.split("</title>").next())
                .map(strip_tags)
                .unwrap_or_default();
            return Err(format!(
                "the SSO login stopped at {} (HTTP {}) {title}",
                without_query(&page.url),
                page.status
            ));
        }
    };
    let token = back
        .query_pairs()
        .find(|(k, _)| k == "loginToken")
        .map(|(_, v)| v.into_owned())
        .ok_or_else(|| format!("the SSO login came back to {element} without a loginToken"))?;
    let url = format!("{chat_base}/_matrix/client/v3/login");
    let resp = client
        .post(&url)
        .json(&json!({
            "type": "m.login.token",
            "token": token,
            "initial_device_display_name": "venue check",
        }))
        .send()
        .await
        .map_err(|e| format!("{url}: {}", http::cause(&e)))?;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    match (body["user_id"].as_str(), body["access_token"].as_str()) {
        (Some(user), Some(token)) if status.is_success() => Ok(Login {
            user_id: user.to_owned(),
            access_token: token.to_owned(),
        }),
        _ => Err(format!(
            "{url} refused the login token: HTTP {status} {} {}",
            body["errcode"].as_str().unwrap_or_default(),
            body["error"].as_str().unwrap_or_default()
        )),
    }
}

/// What maud escapes in an attribute value.
fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_ids_and_aliases_are_one_path_segment() {
        assert_eq!(encode("!abc:ev.example.org"), "%21abc%3Aev.example.org");
        assert_eq!(encode("#main-stage:ev.org"), "%23main-stage%3Aev.org");
        assert_eq!(encode("a/b?c"), "a%2Fb%3Fc");
    }

    #[test]
    fn the_chain_stops_at_elements_page_not_at_synapses_pages() {
        let element = Url::parse("https://chat.ev.org/").unwrap();
        let at = |u: &str| is_page(&Url::parse(u).unwrap(), &element);
        assert!(at("https://chat.ev.org/?loginToken=abc"));
        assert!(at("https://chat.ev.org:443/"));
        assert!(!at(
            "https://chat.ev.org/_synapse/client/oidc/callback?code=1"
        ));
        assert!(!at("https://ev.org/?loginToken=abc"));
        assert!(!at("http://chat.ev.org/?loginToken=abc"));
    }

    #[test]
    fn names_and_element() {
        assert_eq!(public_name("Ev.Example.org"), "chat.ev.example.org");
        assert_eq!(element_url("https://chat.ev.org"), "https://chat.ev.org/");
        assert_eq!(element_url("https://chat.ev.org/"), "https://chat.ev.org/");
        assert_eq!(
            unescape("/oidc/authorize?a=1&amp;b=&quot;2&quot;"),
            "/oidc/authorize?a=1&b=\"2\""
        );
    }

    #[test]
    fn the_jar_keeps_cookies_per_host_and_forgets_expired_ones() {
        let mut jar = Jar::default();
        let chat = Url::parse("https://chat.ev.org/_synapse/client/oidc/callback").unwrap();
        let portal = Url::parse("https://ev.org/login").unwrap();
        jar.keep(
            &chat,
            [
                "oidc_session=abc; Path=/_synapse/client/oidc; Secure; HttpOnly",
                "oidc_session_no_samesite=abc; Path=/_synapse/client/oidc",
                "broken",
            ]
            .into_iter(),
        );
        jar.keep(
            &portal,
            ["venue_login=l1; HttpOnly; SameSite=Lax"].into_iter(),
        );
        assert_eq!(
            jar.header(&chat).as_deref(),
            Some("oidc_session=abc; oidc_session_no_samesite=abc")
        );
        assert_eq!(jar.header(&portal).as_deref(), Some("venue_login=l1"));
        jar.keep(
            &portal,
            ["venue_login=; Max-Age=0", "venue_session=s1; Secure"].into_iter(),
        );
        assert_eq!(jar.header(&portal).as_deref(), Some("venue_session=s1"));
        jar.keep(
            &chat,
            ["oidc_session=; Expires=Thu, 01 Jan 1970 00:00:00 GMT"].into_iter(),
        );
        assert_eq!(
            jar.header(&chat).as_deref(),
            Some("oidc_session_no_samesite=abc")
        );
    }
}
