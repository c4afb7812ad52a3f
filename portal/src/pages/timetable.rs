//! The timetable around now, the whole schedule, and personal picks (☆).

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use chrono::{DateTime, Utc};
use conference::Session;
use maud::{html, Markup, Render};
use serde::Deserialize;

use super::welcome::join_button;
use super::{frame, user_tz};
use crate::auth::User;
use crate::state::AppState;
use crate::views::{self, page, Direct};

/// A session's card: its cached text (`head`, see `fragments`) with the
/// viewer's Live marker, Join button and ☆ form around it. It renders
/// straight into the page (`Render`), and the CSRF token (hex) and the
/// cached, escaped guid are not escaped again: escaping and copying were
/// most of a timetable view's own work.
pub struct Card<'a> {
    state: &'a AppState,
    user: &'a User,
    head: &'a str,
    index: usize,
    session: &'a Session,
    at: DateTime<Utc>,
    now: DateTime<Utc>,
    picked: bool,
}

pub fn session_card<'a>(
    state: &'a AppState,
    user: &'a User,
    head: &'a str,
    (index, session): (usize, &'a Session),
    at: DateTime<Utc>,
    now: DateTime<Utc>,
    picks: &[String],
) -> Card<'a> {
    Card {
        state,
        user,
        head,
        index,
        session,
        at,
        now,
        picked: picks.contains(&session.guid),
    }
}

impl Render for Card<'_> {
    fn render_to(&self, out: &mut String) {
        let (s, state) = (self.session, self.state);
        let guid = &state.fragments.guids[self.index];
        out.push_str("<div class=\"card\" id=\"s-");
        out.push_str(guid);
        out.push_str("\"><div class=\"row\"><div class=\"grow\">");
        if s.is_running(self.at) {
            out.push_str("<span class=\"live\">Live </span>");
        }
        out.push_str(self.head);
        out.push_str("</div><div>");
        if s.start - state.config.join_early <= self.now && self.now < s.end {
            if let Some(room) = state.event.room(&s.room) {
                join_button(state, self.user, room, self.now).render_to(out);
                out.push(' ');
            }
        }
        out.push_str("<form class=\"inline\" method=\"post\" action=\"/picks\"><input type=\"hidden\" name=\"csrf\" value=\"");
        out.push_str(&self.user.csrf);
        out.push_str("\"><input type=\"hidden\" name=\"guid\" value=\"");
        out.push_str(guid);
        out.push_str(if self.picked {
            "\"><input type=\"hidden\" name=\"picked\" value=\"0\"><button class=\"quiet\" type=\"submit\" title=\"Remove from my schedule\">★ Mine</button></form>"
        } else {
            "\"><input type=\"hidden\" name=\"picked\" value=\"1\"><button class=\"quiet\" type=\"submit\" title=\"Add to my schedule\">☆ Add</button></form>"
        });
        out.push_str("</div></div></div>");
    }
}

/// `HH:MM` of a UTC time, without going through strftime.
fn hh_mm(t: DateTime<Utc>) -> String {
    use chrono::Timelike;
    format!("{:02}:{:02}", t.hour(), t.minute())
}

#[derive(Deserialize)]
pub struct AtQuery {
    at: Option<String>,
}

pub async fn timetable(
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
    let sessions: Vec<(usize, &Session)> = ev
        .sessions
        .iter()
        .enumerate()
        .filter(|(_, s)| s.end > from && s.start < to)
        .collect();
    let picks = state
        .cache
        .picks(&state.store, user.ticket.id)
        .unwrap_or_default();
    let tz = user_tz(&user.ticket);
    let heads = state.fragments.heads(ev, tz);
    let f = frame(&state, &user);
    let running: Vec<_> = sessions.iter().filter(|(_, s)| s.is_running(at)).collect();
    let later: Vec<_> = sessions.iter().filter(|(_, s)| s.start > at).collect();
    let earlier: Vec<_> = sessions.iter().filter(|(_, s)| s.end <= at).collect();
    let heading = state.fragments.timetable_heading(
        (at.timestamp().div_euclid(60), tz, q.at.is_some()),
        || html! {
            h1 { "Timetable" }
            @if q.at.is_some() {
                div.banner { "Preview: the timetable as it will look at " strong.t { (at.format("%Y-%m-%d %H:%M UTC")) } " (" (at.with_timezone(&ev.timezone).format("%H:%M %Z")) "). " a href="/timetable" { "Back to now" } }
            }
            p.muted {
                "From " span.t { (hh_mm(from)) } " to " span.t { (hh_mm(to)) " UTC" } " · "
                span.t { (at.with_timezone(&ev.timezone).format("%A %-d %B, %H:%M %Z")) }
                @if let Some(tz) = tz { " · your time " span.t { (at.with_timezone(&tz).format("%H:%M %Z")) } }
                @else { " · " a href="/settings" { "show your own time zone" } }
            }
        }.into_string(),
    );
    let body = Direct(|out: &mut String| {
        out.push_str(&heading);
        html! {
            @if sessions.is_empty() { p { "No sessions in this window. " a href="/schedule" { "See the whole schedule." } } }
        }
        .render_to(out);
        for (title, list) in [
            ("Running now", &running),
            ("Coming up", &later),
            ("Just ended", &earlier),
        ] {
            if !list.is_empty() {
                html! { h2 { (title) } }.render_to(out);
                for &&(i, s) in list.iter() {
                    session_card(&state, &user, &heads[i], (i, s), at, now, &picks).render_to(out);
                }
            }
        }
    });
    page(&f, "Timetable", body).into_response()
}

pub async fn schedule(State(state): State<Arc<AppState>>, user: User) -> Markup {
    let now = Utc::now();
    let ev = &state.event;
    let picks = state
        .cache
        .picks(&state.store, user.ticket.id)
        .unwrap_or_default();
    let heads = state.fragments.heads(ev, user_tz(&user.ticket));
    let f = frame(&state, &user);
    let mut days: Vec<(chrono::NaiveDate, Vec<(usize, &Session)>)> = Vec::new();
    for (i, s) in ev.sessions.iter().enumerate() {
        let d = s.start.with_timezone(&ev.timezone).date_naive();
        match days.last_mut() {
            Some((day, list)) if *day == d => list.push((i, s)),
            _ => days.push((d, vec![(i, s)])),
        }
    }
    page(
        &f,
        "Schedule",
        html! {
            h1 { "Schedule" }
            p { a href="/schedule.ics" { "Download as .ics" } " · " a href="/my.ics" { "My selection as .ics" } " (" (picks.len()) " sessions) · " a href="/settings#calendar" { "Subscribe" } }
            @if ev.sessions.is_empty() { p { "The schedule is not published yet." } }
            @for (day, list) in &days {
                h2 { (day.format("%A %-d %B %Y")) }
                @for (i, s) in list { (session_card(&state, &user, &heads[*i], (*i, s), now, now, &picks)) }
            }
        },
    )
}

#[derive(Deserialize)]
pub struct PickForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    guid: String,
    #[serde(default)]
    picked: String,
}

pub async fn pick(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    user: User,
    Form(form): Form<PickForm>,
) -> Response {
    if let Err(r) = user.check_csrf(&form.csrf) {
        return r;
    }
    if !state.event.sessions.iter().any(|s| s.guid == form.guid) {
        return super::not_found("There is no such session.");
    }
    if let Err(e) = state
        .store
        .set_pick(user.ticket.id, &form.guid, form.picked == "1")
    {
        return super::internal_error("cannot store a pick", &e);
    }
    state.cache.forget_ticket(user.ticket.id);
    // Back to where the form was, at the session.
    let back = super::back_to(&headers, "/schedule");
    Redirect::to(&format!("{back}#s-{}", form.guid)).into_response()
}
