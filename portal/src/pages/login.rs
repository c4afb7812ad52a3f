//! The login form, logging in (with the throttle) and logging out.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup};
use serde::Deserialize;

use super::{safe_next, CsrfForm};
use crate::auth::{self, User};
use crate::state::AppState;
use crate::throttle::Failure;
use crate::views::{page, Frame};

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

fn login_page(
    state: &AppState,
    csrf: &str,
    next: &str,
    email: &str,
    error: Option<&str>,
) -> Markup {
    let f = Frame {
        chrome: &state.fragments.chrome,
        user: None,
    };
    page(
        &f,
        "Log in",
        html! {
            h1 { "Welcome to " (state.event.name) }
            p { "Log in with the email address of your registration and your ticket code." }
            @if let Some(e) = error { p.error role="alert" { (e) } }
            form method="post" action="/login" {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="next" value=(next);
                label for="email" { "Email" }
                input id="email" name="email" type="email" autocomplete="email" required value=(email);
                label for="code" { "Ticket code" }
                input id="code" name="code" type="text" autocomplete="one-time-code" autocapitalize="none" required;
                p { button type="submit" { "Log in" } }
            }
            @if let Some(contact) = &state.event.contact {
                p.muted { "No ticket code? " a href=(contact) { "Contact the organisers" } "." }
            }
        },
    )
}

pub async fn form(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<NextQuery>,
) -> Response {
    let key = &state.config.session_key;
    if let Some(token) =
        auth::cookie(&headers, auth::SESSION_COOKIE).and_then(|v| auth::session_token(key, v))
    {
        if matches!(state.cache.session(&state.store, token), Ok(Some(_))) {
            return Redirect::to(&safe_next(q.next.as_deref())).into_response();
        }
    }
    let existing = auth::cookie(&headers, auth::LOGIN_COOKIE)
        .filter(|n| n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit()));
    let nonce = existing.map_or_else(auth::new_token, str::to_owned);
    let csrf = auth::sign(key, "login", &nonce);
    let body = login_page(&state, &csrf, &safe_next(q.next.as_deref()), "", None);
    let mut resp = body.into_response();
    if existing.is_none() {
        let c = auth::set_cookie(
            auth::LOGIN_COOKIE,
            &nonce,
            Some(3600),
            state.is_https(&headers),
        );
        resp.headers_mut()
            .append(header::SET_COOKIE, c.parse().unwrap());
    }
    resp
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    csrf: String,
    next: Option<String>,
}

fn too_many(state: &AppState, csrf: &str, next: &str, email: &str) -> Response {
    let mut resp = (
        StatusCode::TOO_MANY_REQUESTS,
        login_page(state, csrf, next, email, Some("Too many failed logins from your network. Wait a quarter of an hour and try again, or contact the organisers.")),
    )
        .into_response();
    resp.headers_mut()
        .insert(header::RETRY_AFTER, "900".parse().unwrap());
    resp
}

pub async fn login(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    peer: ConnectInfo<SocketAddr>,
    Form(form): Form<LoginForm>,
) -> Response {
    let key = &state.config.session_key;
    let Some(nonce) = auth::cookie(&headers, auth::LOGIN_COOKIE) else {
        return auth::forbidden("Your browser did not send the login cookie. Allow cookies for this site and reload the login page.");
    };
    let csrf = auth::sign(key, "login", nonce);
    if !conference::protocol::constant_time_eq(csrf.as_bytes(), form.csrf.as_bytes()) {
        tracing::warn!("login POST with a missing or wrong CSRF token");
        return auth::forbidden("The login form's security token is missing or wrong. Reload the login page and try again.");
    }
    let next = safe_next(form.next.as_deref());
    let ip = auth::client_ip(&headers, Some(&peer));
    let email = crate::store::normalize_email(&form.email);
    if state.throttle.blocked(ip, &email) {
        tracing::warn!(%ip, "login throttled");
        return too_many(&state, &csrf, &next, &form.email);
    }
    let ticket = match state.store.check_login(&email, &form.code) {
        Ok(t) => t,
        Err(e) => return super::internal_error("ticket lookup failed", &e),
    };
    let Some(ticket) = ticket else {
        if state.throttle.failed(ip, &email) == Failure::Backstop {
            tracing::warn!(%ip, "failed login for an address past the per-e-mail backstop");
            return too_many(&state, &csrf, &next, &form.email);
        }
        tracing::info!(%ip, "failed login");
        return (
            StatusCode::UNAUTHORIZED,
            login_page(
                &state,
                &csrf,
                &next,
                &form.email,
                Some("That email address and ticket code do not match a ticket."),
            ),
        )
            .into_response();
    };
    state.throttle.succeeded(ip, &email);
    let token = auth::new_token();
    if let Err(e) = state
        .store
        .create_session(ticket.id, &token, state.config.session_ttl)
    {
        return super::internal_error("cannot store the session", &e);
    }
    tracing::info!(ticket = ticket.id, staff = ticket.is_staff(), "login");
    let secure = state.is_https(&headers);
    let value = format!("{token}.{}", auth::sign(key, "session", &token));
    let mut resp = Redirect::to(&next).into_response();
    let h = resp.headers_mut();
    h.append(
        header::SET_COOKIE,
        auth::set_cookie(
            auth::SESSION_COOKIE,
            &value,
            Some(state.config.session_ttl.num_seconds()),
            secure,
        )
        .parse()
        .unwrap(),
    );
    h.append(
        header::SET_COOKIE,
        auth::set_cookie(auth::LOGIN_COOKIE, "", Some(0), secure)
            .parse()
            .unwrap(),
    );
    resp
}

pub async fn logout(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    user: User,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(r) = user.check_csrf(&form.csrf) {
        return r;
    }
    let _ = state.store.delete_session(&user.token);
    state.cache.forget_session(&user.token);
    let mut resp = Redirect::to("/login").into_response();
    resp.headers_mut().append(
        header::SET_COOKIE,
        auth::set_cookie(auth::SESSION_COOKIE, "", Some(0), state.is_https(&headers))
            .parse()
            .unwrap(),
    );
    resp
}
