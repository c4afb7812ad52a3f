//! The routes and their handlers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use maud::{html, Markup};
use serde::Deserialize;

use conference::{Backend, Event, Room, RoomKind, Session};

use crate::auth::{self, User};
use crate::bbb::{Cluster, Health};
use crate::config::Config;
use crate::store::{Store, Ticket};
use crate::views::{self, page, post_button, times, Frame};

pub struct AppState {
    pub event: Event,
    pub config: Config,
    pub store: Store,
    pub cluster: Arc<Cluster>,
    pub limiter: auth::RateLimiter,
}

impl AppState {
    pub fn new(event: Event, config: Config, store: Store) -> AppState {
        let timeout = config.poll_interval.min(Duration::from_secs(5));
        let cluster = Cluster::new(config.bbb.clone(), timeout);
        AppState {
            event,
            config,
            store,
            cluster,
            limiter: auth::RateLimiter::new(),
        }
    }

    /// The portal's own base URL, for links that leave it (BBB's logout URL,
    /// calendar entries).
    fn base_url(&self, headers: &HeaderMap) -> String {
        if let Some(u) = &self.config.public_url {
            return u.clone();
        }
        let scheme = if auth::is_https(self, headers) {
            "https"
        } else {
            "http"
        };
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| {
                h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
            })
            .unwrap_or("localhost");
        format!("{scheme}://{host}")
    }

    fn meeting_id(&self, room: &Room) -> String {
        format!("{}-{}", self.event.id, room.slug)
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/", get(welcome))
        .route("/timetable", get(timetable))
        .route("/schedule", get(schedule))
        .route("/schedule.ics", get(schedule_ics))
        .route("/my.ics", get(my_ics))
        .route("/picks", post(pick))
        .route("/settings", get(settings).post(save_settings))
        .route("/rooms/{slug}/join", post(join))
        .route("/staff", get(staff))
        .route("/status", get(status))
        .route("/turn", get(turn))
        .fallback(not_found)
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

async fn security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert("x-frame-options", "DENY".parse().unwrap());
    h.insert("x-content-type-options", "nosniff".parse().unwrap());
    h.insert("referrer-policy", "same-origin".parse().unwrap());
    h.insert(
        "content-security-policy",
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self' https: http:; frame-ancestors 'none'"
            .parse()
            .unwrap(),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, "no-store".parse().unwrap());
    }
    resp
}

async fn not_found(_user: User) -> Response {
    (
        StatusCode::NOT_FOUND,
        views::message_page("Not found", "There is no such page."),
    )
        .into_response()
}

fn frame<'a>(state: &'a AppState, user: &'a User) -> Frame<'a> {
    Frame {
        event: &state.event,
        user: Some((&user.ticket, &user.csrf)),
    }
}

fn user_tz(ticket: &Ticket) -> Option<Tz> {
    ticket.tz.as_deref().and_then(|t| t.parse().ok())
}

fn normalize_name(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// Whether the ticket holder is one of the session's speakers: the ticket's
/// name or email equals one of the schedule's persons (case and spacing
/// folded). Schedules name people, not addresses, so a ticket needs its
/// `name` for this to match.
pub fn is_speaker(ticket: &Ticket, session: &Session) -> bool {
    let mut mine = vec![normalize_name(&ticket.email)];
    if let Some(n) = &ticket.name {
        mine.push(normalize_name(n));
    }
    session
        .persons
        .iter()
        .any(|p| mine.contains(&normalize_name(p)))
}

/// Sessions of `room` that run at `now` or start within the join window.
fn joinable_sessions<'a>(
    state: &'a AppState,
    room: &'a Room,
    now: DateTime<Utc>,
) -> impl Iterator<Item = &'a Session> + 'a {
    let early = state.config.join_early;
    state
        .event
        .sessions
        .iter()
        .filter(move |s| s.room == room.name && s.start - early <= now && now < s.end)
}

/// May `ticket` enter `room` now, and as moderator?
fn access(state: &AppState, ticket: &Ticket, room: &Room, now: DateTime<Utc>) -> Option<bool> {
    let staff = ticket.is_staff();
    let speaker_now = joinable_sessions(state, room, now).any(|s| is_speaker(ticket, s));
    let speaker_anywhere = || state.event.sessions.iter().any(|s| is_speaker(ticket, s));
    let allowed = match room.kind {
        RoomKind::Staff => staff,
        RoomKind::Private => staff || speaker_anywhere(),
        RoomKind::Hack => true,
        RoomKind::Session => staff || joinable_sessions(state, room, now).next().is_some(),
    };
    allowed.then_some(staff || speaker_now)
}

fn room_people(state: &AppState, room: &Room) -> Option<u64> {
    if room.backend != Backend::Bbb {
        return None;
    }
    state
        .cluster
        .meeting(&state.meeting_id(room))
        .map(|(_, m)| m.participants)
}

fn join_button(state: &AppState, user: &User, room: &Room, now: DateTime<Utc>) -> Markup {
    if access(state, &user.ticket, room, now).is_some() {
        post_button(
            &format!("/rooms/{}/join", room.slug),
            &user.csrf,
            "Join",
            None,
        )
    } else {
        html! {}
    }
}

// ----- login -----

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
}

fn safe_next(next: Option<&str>) -> String {
    match next {
        // Browsers drop tabs and newlines from URLs ("/\t/evil" is "//evil"),
        // and a control character cannot go into a Location header.
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.chars().any(|c| c.is_control() || c.is_whitespace()) =>
        {
            n.to_owned()
        }
        _ => "/".to_owned(),
    }
}

fn login_page(
    state: &AppState,
    csrf: &str,
    next: &str,
    email: &str,
    error: Option<&str>,
) -> Markup {
    let f = Frame {
        event: &state.event,
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

async fn login_form(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<NextQuery>,
) -> Response {
    let key = &state.config.session_key;
    if let Some(token) =
        auth::cookie(&headers, auth::SESSION_COOKIE).and_then(|v| auth::session_token(key, v))
    {
        if matches!(state.store.session(token), Ok(Some(_))) {
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
            auth::is_https(&state, &headers),
        );
        resp.headers_mut()
            .append(header::SET_COOKIE, c.parse().unwrap());
    }
    resp
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    csrf: String,
    next: Option<String>,
}

async fn login(
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
    let ip_key = format!("ip:{ip}");
    let email = crate::store::normalize_email(&form.email);
    let email_key = format!("email:{email}");
    if state.limiter.count(&ip_key, auth::LOGIN_WINDOW) >= auth::LOGIN_PER_IP
        || state.limiter.count(&email_key, auth::LOGIN_WINDOW) >= auth::FAILURES_PER_EMAIL
    {
        tracing::warn!(%ip, "login rate limit reached");
        let mut resp = (
            StatusCode::TOO_MANY_REQUESTS,
            login_page(&state, &csrf, &next, &form.email, Some("Too many login attempts. Wait a quarter of an hour and try again, or contact the organisers.")),
        )
            .into_response();
        resp.headers_mut()
            .insert(header::RETRY_AFTER, "900".parse().unwrap());
        return resp;
    }
    let ticket = match state.store.check_login(&email, &form.code) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "ticket lookup failed");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let Some(ticket) = ticket else {
        state.limiter.hit(&email_key, auth::LOGIN_WINDOW);
        state.limiter.hit(&ip_key, auth::LOGIN_WINDOW);
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
    state.limiter.clear(&email_key);
    let token = auth::new_token();
    if let Err(e) = state
        .store
        .create_session(ticket.id, &token, state.config.session_ttl)
    {
        tracing::error!(error = %e, "cannot store the session");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    tracing::info!(ticket = ticket.id, staff = ticket.is_staff(), "login");
    let secure = auth::is_https(&state, &headers);
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

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    user: User,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(r) = user.check_csrf(&form.csrf) {
        return r;
    }
    let _ = state.store.delete_session(&user.token);
    let mut resp = Redirect::to("/login").into_response();
    resp.headers_mut().append(
        header::SET_COOKIE,
        auth::set_cookie(
            auth::SESSION_COOKIE,
            "",
            Some(0),
            auth::is_https(&state, &headers),
        )
        .parse()
        .unwrap(),
    );
    resp
}

// ----- attendee pages -----

fn session_card(
    state: &AppState,
    user: &User,
    s: &Session,
    at: DateTime<Utc>,
    now: DateTime<Utc>,
    picks: &[String],
) -> Markup {
    let room = state.event.room(&s.room);
    let tz = user_tz(&user.ticket);
    let picked = picks.contains(&s.guid);
    html! {
        div.card id=(format!("s-{}", s.guid)) {
            div.row {
                div.grow {
                    @if s.is_running(at) { span.live { "Live " } }
                    strong { (s.title) }
                    div.muted {
                        (times(s.start, s.end, state.event.timezone, tz))
                        " · " (s.room)
                        @if let Some(k) = &s.kind { " · " (k) }
                        @if let Some(t) = &s.track { @if Some(t) != Some(&s.room) { " · " (t) } }
                    }
                    @if !s.persons.is_empty() { div.muted { (s.persons.join(", ")) } }
                }
                div {
                    @if let Some(room) = room {
                        @if s.start - state.config.join_early <= now && now < s.end {
                            (join_button(state, user, room, now))
                            " "
                        }
                    }
                    form.inline method="post" action="/picks" {
                        input type="hidden" name="csrf" value=(user.csrf);
                        input type="hidden" name="guid" value=(s.guid);
                        input type="hidden" name="picked" value=(if picked { "0" } else { "1" });
                        button.quiet type="submit" title=(if picked { "Remove from my schedule" } else { "Add to my schedule" }) {
                            (if picked { "★ Mine" } else { "☆ Add" })
                        }
                    }
                }
            }
        }
    }
}

async fn welcome(State(state): State<Arc<AppState>>, user: User) -> Markup {
    let now = Utc::now();
    let ev = &state.event;
    let picks = state.store.picks(user.ticket.id).unwrap_or_default();
    let running: Vec<&Session> = ev
        .sessions
        .iter()
        .filter(|s| s.start - state.config.join_early <= now && now < s.end)
        .collect();
    let next = ev.sessions.iter().find(|s| s.start > now);
    let (first, last) = ev.span();
    let f = frame(&state, &user);
    page(
        &f,
        "Welcome",
        html! {
            h1 { "Hello, " (user.ticket.display_name()) }
            @if now < first {
                p { (ev.name) " opens " (first.with_timezone(&ev.timezone).format("%A %-d %B %Y at %H:%M %Z")) " (" (first.format("%H:%M UTC")) "). "
                    "You can already try a hack room to check your microphone and camera." }
            } @else if now > last {
                p { (ev.name) " is over. Thank you for coming!" }
            }
            h2 { "Now" }
            @if running.is_empty() {
                p.muted { "No session is running right now." }
                @if let Some(n) = next { p { "Next: " strong { (n.title) } " — " (times(n.start, n.end, ev.timezone, user_tz(&user.ticket))) " · " (n.room) } }
            }
            @for s in &running { (session_card(&state, &user, s, now, now, &picks)) }
            p { a href="/timetable" { "Timetable around now" } " · " a href="/schedule" { "Whole schedule" } }
            h2 { "Rooms" }
            (rooms_table(&state, &user, now, |r| matches!(r.kind, RoomKind::Session | RoomKind::Hack | RoomKind::Private)))
            h2 { "Links" }
            ul {
                @if let Some(chat) = &ev.chat { li { a href=(chat) { "Chat" } } }
                @if let Some(coc) = &ev.code_of_conduct { li { a href=(coc) { "Code of conduct" } " — it applies in every room and in the chat." } }
                @if let Some(c) = &ev.contact { li { a href=(c) { "Contact the organisers" } } }
                li { a href="/schedule.ics" { "Whole schedule (.ics)" } " · " a href="/my.ics" { "My selection (.ics)" } }
                @if user.ticket.is_staff() { li { a href="/staff" { "Staff room" } " · " a href="/status" { "Server and room status" } } }
            }
        },
    )
}

fn rooms_table(
    state: &AppState,
    user: &User,
    now: DateTime<Utc>,
    which: impl Fn(&Room) -> bool,
) -> Markup {
    let rooms: Vec<&Room> = state
        .event
        .rooms
        .iter()
        .filter(|r| which(r))
        .filter(|r| r.kind != RoomKind::Private || access(state, &user.ticket, r, now).is_some())
        .collect();
    html! {
        div.scroll { table {
            thead { tr { th { "Room" } th { "On now" } th.n { "People" } th {} } }
            tbody {
                @for r in rooms {
                    tr {
                        td { (r.name) br; span.muted { (kind_name(r.kind)) } }
                        td {
                            @if let Some(s) = state.event.sessions.iter().find(|s| s.room == r.name && s.is_running(now)) { (s.title) }
                            @else if r.kind == RoomKind::Hack { span.muted { "open all day" } }
                        }
                        td.n { @if let Some(p) = room_people(state, r) { (p) } @else { span.muted { "–" } } }
                        td { (join_button(state, user, r, now)) }
                    }
                }
            }
        } }
    }
}

fn kind_name(k: RoomKind) -> &'static str {
    match k {
        RoomKind::Session => "sessions",
        RoomKind::Hack => "hack room",
        RoomKind::Private => "private",
        RoomKind::Staff => "staff only",
    }
}

#[derive(Deserialize)]
struct AtQuery {
    at: Option<String>,
}

async fn timetable(
    State(state): State<Arc<AppState>>,
    user: User,
    Query(q): Query<AtQuery>,
) -> Response {
    let now = Utc::now();
    let at = match q.at.as_deref().filter(|s| !s.is_empty()) {
        None => now,
        Some(s) => match DateTime::parse_from_rfc3339(s) {
            Ok(t) => t.with_timezone(&Utc),
            Err(_) => {
                return (
                    StatusCode::BAD_REQUEST,
                    views::message_page(
                        "Bad time",
                        "`at` must be an RFC 3339 time like 2020-08-24T15:30:00Z.",
                    ),
                )
                    .into_response();
            }
        },
    };
    let ev = &state.event;
    let (from, to) = (
        at - state.config.timetable_before,
        at + state.config.timetable_after,
    );
    let sessions: Vec<&Session> = ev
        .sessions
        .iter()
        .filter(|s| s.end > from && s.start < to)
        .collect();
    let picks = state.store.picks(user.ticket.id).unwrap_or_default();
    let tz = user_tz(&user.ticket);
    let f = frame(&state, &user);
    let running: Vec<&&Session> = sessions.iter().filter(|s| s.is_running(at)).collect();
    let later: Vec<&&Session> = sessions.iter().filter(|s| s.start > at).collect();
    let earlier: Vec<&&Session> = sessions.iter().filter(|s| s.end <= at).collect();
    page(&f, "Timetable", html! {
        h1 { "Timetable" }
        @if q.at.is_some() {
            div.banner { "Preview: the timetable as it will look at " strong.t { (at.format("%Y-%m-%d %H:%M UTC")) } " (" (at.with_timezone(&ev.timezone).format("%H:%M %Z")) "). " a href="/timetable" { "Back to now" } }
        }
        p.muted {
            "From " span.t { (from.format("%H:%M")) } " to " span.t { (to.format("%H:%M UTC")) } " · "
            span.t { (at.with_timezone(&ev.timezone).format("%A %-d %B, %H:%M %Z")) }
            @if let Some(tz) = tz { " · your time " span.t { (at.with_timezone(&tz).format("%H:%M %Z")) } }
            @else { " · " a href="/settings" { "show your own time zone" } }
        }
        @if sessions.is_empty() { p { "No sessions in this window. " a href="/schedule" { "See the whole schedule." } } }
        @if !running.is_empty() { h2 { "Running now" } @for s in running { (session_card(&state, &user, s, at, now, &picks)) } }
        @if !later.is_empty() { h2 { "Coming up" } @for s in later { (session_card(&state, &user, s, at, now, &picks)) } }
        @if !earlier.is_empty() { h2 { "Just ended" } @for s in earlier { (session_card(&state, &user, s, at, now, &picks)) } }
    }).into_response()
}

async fn schedule(State(state): State<Arc<AppState>>, user: User) -> Markup {
    let now = Utc::now();
    let ev = &state.event;
    let picks = state.store.picks(user.ticket.id).unwrap_or_default();
    let f = frame(&state, &user);
    let mut days: Vec<(chrono::NaiveDate, Vec<&Session>)> = Vec::new();
    for s in &ev.sessions {
        let d = s.start.with_timezone(&ev.timezone).date_naive();
        match days.last_mut() {
            Some((day, list)) if *day == d => list.push(s),
            _ => days.push((d, vec![s])),
        }
    }
    page(
        &f,
        "Schedule",
        html! {
            h1 { "Schedule" }
            p { a href="/schedule.ics" { "Download as .ics" } " · " a href="/my.ics" { "My selection as .ics" } " (" (picks.len()) " sessions)" }
            @if ev.sessions.is_empty() { p { "The schedule is not published yet." } }
            @for (day, list) in &days {
                h2 { (day.format("%A %-d %B %Y")) }
                @for s in list { (session_card(&state, &user, s, now, now, &picks)) }
            }
        },
    )
}

fn ics_response(body: String, filename: &str) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                "text/calendar; charset=utf-8".to_owned(),
            ),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
        ],
        body,
    )
        .into_response()
}

async fn schedule_ics(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    _user: User,
) -> Response {
    let ev = &state.event;
    let body = crate::ics::calendar(ev, &ev.name, ev.sessions.iter(), &state.base_url(&headers));
    ics_response(body, &format!("{}.ics", ev.id))
}

async fn my_ics(State(state): State<Arc<AppState>>, headers: HeaderMap, user: User) -> Response {
    let ev = &state.event;
    let picks = state.store.picks(user.ticket.id).unwrap_or_default();
    let body = crate::ics::calendar(
        ev,
        &format!("{} (my selection)", ev.name),
        ev.sessions.iter().filter(|s| picks.contains(&s.guid)),
        &state.base_url(&headers),
    );
    ics_response(body, &format!("{}-mine.ics", ev.id))
}

#[derive(Deserialize)]
struct PickForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    guid: String,
    #[serde(default)]
    picked: String,
}

async fn pick(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    user: User,
    Form(form): Form<PickForm>,
) -> Response {
    if let Err(r) = user.check_csrf(&form.csrf) {
        return r;
    }
    if !state.event.sessions.iter().any(|s| s.guid == form.guid) {
        return (
            StatusCode::NOT_FOUND,
            views::message_page("Not found", "There is no such session."),
        )
            .into_response();
    }
    if let Err(e) = state
        .store
        .set_pick(user.ticket.id, &form.guid, form.picked == "1")
    {
        tracing::error!(error = %e, "cannot store a pick");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    // Back to where the form was, at the session.
    let back = headers
        .get(header::REFERER)
        .and_then(|r| r.to_str().ok())
        .and_then(|r| {
            r.find("://")
                .and_then(|i| r[i + 3..].find('/').map(|j| r[i + 3 + j..].to_owned()))
        })
        .map(|p| p.split('#').next().unwrap_or("/").to_owned())
        .unwrap_or_else(|| "/schedule".to_owned());
    Redirect::to(&format!("{}#s-{}", safe_next(Some(&back)), form.guid)).into_response()
}

async fn settings(State(state): State<Arc<AppState>>, user: User) -> Markup {
    let f = frame(&state, &user);
    let current = user.ticket.tz.clone().unwrap_or_default();
    page(
        &f,
        "Settings",
        html! {
            h1 { "Settings" }
            form method="post" action="/settings" {
                input type="hidden" name="csrf" value=(user.csrf);
                label for="tz" { "Your time zone (times are also shown in UTC and in the event's zone, " (state.event.timezone.name()) ")" }
                select id="tz" name="tz" {
                    option value="" selected[current.is_empty()] { "— none —" }
                    @for tz in chrono_tz::TZ_VARIANTS.iter() {
                        option value=(tz.name()) selected[tz.name() == current] { (tz.name()) }
                    }
                }
                p { button type="submit" { "Save" } }
            }
            p.muted { "Signed in as " (user.ticket.email) @if user.ticket.is_staff() { " (staff)" } "." }
        },
    )
}

#[derive(Deserialize)]
struct TzForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    tz: String,
}

async fn save_settings(
    State(state): State<Arc<AppState>>,
    user: User,
    Form(form): Form<TzForm>,
) -> Response {
    if let Err(r) = user.check_csrf(&form.csrf) {
        return r;
    }
    let tz = if form.tz.is_empty() {
        None
    } else if form.tz.parse::<Tz>().is_ok() {
        Some(form.tz.as_str())
    } else {
        return (
            StatusCode::BAD_REQUEST,
            views::message_page("Unknown time zone", "Pick a time zone from the list."),
        )
            .into_response();
    };
    if let Err(e) = state.store.set_tz(user.ticket.id, tz) {
        tracing::error!(error = %e, "cannot store the time zone");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    Redirect::to("/timetable").into_response()
}

// ----- joining -----

fn unavailable(title: &str, msg: &str) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        views::message_page(title, msg),
    )
        .into_response()
}

async fn join(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(slug): Path<String>,
    user: User,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(r) = user.check_csrf(&form.csrf) {
        return r;
    }
    let now = Utc::now();
    let Some(room) = state.event.rooms.iter().find(|r| r.slug == slug) else {
        return (
            StatusCode::NOT_FOUND,
            views::message_page("Not found", "There is no such room."),
        )
            .into_response();
    };
    let Some(moderator) = access(&state, &user.ticket, room, now) else {
        return match room.kind {
            RoomKind::Session => (
                StatusCode::FORBIDDEN,
                views::message_page(
                    "Not open yet",
                    &format!(
                        "{} opens {} minutes before its next session starts.",
                        room.name,
                        state.config.join_early.num_minutes()
                    ),
                ),
            )
                .into_response(),
            _ => auth::forbidden("This room is not open to you."),
        };
    };
    let ticket = &user.ticket;
    let name = ticket.display_name();
    match room.backend {
        Backend::Bbb => {
            if state.cluster.servers.is_empty() {
                return unavailable(
                    "Not configured",
                    &format!(
                        "The server of {} is not configured on this portal.",
                        room.name
                    ),
                );
            }
            let id = state.meeting_id(room);
            let Some(server) = state.cluster.place(&id) else {
                return unavailable("No server available", "No BigBlueButton server answers right now. Try again in a minute; the staff have been told by the status page.");
            };
            let key = &state.config.session_key;
            let mod_pw = &auth::sign(key, "bbb-moderator", &id)[..20];
            let att_pw = &auth::sign(key, "bbb-attendee", &id)[..20];
            if !state.cluster.has_people(server, &id) {
                let logout = format!("{}/", state.base_url(&headers));
                let mut welcome = format!("Welcome to {} at {}!", room.name, state.event.name);
                if let Some(coc) = &state.event.code_of_conduct {
                    welcome.push_str(&format!(" The code of conduct applies here: {coc}"));
                }
                let session_room = room.kind == RoomKind::Session;
                let mut params: Vec<(&str, &str)> = vec![
                    ("name", &room.name),
                    ("meetingID", &id),
                    ("attendeePW", att_pw),
                    ("moderatorPW", mod_pw),
                    ("welcome", &welcome),
                    ("logoutURL", &logout),
                    ("record", "false"),
                    ("muteOnStart", if session_room { "true" } else { "false" }),
                    ("meta_venue-event", &state.event.id),
                    ("meta_venue-room", &room.slug),
                ];
                if !room.webcams {
                    params.push(("lockSettingsDisableCam", "true"));
                    params.push(("webcamsOnlyForModerator", "true"));
                }
                if let Err(e) = state.cluster.create(server, &params).await {
                    tracing::error!(room = %room.slug, server = %state.cluster.servers[server].name, error = %e, "BBB create failed");
                    return (StatusCode::BAD_GATEWAY, views::message_page("The room could not be opened", "Its BigBlueButton server did not accept the meeting. Try again in a minute.")).into_response();
                }
            }
            let user_id = format!("venue-{}", ticket.id);
            let mut params: Vec<(&str, &str)> = vec![
                ("fullName", &name),
                ("meetingID", &id),
                ("role", if moderator { "MODERATOR" } else { "VIEWER" }),
                ("password", if moderator { mod_pw } else { att_pw }),
                ("userID", &user_id),
                ("redirect", "true"),
            ];
            if room.kind == RoomKind::Session && !moderator {
                // Talks are listened to: offer listen-only first.
                params.push(("userdata-bbb_listen_only_mode", "true"));
            }
            if !room.webcams {
                params.push(("userdata-bbb_auto_share_webcam", "false"));
            }
            let url = state.cluster.join_url(server, &params);
            tracing::info!(ticket = ticket.id, room = %room.slug, server = %state.cluster.servers[server].name, moderator, "join");
            Redirect::to(&url).into_response()
        }
        Backend::Jitsi => {
            let Some(j) = &state.config.jitsi else {
                return unavailable(
                    "Not configured",
                    &format!(
                        "The server of {} is not configured on this portal.",
                        room.name
                    ),
                );
            };
            let jroom = state.meeting_id(room);
            let token = conference::protocol::jwt::jitsi_token(
                j.secret.as_bytes(),
                &conference::protocol::jwt::JitsiGrant {
                    app_id: &j.app_id,
                    domain: &j.domain,
                    room: &jroom,
                    user: conference::protocol::jwt::JitsiUser {
                        id: format!("venue-{}", ticket.id),
                        name,
                        email: ticket.email.clone(),
                        moderator,
                    },
                    now: now.timestamp(),
                    ttl: j.token_ttl,
                },
            );
            tracing::info!(ticket = ticket.id, room = %room.slug, moderator, "join (jitsi)");
            Redirect::to(&format!("https://{}/{}?jwt={}", j.domain, jroom, token)).into_response()
        }
    }
}

// ----- staff -----

async fn staff(State(state): State<Arc<AppState>>, user: User) -> Response {
    if let Err(r) = user.require_staff() {
        return r;
    }
    let now = Utc::now();
    let f = frame(&state, &user);
    page(&f, "Staff room", html! {
        h1 { "Staff room" }
        p { "Only staff see this page and can enter these rooms. Staff join every room as moderators." }
        (rooms_table(&state, &user, now, |r| matches!(r.kind, RoomKind::Staff | RoomKind::Private)))
        p { a href="/status" { "Server and room status" } }
    }).into_response()
}

async fn status(State(state): State<Arc<AppState>>, user: User) -> Response {
    if let Err(r) = user.require_staff() {
        return r;
    }
    let now = Utc::now();
    let f = frame(&state, &user);
    let ev = &state.event;
    let body = state.cluster.with_states(|servers| {
        let meeting_of = |room: &Room| {
            let id = state.meeting_id(room);
            servers.iter().find_map(|s| s.meetings.iter().find(|m| m.id == id).map(|m| (s, m)))
        };
        let total = |f: fn(&crate::bbb::Meeting) -> u64| -> u64 { servers.iter().flat_map(|s| &s.meetings).map(f).sum() };
        let known: Vec<String> = ev.rooms.iter().map(|r| state.meeting_id(r)).collect();
        let (tickets, staff_n) = state.store.ticket_count().unwrap_or((0, 0));
        html! {
            h1 { "Status" }
            p.muted { "BigBlueButton is polled every " (state.config.poll_interval.as_secs_f64()) " s per server (" (state.cluster.polls()) " polls so far); this page shows the last answers. " (tickets) " tickets, " (staff_n) " staff." }
            h2 { "Servers" }
            @if servers.is_empty() { p { "No BigBlueButton server is configured." } }
            @else {
                div.scroll { table {
                    thead { tr { th { "Server" } th { "State" } th.n { "Rooms" } th.n { "People" } th.n { "Listen-only" } th.n { "Voice" } th.n { "Video" } th { "Last answer" } } }
                    tbody {
                        @for s in servers {
                            tr {
                                td { (s.name) }
                                td { @match s.health {
                                    Health::Up => span.up { "up" },
                                    Health::Down => span.down { "down" },
                                    Health::Unknown => span.muted { "not polled yet" },
                                } @if let Some(e) = &s.last_error { br; span.muted { (e) } } }
                                td.n { (s.meetings.len()) }
                                td.n { (s.participants()) }
                                td.n { (s.meetings.iter().map(|m| m.listeners).sum::<u64>()) }
                                td.n { (s.meetings.iter().map(|m| m.voice).sum::<u64>()) }
                                td.n { (s.meetings.iter().map(|m| m.video).sum::<u64>()) }
                                td.t { @if let Some(t) = s.last_answer { (format!("{} s ago", (now - t).num_seconds())) } @else { "never" } }
                            }
                        }
                        tr {
                            th { "Total" } td { (servers.iter().filter(|s| s.health == Health::Up).count()) " of " (servers.len()) " up" }
                            td.n { (servers.iter().map(|s| s.meetings.len()).sum::<usize>()) }
                            td.n { (total(|m| m.participants)) } td.n { (total(|m| m.listeners)) } td.n { (total(|m| m.voice)) } td.n { (total(|m| m.video)) } td {}
                        }
                    }
                } }
            }
            h2 { "Rooms" }
            div.scroll { table {
                thead { tr { th { "Room" } th { "Server" } th.n { "People" } th.n { "Listen-only" } th.n { "Voice" } th.n { "Video" } th.n { "Moderators" } th { "On now" } } }
                tbody {
                    @for r in &ev.rooms {
                        @let m = meeting_of(r);
                        tr {
                            td { (r.name) br; span.muted { (kind_name(r.kind)) ", " (match r.backend { Backend::Bbb => "BBB", Backend::Jitsi => "Jitsi" }) } }
                            @if let Some((s, m)) = m {
                                td { (s.name) }
                                td.n { (m.participants) } td.n { (m.listeners) } td.n { (m.voice) } td.n { (m.video) }
                                td.n { (m.moderators) @let names = m.attendees.iter().filter(|a| a.moderator).map(|a| a.name.as_str()).collect::<Vec<_>>().join(", "); @if !names.is_empty() { br; span.muted { (names) } } }
                            } @else {
                                td.muted { @if r.backend == Backend::Bbb { "not running" } @else { "–" } } td {} td {} td {} td {} td {}
                            }
                            td { @if let Some(s) = ev.sessions.iter().find(|s| s.room == r.name && s.is_running(now)) { (s.title) } }
                        }
                    }
                    @for s in servers { @for m in s.meetings.iter().filter(|m| !known.contains(&m.id)) {
                        tr.muted {
                            td { (m.name) " (not an event room)" } td { (s.name) }
                            td.n { (m.participants) } td.n { (m.listeners) } td.n { (m.voice) } td.n { (m.video) } td.n { (m.moderators) } td {}
                        }
                    } }
                }
            } }
        }
    });
    page(&f, "Status", body).into_response()
}

// ----- TURN -----

async fn turn(State(state): State<Arc<AppState>>, user: User) -> Response {
    let Some(t) = &state.config.turn else {
        return unavailable(
            "Not configured",
            "No TURN server is configured on this portal.",
        );
    };
    let expires = Utc::now().timestamp() + t.ttl;
    let c = conference::protocol::turn::credentials(
        &t.secret,
        &format!("venue-{}", user.ticket.id),
        expires,
    );
    Json(serde_json::json!({
        "username": c.username,
        "password": c.password,
        "credential": c.password,
        "ttl": t.ttl,
        "uris": t.uris,
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn next_stays_inside_the_portal() {
        assert_eq!(
            safe_next(Some("/timetable?at=2020-08-24T15:00:00Z")),
            "/timetable?at=2020-08-24T15:00:00Z"
        );
        for outside in [
            "//evil.example",
            "/\t/evil.example",
            "/\\evil.example",
            "https://evil.example",
            "/\n",
            "/a b",
        ] {
            assert_eq!(safe_next(Some(outside)), "/", "{outside:?}");
        }
        assert_eq!(safe_next(None), "/");
    }
}
