//! One module per page (or group of pages on one subject). Each exposes its
//! handlers; `app::router` wires them to paths.

pub mod assets;
pub mod calendar;
pub mod join;
pub mod login;
pub mod settings;
pub mod staff;
pub mod status;
pub mod timetable;
pub mod turn;
pub mod vote;
pub mod vote_results;
pub mod watch;
pub mod welcome;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono_tz::Tz;
use serde::Deserialize;

use crate::auth::User;
use crate::state::AppState;
use crate::store::Ticket;
use crate::views::{self, Frame};

pub fn frame<'a>(state: &'a AppState, user: &'a User) -> Frame<'a> {
    Frame {
        chrome: &state.fragments.chrome,
        user: Some((&user.ticket, &user.csrf)),
    }
}

pub fn user_tz(ticket: &Ticket) -> Option<Tz> {
    ticket.tz.as_deref().and_then(|t| t.parse().ok())
}

/// A form with only its CSRF token.
#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}

pub fn not_found(what: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        views::message_page("Not found", what),
    )
        .into_response()
}

pub fn unavailable(title: &str, msg: &str) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        views::message_page(title, msg),
    )
        .into_response()
}

pub fn internal_error(what: &str, e: &anyhow::Error) -> Response {
    tracing::error!(error = %e, "{what}");
    StatusCode::INTERNAL_SERVER_ERROR.into_response()
}

/// A local path to return to: `next` if it stays inside the portal, else `/`.
pub fn safe_next(next: Option<&str>) -> String {
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

/// The path of the page a form was on (from `Referer`), else `fallback`.
pub fn back_to(headers: &axum::http::HeaderMap, fallback: &str) -> String {
    let back = headers
        .get(axum::http::header::REFERER)
        .and_then(|r| r.to_str().ok())
        .and_then(|r| {
            r.find("://")
                .and_then(|i| r[i + 3..].find('/').map(|j| r[i + 3 + j..].to_owned()))
        })
        .map(|p| p.split('#').next().unwrap_or("/").to_owned())
        .unwrap_or_else(|| fallback.to_owned());
    safe_next(Some(&back))
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
