//! The portal, as an attendee meets it: `/healthz`, the login page renders,
//! and a probe ticket (staff, made for this check and removed after it) logs
//! in and gets a Join URL for a session room. The ticket is made on the
//! portal host with the portal's own ticket command, over the pinned SSH.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use conference::RoomKind;
use reqwest::header::{HeaderMap, COOKIE, LOCATION, SET_COOKIE};

use super::{http, probe, probe_within, Check, Outcome, Probe, Target};
use crate::deploy::ssh::{PinnedKey, Ssh};
use crate::deploy::Host;

/// Makes and removes the probe's ticket. Blocking (SSH is).
pub trait TicketDesk: Send + Sync {
    /// Adds a staff ticket for `email`; returns its code.
    fn add(&self, email: &str) -> Result<String>;
    /// Adds an attendee ticket for `email` (the chat's probe: a staff ticket
    /// would be invited to every private room by the portal's chat sync);
    /// returns its code. A desk that cannot makes a staff ticket.
    fn add_attendee(&self, email: &str) -> Result<String> {
        self.add(email)
    }
    /// Removes the ticket of `email` (the portal's `tickets revoke`, which
    /// deletes it with everything it held).
    fn remove(&self, email: &str) -> Result<()>;
}

/// The portal's ticket command on the portal host: `venue-portal-ctl` (the
/// NixOS module's wrapper, run as the service's user, in the system's
/// `sw/bin`), over SSH with the pinned host key.
pub struct SshTickets {
    pub host: Host,
    pub identity: PathBuf,
}

/// Where the system puts `venue-portal-ctl`: the running system, or the
/// system profile venue deploy set (a host that has not rebooted since).
const CTL: &str =
    "PATH=/run/current-system/sw/bin:/nix/var/nix/profiles/system/sw/bin:$PATH venue-portal-ctl";

impl SshTickets {
    fn run(&self, args: &str) -> Result<String> {
        let pinned = PinnedKey::parse(&self.host.host_key)
            .with_context(|| format!("the pinned host key of {}", self.host.name))?;
        self.greets()?;
        let ssh = Ssh::connect(
            &self.host.address,
            self.host.port,
            &pinned,
            "root",
            &self.identity,
            Duration::from_secs(5),
        )?;
        let out = ssh.run(&format!("{CTL} {args}"))?;
        if out.status != 0 {
            bail!(
                "`venue-portal-ctl {args}` on {} exited with {}: {}",
                self.host.name,
                out.status,
                out.stderr.trim()
            );
        }
        Ok(out.stdout)
    }
}

impl SshTickets {
    /// Whether sshd greets within a few seconds: a dead address behind a
    /// middlebox can accept TCP and then say nothing, and libssh2's handshake
    /// would wait for the session's long command timeout.
    fn greets(&self) -> Result<()> {
        use std::io::Read;
        use std::net::{TcpStream, ToSocketAddrs};
        let addr = (self.host.address.as_str(), self.host.port)
            .to_socket_addrs()?
            .next()
            .context("no address")?;
        let wait = Duration::from_secs(5);
        let mut tcp = TcpStream::connect_timeout(&addr, wait)
            .with_context(|| format!("SSH to {} ({addr})", self.host.name))?;
        tcp.set_read_timeout(Some(wait))?;
        let mut banner = [0u8; 4];
        tcp.read_exact(&mut banner).with_context(|| {
            format!("SSH to {} ({addr}): no greeting within 5 s", self.host.name)
        })?;
        if &banner != b"SSH-" {
            bail!(
                "{} ({addr}) does not speak SSH on port {}",
                self.host.name,
                self.host.port
            );
        }
        Ok(())
    }
}

impl SshTickets {
    fn add_as(&self, email: &str, flags: &str) -> Result<String> {
        let out = self.run(&format!("tickets add {email}{flags} --name 'venue check'"))?;
        let code = out
            .trim()
            .lines()
            .last()
            .unwrap_or_default()
            .trim()
            .to_owned();
        if code.is_empty() {
            bail!("`venue-portal-ctl tickets add` printed no ticket code");
        }
        Ok(code)
    }
}

impl TicketDesk for SshTickets {
    fn add(&self, email: &str) -> Result<String> {
        self.add_as(email, " --staff")
    }

    fn add_attendee(&self, email: &str) -> Result<String> {
        self.add_as(email, "")
    }

    fn remove(&self, email: &str) -> Result<()> {
        self.run(&format!("tickets revoke {email}")).map(|_| ())
    }
}

pub async fn probes(check: &Check, target: &Target) -> Vec<Probe> {
    let what = format!("HTTPS {}", target.ports.https);
    let (client, base) = match http::client(check, target, &target.service_name) {
        Ok(c) => c,
        Err(e) => {
            return vec![probe(check, target, "portal", &what, async { Outcome::Fail(e) }).await]
        }
    };
    let (health, login_page, join) = tokio::join!(
        probe(check, target, "portal healthz", &what, async {
            match client.get(format!("{base}/healthz")).send().await {
                Ok(r) if r.status().is_success() => {
                    Outcome::Ok(format!("{base}/healthz answers {}", r.status()))
                }
                Ok(r) => Outcome::Fail(format!("{base}/healthz answered HTTP {}", r.status())),
                Err(e) => Outcome::Fail(format!("{base}/healthz: {}", http::cause(&e))),
            }
        }),
        probe(check, target, "portal login page", &what, async {
            match login_form(&client, &base).await {
                Ok(_) => Outcome::Ok(format!("{base}/login renders the ticket form")),
                Err(e) => Outcome::Fail(e),
            }
        }),
        // Making and removing the ticket over SSH takes a while: a longer
        // allowance, within which the login has its own (so removal runs).
        probe_within(
            target,
            "portal join",
            &what,
            check.timeout * 4,
            join_probe(check, &client, &base)
        ),
    );
    vec![health, login_page, join]
}

/// The login form's CSRF value and the login cookie it set.
async fn login_form(client: &reqwest::Client, base: &str) -> Result<(String, String), String> {
    let url = format!("{base}/login");
    let resp = client
        .get(&url)
        .send()
        .await
        .map_err(|e| format!("{url}: {}", http::cause(&e)))?;
    let status = resp.status();
    let cookies = cookies(resp.headers());
    let page = resp
        .text()
        .await
        .map_err(|e| format!("{url}: {}", http::cause(&e)))?;
    if !status.is_success() {
        return Err(format!("{url} answered HTTP {status}"));
    }
    if !page.contains("name=\"code\"") {
        return Err(format!(
            "{url} has no ticket-code field: the login page does not render"
        ));
    }
    let csrf = hidden(&page, "csrf").ok_or_else(|| format!("{url} has no CSRF field"))?;
    Ok((csrf, cookies))
}

async fn join_probe(check: &Check, client: &reqwest::Client, base: &str) -> Outcome {
    let Some(desk) = check.tickets.clone() else {
        return Outcome::Fail(
            "no way to make a probe ticket (no SSH access to the portal host)".into(),
        );
    };
    let Some(room) = check
        .event
        .rooms
        .iter()
        .find(|r| r.kind == RoomKind::Session)
        .or_else(|| check.event.rooms.first())
    else {
        return Outcome::Ok("the event has no rooms to join".into());
    };
    // A portal that shows no login page gets no ticket made for it.
    if let Err(e) = login_form(client, base).await {
        return Outcome::Fail(e);
    }
    let email = format!("venue-check-{}@check.invalid", random_hex(6));
    let code = match blocking(&desk, {
        let email = email.clone();
        move |d| d.add(&email)
    })
    .await
    {
        Ok(code) => code,
        Err(e) => return Outcome::Fail(format!("making the probe ticket: {e:#}")),
    };
    let joined = tokio::time::timeout(
        check.timeout * 2,
        login_and_join(client, base, &email, &code, &room.slug),
    )
    .await
    .unwrap_or_else(|_| {
        Err(format!(
            "logging in and joining took more than {} s",
            (check.timeout * 2).as_secs_f64()
        ))
    });
    let removed = blocking(&desk, {
        let email = email.clone();
        move |d| d.remove(&email)
    })
    .await;
    match (joined, removed) {
        (_, Err(e)) => Outcome::Fail(format!(
            "the probe ticket {email} could not be removed: {e:#}; remove it with `venue-portal-ctl tickets revoke {email}`"
        )),
        (Err(e), Ok(())) => Outcome::Fail(e),
        (Ok(target), Ok(())) => Outcome::Ok(format!(
            "a staff ticket logs in and joins {} ({})",
            room.name,
            target
        )),
    }
}

pub(crate) async fn blocking<T: Send + 'static>(
    desk: &Arc<dyn TicketDesk>,
    f: impl FnOnce(&dyn TicketDesk) -> Result<T> + Send + 'static,
) -> Result<T> {
    let desk = desk.clone();
    tokio::task::spawn_blocking(move || f(desk.as_ref()))
        .await
        .context("the ticket task panicked")?
}

/// Logs in with the ticket and asks to join `slug`; returns where the Join
/// redirect goes (scheme, host and path, no query: it holds a checksum or token).
async fn login_and_join(
    client: &reqwest::Client,
    base: &str,
    email: &str,
    code: &str,
    slug: &str,
) -> Result<String, String> {
    let (csrf, login_cookie) = login_form(client, base).await?;
    let url = format!("{base}/login");
    let resp = client
        .post(&url)
        .header(COOKIE, &login_cookie)
        .form(&[
            ("email", email),
            ("code", code),
            ("csrf", &csrf),
            ("next", "/"),
        ])
        .send()
        .await
        .map_err(|e| format!("{url}: {}", http::cause(&e)))?;
    let session = cookies(resp.headers());
    if !resp.status().is_redirection() || session.is_empty() {
        let status = resp.status();
        let page = resp.text().await.unwrap_or_default();
        let said = page
            .split("class=\"error\"")
            .nth(1)
            .map(|s| strip_tags(s).chars().take(120).collect::<String>())
            .unwrap_or_default();
        return Err(format!(
            "the probe ticket cannot log in: {url} answered HTTP {status} {said}"
        ));
    }
    let cookie = join_cookies(&login_cookie, &session);
    let welcome = format!("{base}/");
    let page = client
        .get(&welcome)
        .header(COOKIE, &cookie)
        .send()
        .await
        .map_err(|e| format!("{welcome}: {}", http::cause(&e)))?
        .text()
        .await
        .map_err(|e| format!("{welcome}: {}", http::cause(&e)))?;
    let csrf = hidden(&page, "csrf").ok_or_else(|| {
        format!("{welcome} after login has no CSRF field: the login did not hold")
    })?;
    let join = format!("{base}/rooms/{slug}/join");
    let resp = client
        .post(&join)
        .header(COOKIE, &cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .map_err(|e| format!("{join}: {}", http::cause(&e)))?;
    let status = resp.status();
    let location = resp
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    match location {
        Some(to) if status.is_redirection() && !to.starts_with('/') => {
            Ok(to.split('?').next().unwrap_or_default().to_owned())
        }
        _ => {
            let page = resp.text().await.unwrap_or_default();
            let title = page
                .split("<h1>")
                .nth(1)
                .and_then(|s| s.split("</h1>").next())
                .map(strip_tags)
                .unwrap_or_default();
            Err(format!(
                "{join} gave no Join URL: HTTP {status} {}{}",
                location.map(|l| format!("to {l} ")).unwrap_or_default(),
                title
            ))
        }
    }
}

/// `name=value` of every Set-Cookie, joined for a Cookie header.
fn cookies(headers: &HeaderMap) -> String {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("; ")
}

fn join_cookies(a: &str, b: &str) -> String {
    [a, b]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join("; ")
}

/// The value of the hidden input `name` (the portal renders with maud:
/// `name="csrf" value="…"`).
pub(crate) fn hidden(page: &str, name: &str) -> Option<String> {
    let at = page.find(&format!("name=\"{name}\""))?;
    let rest = &page[at..];
    let v = rest.find("value=\"")? + "value=\"".len();
    let end = rest[v..].find('"')?;
    Some(rest[v..v + end].to_owned())
}

pub(crate) fn strip_tags(s: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for c in s.chars() {
        match c {
            '<' => inside = true,
            '>' => inside = false,
            c if !inside => out.push(c),
            _ => {}
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

pub(crate) fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    let _ = getrandom::fill(&mut b);
    conference::protocol::hex(&b)
}
