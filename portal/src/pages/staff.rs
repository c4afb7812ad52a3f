//! The staff room: staff-only and private rooms, and revoking tickets.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use chrono::Utc;
use conference::RoomKind;
use maud::html;
use serde::Deserialize;

use super::frame;
use super::welcome::rooms_table;
use crate::auth::User;
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
            Redirect::to("/staff").into_response()
        }
        Ok(None) => super::not_found("There is no ticket for that email address."),
        Err(e) => super::internal_error("cannot revoke a ticket", &e),
    }
}
