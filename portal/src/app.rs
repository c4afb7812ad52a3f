//! The router: every path and the page module that answers it, and the
//! headers every answer gets.

use std::sync::Arc;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::auth::User;
use crate::chat::pages as chat;
use crate::pages::{
    assets, calendar, join, login, settings, staff, status, timetable, turn, vote, vote_results,
    watch, welcome,
};
use crate::state::AppState;
use crate::views;

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/login", get(login::form).post(login::login))
        .route("/logout", post(login::logout))
        .route("/", get(welcome::welcome))
        .route("/timetable", get(timetable::timetable))
        .route("/schedule", get(timetable::schedule))
        .route("/picks", post(timetable::pick))
        .route("/schedule.ics", get(calendar::schedule_ics))
        .route("/my.ics", get(calendar::my_ics))
        .route("/feeds/{token}/my.ics", get(calendar::feed))
        .route("/settings", get(settings::settings).post(settings::save))
        .route("/settings/feed", post(settings::regenerate_feed))
        .route("/rooms/{slug}/join", post(join::join))
        .route("/rooms/{slug}/watch", get(watch::watch))
        .route("/rooms/{slug}/chat", post(chat::post))
        .route(
            "/rooms/{slug}/questions",
            get(chat::questions).post(chat::ask),
        )
        .route("/rooms/{slug}/questions/{id}/vote", post(chat::upvote))
        .route("/directory", get(chat::directory))
        .route("/settings/directory", post(chat::set_listed))
        .route("/assets/{version}/hls.light.min.js", get(assets::hls_js))
        .route(assets::WATCH_JS_PATH, get(assets::watch_js))
        .route("/vote", get(vote::show).post(vote::cast))
        .route("/staff", get(staff::staff))
        .route("/staff/tickets/revoke", post(staff::revoke))
        .route(
            "/staff/vote",
            get(vote_results::show).post(vote_results::switch),
        )
        .route("/staff/vote/results.csv", get(vote_results::csv))
        .route("/staff/vote/results.json", get(vote_results::json))
        .route("/status", get(status::status))
        .route("/staff/capture", post(staff::capture))
        .route("/capture/api/rooms", get(crate::capture::api::rooms))
        .route(
            "/capture/api/rooms/{slug}/join",
            post(crate::capture::api::join),
        )
        .route("/pool/api/servers", get(crate::pool::api::servers))
        .route("/turn", get(turn::turn))
        .merge(crate::oidc::routes())
        .fallback(not_found)
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

async fn security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    // A page that plays media (watch) sets its own, as strict but for its stream.
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self' https: http:; frame-ancestors 'none'"),
        );
    }
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
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
