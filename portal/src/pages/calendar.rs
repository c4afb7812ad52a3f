//! Calendar files: the whole schedule and the personal selection, with the
//! session cookie (downloads) or without it (subscriptions: the personal
//! feed by its secret URL, the schedule when the event makes it public).

use std::sync::Arc;

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};

use crate::auth::User;
use crate::state::AppState;
use crate::store::Ticket;

fn ics_response(body: String, filename: &str) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                "text/calendar; charset=utf-8".to_owned(),
            ),
            (
                header::CONTENT_DISPOSITION,
                format!("inline; filename=\"{filename}\""),
            ),
        ],
        body,
    )
        .into_response()
}

/// `/schedule.ics`: public when `[portal] public_schedule = true`, else
/// for logged-in ticket holders.
pub async fn schedule_ics(State(state): State<Arc<AppState>>, mut parts: Parts) -> Response {
    if !state.event.portal.public_schedule {
        if let Err(r) = User::from_request_parts(&mut parts, &state).await {
            return r;
        }
    }
    let ev = &state.event;
    let body = crate::ics::calendar(
        ev,
        &ev.name,
        ev.sessions.iter(),
        &state.base_url(&parts.headers),
    );
    ics_response(body, &format!("{}.ics", ev.id))
}

fn personal(state: &AppState, headers: &HeaderMap, ticket: &Ticket) -> Response {
    let ev = &state.event;
    let picks = match state.store.picks(ticket.id) {
        Ok(p) => p,
        Err(e) => return super::internal_error("cannot read picks", &e),
    };
    let body = crate::ics::calendar(
        ev,
        &format!("{} (my selection)", ev.name),
        ev.sessions.iter().filter(|s| picks.contains(&s.guid)),
        &state.base_url(headers),
    );
    ics_response(body, &format!("{}-mine.ics", ev.id))
}

pub async fn my_ics(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    user: User,
) -> Response {
    personal(&state, &headers, &user.ticket)
}

/// `/feeds/TOKEN/my.ics`: the personal selection without a session.
pub async fn feed(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Response {
    match crate::feeds::owner(&state, &token) {
        Ok(Some(ticket)) => personal(&state, &headers, &ticket),
        Ok(None) => {
            super::not_found("There is no such calendar feed. Its owner may have made a new one.")
        }
        Err(e) => super::internal_error("feed lookup failed", &e),
    }
}
