//! The attendee's settings: their time zone and their calendar feed URL.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use chrono_tz::Tz;
use maud::html;
use serde::Deserialize;

use super::{frame, CsrfForm};
use crate::auth::User;
use crate::state::AppState;
use crate::views::{self, page, post_button};

pub async fn settings(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    user: User,
) -> Response {
    let nonce = match state.store.feed_nonce(user.ticket.id) {
        Ok(n) => n,
        Err(e) => return super::internal_error("cannot read the feed nonce", &e),
    };
    let base = state.base_url(&headers);
    let feed = format!(
        "{base}{}",
        crate::feeds::path(&state, user.ticket.id, &nonce)
    );
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
            h2 id="calendar" { "Calendar subscription" }
            p { "Subscribe to this address in your calendar app to see your selection (☆) there; it follows your changes. "
                "Anyone who has the address can read your selection, so keep it to yourself. A new address makes the old one stop working." }
            p { input id="feed-url" type="text" readonly value=(feed); }
            p { (post_button("/settings/feed", &user.csrf, "Make a new address", Some("quiet"))) }
            @if state.event.portal.public_schedule {
                p.muted { "The whole schedule: " a href="/schedule.ics" { (base) "/schedule.ics" } " (no login needed)." }
            }
            (crate::chat::pages::settings_section(&state, &user))
            p.muted { "Signed in as " (user.ticket.email) @if user.ticket.is_staff() { " (staff)" } "." }
        },
    )
    .into_response()
}

#[derive(Deserialize)]
pub struct TzForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    tz: String,
}

pub async fn save(
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
        return super::internal_error("cannot store the time zone", &e);
    }
    state.cache.forget_ticket(user.ticket.id);
    Redirect::to("/timetable").into_response()
}

/// A new feed URL; the old one answers 404 from now on.
pub async fn regenerate_feed(
    State(state): State<Arc<AppState>>,
    user: User,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(r) = user.check_csrf(&form.csrf) {
        return r;
    }
    if let Err(e) = state.store.regenerate_feed(user.ticket.id) {
        return super::internal_error("cannot regenerate the feed", &e);
    }
    tracing::info!(ticket = user.ticket.id, "new calendar feed address");
    Redirect::to("/settings#calendar").into_response()
}
