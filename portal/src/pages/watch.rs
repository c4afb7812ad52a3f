//! Watch: a streamed room's audience page. The stage (speakers, moderators)
//! meets in the room itself; everyone else plays its HLS stream here, from
//! one of the venue's stream edges, with the room's schedule and the chat.
//! The one page with a script: the browser's own HLS playback where it has
//! one (Safari, recent Chromium), else the vendored hls.js (pages/assets.rs);
//! without JavaScript the `<video src>` still plays natively, and the page
//! links the playlist for a player of one's own.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use conference::Room;
use maud::html;

use super::assets;
use super::welcome::stage_button;
use super::{frame, user_tz};
use crate::auth::{self, User};
use crate::rooms::access;
use crate::state::AppState;
use crate::views::{page, times};

/// The playlist of `room` for this ticket: the edges share the audience, each
/// ticket always on the same one (its cache then holds what it plays).
pub fn playlist(state: &AppState, room: &Room, ticket_id: i64) -> Option<String> {
    if let Some(external) = &room.stream {
        return Some(external.clone());
    }
    let urls = &state.config.stream_urls;
    if urls.is_empty() {
        return None;
    }
    let i = ticket_id.unsigned_abs() as usize % urls.len();
    Some(format!("{}/{}.m3u8", urls[i], room.slug))
}

/// `scheme://host[:port]` of a URL, for the page's media-src.
fn origin(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let end = rest
        .find('/')
        .map_or(url.len(), |i| url.len() - rest.len() + i);
    Some(&url[..end])
}

pub async fn watch(
    State(state): State<Arc<AppState>>,
    Path(slug): Path<String>,
    user: User,
) -> Response {
    let now = Utc::now();
    let Some(room) = state.event.rooms.iter().find(|r| r.slug == slug) else {
        return super::not_found("There is no such room.");
    };
    if !room.streamed() {
        return super::not_found("This room is not streamed: join it from the welcome page.");
    }
    let Some(on_stage) = access(&state, &user.ticket, room, now) else {
        return auth::forbidden("This room is not open to you now.");
    };
    let Some(url) = playlist(&state, room, user.ticket.id) else {
        return super::unavailable(
            "Not configured",
            &format!(
                "The stream of {} is not configured on this portal.",
                room.name
            ),
        );
    };
    let ev = &state.event;
    let tz = user_tz(&user.ticket);
    let sessions: Vec<_> = ev
        .sessions
        .iter()
        .filter(|s| s.room == room.name && s.end > now)
        .take(8)
        .collect();
    let hls = url.ends_with(".m3u8");
    let chat = crate::chat::pages::panel(&state, &user, room).await;
    let on_now = crate::rooms::joinable_sessions(&state, room, now)
        .next()
        .filter(|_| state.chat.is_some());
    let f = frame(&state, &user);
    let body = page(
        &f,
        &format!("Watch {}", room.name),
        html! {
            h1 { (room.name) }
            div.watch { div.player {
            @if hls {
                video #stream controls autoplay muted playsinline width="100%" src=(url) data-hls=(url) {}
                p.muted { "No picture? Your browser may not play HLS itself: open "
                    a href=(url) { "the stream" } " in a player such as VLC or mpv." }
            } @else {
                p { a href=(url) { "Watch the stream" } }
            }
            @if on_stage {
                p { "You are on the stage: " (stage_button(&user, room)) }
            }
            } (chat) }
            // The stage answers from the top questions of the session on now.
            @if on_stage { @if let Some(s) = on_now { (crate::chat::pages::top_block(&state, room, s)) } }
            @if let Some(s) = on_now { (crate::chat::pages::qa_block(&state, &user, s)) }
            h2 { "In this room" }
            @if sessions.is_empty() { p.muted { "Nothing more is scheduled here." } }
            ul {
                @for s in &sessions {
                    li { strong { (s.title) } " — " (times(s.start, s.end, ev.timezone, tz))
                        @if !s.persons.is_empty() { " · " (s.persons.join(", ")) } }
                }
            }
            @if state.chat.is_none() {
                @if let Some(chat) = &ev.chat { p { a href=(chat) { "Chat" } " — questions for the speakers go here." } }
            }
            @if hls {
                script src=(assets::hls_js_path()) defer {}
                script src=(assets::WATCH_JS_PATH) defer {}
            }
        },
    );
    let csp = watch_csp(if hls { origin(&url) } else { None });
    let mut resp = (StatusCode::OK, body).into_response();
    if let Ok(v) = HeaderValue::from_str(&csp) {
        resp.headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, v);
    }
    resp
}

/// The Watch page's CSP: scripts from the portal itself (the player), the
/// stream's origin for the playlist and segments (hls.js fetches them, MSE
/// plays them from a blob: URL); nothing else.
fn watch_csp(stream: Option<&str>) -> String {
    match stream {
        Some(o) => format!(
            "default-src 'none'; script-src 'self'; connect-src {o}; media-src {o} blob:; style-src 'unsafe-inline'; img-src 'self'; form-action 'self' https: http:; frame-ancestors 'none'"
        ),
        None => "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self' https: http:; frame-ancestors 'none'".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::{origin, watch_csp};

    #[test]
    fn scripts_only_from_the_portal_and_media_only_from_the_stream() {
        let csp = watch_csp(Some("https://edge.example.org"));
        assert!(csp.contains("script-src 'self';"), "{csp}");
        assert!(
            csp.contains("connect-src https://edge.example.org;"),
            "{csp}"
        );
        assert!(
            csp.contains("media-src https://edge.example.org blob:;"),
            "{csp}"
        );
        assert!(!csp.contains("unsafe-eval") && !csp.contains("script-src 'unsafe-inline'"));
        // An external stream (a link, no player): no script at all.
        assert!(!watch_csp(None).contains("script-src"));
    }

    #[test]
    fn media_src_is_the_streams_origin_only() {
        assert_eq!(
            origin("https://lpc-2020-edge-1.lpc.example.org/hls/hall.m3u8"),
            Some("https://lpc-2020-edge-1.lpc.example.org")
        );
        assert_eq!(
            origin("http://127.0.0.1:8080/hls/x.m3u8"),
            Some("http://127.0.0.1:8080")
        );
        assert_eq!(
            origin("https://edge.example.org"),
            Some("https://edge.example.org")
        );
        assert_eq!(origin("not a url"), None);
    }
}
