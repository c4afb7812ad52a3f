//! The staff room: staff-only and private rooms, the stage captures of
//! streamed rooms (start now, stop now, back to the schedule), and revoking
//! tickets.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use chrono::Utc;
use conference::RoomKind;
use maud::{html, Markup};
use serde::Deserialize;

use super::frame;
use super::welcome::rooms_table;
use crate::auth::User;
use crate::capture::api::decisions;
use crate::capture::schedule::Why;
use crate::state::AppState;
use crate::views::{self, page};

pub async fn staff(State(state): State<Arc<AppState>>, user: User) -> Response {
    if let Err(r) = user.require_staff() {
        return r;
    }
    let now = Utc::now();
    let f = frame(&state, &user);
    page(&f, "Staff room", html! {
        h1 { "Staff room" }
        p { "Only staff see this page and can enter these rooms. Staff join every room as moderators." }
        (rooms_table(&state, &user, now, |r| matches!(r.kind, RoomKind::Staff | RoomKind::Private)))
        p { a href="/status" { "Server and room status" } " · " a href="/staff/vote" { "Talk vote" } }
        (captures(&state, &user, now))
        h2 { "Revoke a ticket" }
        p.muted { "The ticket's logins end at once; its picks, calendar feed and talk votes are deleted." }
        form method="post" action="/staff/tickets/revoke" {
            input type="hidden" name="csrf" value=(user.csrf);
            label for="revoke-email" { "Email of the ticket" }
            input id="revoke-email" name="email" type="email" required;
            p { button type="submit" { "Revoke" } }
        }
    }).into_response()
}

#[derive(Deserialize)]
pub struct RevokeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
}

pub async fn revoke(
    State(state): State<Arc<AppState>>,
    user: User,
    Form(form): Form<RevokeForm>,
) -> Response {
    if let Err(r) = user.check_csrf(&form.csrf) {
        return r;
    }
    if let Err(r) = user.require_staff() {
        return r;
    }
    if crate::store::normalize_email(&form.email) == user.ticket.email {
        return (
            StatusCode::BAD_REQUEST,
            views::message_page("Not your own", "Staff cannot revoke their own ticket here."),
        )
            .into_response();
    }
    match state.store.revoke_ticket(&form.email) {
        Ok(Some(id)) => {
            state.cache.forget_ticket(id);
            tracing::info!(ticket = id, by = user.ticket.id, "ticket revoked");
            // The chat deactivates the ticket's Matrix user in its next pass: now.
            if let Some(chat) = &state.chat {
                chat.wake();
            }
            Redirect::to("/staff").into_response()
        }
        Ok(None) => super::not_found("There is no ticket for that email address."),
        Err(e) => super::internal_error("cannot revoke a ticket", &e),
    }
}

/// The stage captures: which streamed room is live and why, with the
/// buttons that override the schedule.
fn captures(state: &AppState, user: &User, now: chrono::DateTime<Utc>) -> Markup {
    let Some(capture) = &state.config.capture else {
        return html! {};
    };
    let list = match decisions(state, capture, now) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the capture overrides");
            return html! { p.error { "The stage captures cannot be shown (see the portal's log)." } };
        }
    };
    if list.is_empty() {
        return html! {};
    }
    let hm = |t: chrono::DateTime<Utc>| t.format("%H:%M UTC").to_string();
    html! {
        h2 { "Stage captures" }
        p.muted { "A streamed room's stage is captured from "
            (capture.margin_before.num_minutes()) " minutes before each session to "
            (capture.margin_after.num_minutes()) " minutes after it. Start or stop holds until the schedule next changes." }
        div.scroll { table {
            tr { th { "Room" } th { "Capture" } th { "Why" } th { "" } }
            @for (room, d) in &list {
                tr id=(format!("capture-{}", room.slug)) {
                    td { (room.name) }
                    td { @if d.live { span.live { "live" } } @else { span.muted { "off" } } }
                    td {
                        @match &d.why {
                            Why::Schedule => {
                                "schedule"
                                @if let Some(t) = d.next_change { " · changes " (hm(t)) }
                            }
                            Why::Override { until, .. } => {
                                "staff"
                                @if let Some(t) = until { " · until " (hm(*t)) }
                            }
                        }
                    }
                    td {
                        form.inline method="post" action="/staff/capture" {
                            input type="hidden" name="csrf" value=(user.csrf);
                            input type="hidden" name="room" value=(room.slug);
                            @if d.live {
                                button.quiet type="submit" name="action" value="stop" { "Stop now" }
                            } @else {
                                button.quiet type="submit" name="action" value="start" { "Start now" }
                            }
                            @if matches!(d.why, Why::Override { .. }) {
                                " " button.quiet type="submit" name="action" value="schedule" { "Back to schedule" }
                            }
                        }
                    }
                }
            }
        } }
    }
}

#[derive(Deserialize)]
pub struct CaptureForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    room: String,
    #[serde(default)]
    action: String,
}

/// `POST /staff/capture`: start now, stop now, or back to the schedule.
pub async fn capture(
    State(state): State<Arc<AppState>>,
    user: User,
    Form(form): Form<CaptureForm>,
) -> Response {
    if let Err(r) = user.check_csrf(&form.csrf) {
        return r;
    }
    if let Err(r) = user.require_staff() {
        return r;
    }
    let bad = |msg: String| {
        (
            StatusCode::BAD_REQUEST,
            views::message_page("Cannot change the capture", &msg),
        )
            .into_response()
    };
    if state.config.capture.is_none() {
        return bad("Stage capture is not configured on this portal.".to_owned());
    }
    if !crate::capture::schedule::captured_rooms(&state.event).any(|r| r.slug == form.room) {
        return bad(format!(
            "`{}` is not a streamed room that venue captures.",
            form.room
        ));
    }
    let done = match form.action.as_str() {
        "start" | "stop" => state.store.set_capture_override(
            &form.room,
            form.action == "start",
            Utc::now(),
            Some(user.ticket.id),
        ),
        "schedule" => state.store.clear_capture_override(&form.room).map(|_| ()),
        other => {
            return bad(format!(
                "The action must be start, stop or schedule, not `{other}`."
            ))
        }
    };
    match done {
        Ok(()) => {
            tracing::info!(room = %form.room, action = %form.action, by = user.ticket.id, "capture override");
            Redirect::to("/staff").into_response()
        }
        Err(e) => super::internal_error("cannot store a capture override", &e),
    }
}
