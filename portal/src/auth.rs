//! Logins, session cookies, CSRF tokens and the login rate limit.
//!
//! - The session cookie is `token.mac`: 32 random bytes (hex) and an
//!   HMAC-SHA256 of them with the session key. The MAC is checked before the
//!   database is asked; the database stores only a hash of the token, so a
//!   copy of it gives no live session. HttpOnly, SameSite=Lax, Secure when
//!   the portal is reached over https.
//! - CSRF: every form carries `csrf`, an HMAC of the session token (or, on
//!   the login form, of a random pre-login cookie); a POST without the right
//!   one is refused with 403.
//! - Failed logins are throttled in `throttle`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::state::AppState;
use crate::store::Ticket;
use conference::protocol::{constant_time_eq, hex};

pub const SESSION_COOKIE: &str = "venue_session";
pub const LOGIN_COOKIE: &str = "venue_login";

/// `hex(HMAC-SHA256(key, purpose + ":" + value))`.
pub fn sign(key: &[u8], purpose: &str, value: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(purpose.as_bytes());
    mac.update(b":");
    mac.update(value.as_bytes());
    hex(&mac.finalize().into_bytes())
}

pub fn new_token() -> String {
    hex(&crate::random_bytes::<32>())
}

/// The value of cookie `name` in the request.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value.
pub fn set_cookie(name: &str, value: &str, max_age: Option<i64>, secure: bool) -> String {
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax");
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    if secure {
        c.push_str("; Secure");
    }
    c
}

/// Checks a signed session cookie value and returns its token.
pub fn session_token<'a>(key: &[u8], value: &'a str) -> Option<&'a str> {
    let (token, mac) = value.split_once('.')?;
    if token.len() != 64 {
        return None;
    }
    constant_time_eq(sign(key, "session", token).as_bytes(), mac.as_bytes()).then_some(token)
}

/// A logged-in ticket holder.
pub struct User {
    pub ticket: Ticket,
    pub token: String,
    /// The CSRF token for this session's forms.
    pub csrf: String,
}

// Handlers return the refusal as their response: a Response is axum's error type.
#[allow(clippy::result_large_err)]
impl User {
    pub fn check_csrf(&self, given: &str) -> Result<(), Response> {
        if constant_time_eq(self.csrf.as_bytes(), given.as_bytes()) {
            Ok(())
        } else {
            tracing::warn!(
                ticket = self.ticket.id,
                "POST with a missing or wrong CSRF token"
            );
            Err(forbidden("The form's security token is missing or wrong. Go back, reload the page and try again."))
        }
    }

    pub fn require_staff(&self) -> Result<(), Response> {
        if self.ticket.is_staff() {
            Ok(())
        } else {
            Err(forbidden("This page is for staff only."))
        }
    }
}

pub fn forbidden(msg: &str) -> Response {
    (
        StatusCode::FORBIDDEN,
        crate::views::message_page("Forbidden", msg),
    )
        .into_response()
}

fn login_redirect(parts: &Parts) -> Response {
    let next = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let target = if parts.method == axum::http::Method::GET && next != "/" {
        format!(
            "/login?next={}",
            conference::protocol::bbb::encode_component(next)
        )
    } else {
        "/login".to_owned()
    };
    Redirect::to(&target).into_response()
}

impl FromRequestParts<Arc<AppState>> for User {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE)
            .and_then(|v| session_token(&state.config.session_key, v))
        else {
            return Err(login_redirect(parts));
        };
        match state.cache.session(&state.store, token) {
            Ok(Some(ticket)) => Ok(User {
                csrf: sign(&state.config.session_key, "csrf", token),
                token: token.to_owned(),
                ticket,
            }),
            Ok(None) => Err(login_redirect(parts)),
            Err(e) => {
                tracing::error!(error = %e, "session lookup failed");
                Err(StatusCode::INTERNAL_SERVER_ERROR.into_response())
            }
        }
    }
}

/// The client's address: the TCP peer, or the last `X-Forwarded-For` entry
/// when the peer is a reverse proxy on loopback.
pub fn client_ip(parts_headers: &HeaderMap, peer: Option<&ConnectInfo<SocketAddr>>) -> IpAddr {
    let peer_ip = peer.map(|c| c.0.ip()).unwrap_or(IpAddr::from([0, 0, 0, 0]));
    if peer_ip.is_loopback() {
        if let Some(ip) = parts_headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|v| v.trim().parse().ok())
        {
            return ip;
        }
    }
    peer_ip
}
