//! The capture hosts' API, authenticated by a shared secret
//! (`Authorization: Bearer <secret>`, `[capture] secret_file`):
//! - `GET /capture/api/rooms`: every room venue captures, whether it should
//!   be live now, why, and where to push it;
//! - `POST /capture/api/rooms/{slug}/join`: a fresh join URL for the
//!   capture's browser (a listen-only viewer of the stage), only while the
//!   room should be live. BBB meetings are opened first when needed.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use conference::{Backend, Room};
use serde::{Deserialize, Serialize};

use super::schedule::{captured_rooms, decide, windows, Decision, Why};
use crate::auth;
use crate::config::Capture;
use crate::state::AppState;
use conference::protocol::constant_time_eq;

/// One room in `GET /capture/api/rooms`.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq, Clone)]
pub struct RoomState {
    pub slug: String,
    pub name: String,
    pub backend: String,
    pub live: bool,
    /// `schedule` or `override`.
    pub why: String,
    /// Until when a staff override holds.
    pub until: Option<DateTime<Utc>>,
    /// When the schedule alone would next switch the capture.
    pub next_change: Option<DateTime<Utc>>,
    pub rtmp_url: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Rooms {
    pub rooms: Vec<RoomState>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Join {
    pub join_url: String,
}

/// Every captured room and its decision at `now`.
pub fn decisions<'a>(
    state: &'a AppState,
    capture: &Capture,
    now: DateTime<Utc>,
) -> anyhow::Result<Vec<(&'a Room, Decision)>> {
    let overrides = state.store.capture_overrides()?;
    Ok(captured_rooms(&state.event)
        .map(|room| {
            let w = windows(
                &state.event,
                room,
                capture.margin_before,
                capture.margin_after,
            );
            let o = overrides.iter().find(|o| o.room == room.slug);
            (room, decide(&w, now, o))
        })
        .collect())
}

fn error(status: StatusCode, msg: &str) -> Response {
    (status, Json(serde_json::json!({ "error": msg }))).into_response()
}

/// The capture configuration if the request carries its secret.
#[allow(clippy::result_large_err)]
fn authorize<'a>(state: &'a AppState, headers: &HeaderMap) -> Result<&'a Capture, Response> {
    let Some(capture) = &state.config.capture else {
        return Err(error(
            StatusCode::NOT_FOUND,
            "stage capture is not configured on this portal ([capture] in its config)",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(g) if constant_time_eq(g.as_bytes(), capture.secret.as_bytes()) => Ok(capture),
        _ => {
            tracing::warn!(
                presented = given.is_some(),
                "capture API call with a missing or wrong secret"
            );
            let mut r = error(
                StatusCode::UNAUTHORIZED,
                "the capture API needs `Authorization: Bearer <the capture secret>`",
            );
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            Err(r)
        }
    }
}

pub fn rtmp_url(capture: &Capture, room: &Room) -> String {
    format!("{}/{}", capture.rtmp_url, room.slug)
}

/// `GET /capture/api/rooms`.
pub async fn rooms(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let capture = match authorize(&state, &headers) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let list = match decisions(&state, capture, Utc::now()) {
        Ok(l) => l,
        Err(e) => return crate::pages::internal_error("cannot read the capture overrides", &e),
    };
    let rooms = list
        .into_iter()
        .map(|(room, d)| {
            let (why, until) = match d.why {
                Why::Schedule => ("schedule", None),
                Why::Override { until, .. } => ("override", until),
            };
            RoomState {
                slug: room.slug.clone(),
                name: room.name.clone(),
                backend: match room.backend {
                    Backend::Bbb => "bbb",
                    Backend::Jitsi => "jitsi",
                }
                .to_owned(),
                live: d.live,
                why: why.to_owned(),
                until,
                next_change: d.next_change,
                rtmp_url: rtmp_url(capture, room),
            }
        })
        .collect();
    Json(Rooms { rooms }).into_response()
}

/// `POST /capture/api/rooms/{slug}/join`.
pub async fn join(
    State(state): State<Arc<AppState>>,
    Path(slug): Path<String>,
    headers: HeaderMap,
) -> Response {
    let capture = match authorize(&state, &headers) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let now = Utc::now();
    let list = match decisions(&state, capture, now) {
        Ok(l) => l,
        Err(e) => return crate::pages::internal_error("cannot read the capture overrides", &e),
    };
    let Some((room, d)) = list.into_iter().find(|(r, _)| r.slug == slug) else {
        return error(
            StatusCode::NOT_FOUND,
            &format!("`{slug}` is not a room venue captures (not streamed, or streamed elsewhere)"),
        );
    };
    if !d.live {
        return error(
            StatusCode::CONFLICT,
            &format!("{} should not be live now", room.name),
        );
    }
    match join_url(&state, room, now).await {
        Ok(url) => {
            tracing::info!(room = %room.slug, "capture join URL issued");
            Json(Join { join_url: url }).into_response()
        }
        Err(e) => {
            tracing::warn!(room = %room.slug, error = %e, "no capture join URL");
            error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string())
        }
    }
}

/// The capture's way into the stage: a listen-only viewer without a webcam
/// or microphone, the meeting's chrome hidden where the client allows it.
/// The BBB userdata names are from docs/stage-capture.md (their effect on
/// BBB 3.0 is unverified); on Jitsi the `config.iAmRecorder` fragment is
/// what Jibri itself uses.
async fn join_url(state: &AppState, room: &Room, now: DateTime<Utc>) -> anyhow::Result<String> {
    let id = state.meeting_id(room);
    match room.backend {
        Backend::Bbb => {
            if !state.cluster.configured() {
                anyhow::bail!("no BigBlueButton server is configured on this portal");
            }
            let Some(server) = state.cluster.place(&id) else {
                anyhow::bail!("no BigBlueButton server answers right now");
            };
            if !state.cluster.has_people(&server, &id) {
                let logout = state.config.public_url.clone().unwrap_or_default() + "/";
                crate::pages::join::open_bbb_meeting(state, room, &server, &logout).await?;
            }
            let att_pw = &auth::sign(&state.config.session_key, "bbb-attendee", &id)[..20];
            let params: Vec<(&str, &str)> = vec![
                ("fullName", "Stream"),
                ("meetingID", &id),
                ("role", "VIEWER"),
                ("password", att_pw),
                ("userID", "venue-capture"),
                ("redirect", "true"),
                ("excludeFromDashboard", "true"),
                ("userdata-bbb_auto_join_audio", "true"),
                ("userdata-bbb_listen_only_mode", "true"),
                ("userdata-bbb_force_listen_only", "true"),
                ("userdata-bbb_skip_check_audio", "true"),
                ("userdata-bbb_auto_share_webcam", "false"),
                ("userdata-bbb_hide_nav_bar", "true"),
                ("userdata-bbb_hide_actions_bar", "true"),
                ("userdata-bbb_show_public_chat_on_login", "false"),
                ("userdata-bbb_show_participants_on_login", "false"),
            ];
            Ok(state.cluster.join_url(&server, &params))
        }
        Backend::Jitsi => {
            let Some(j) = &state.config.jitsi else {
                anyhow::bail!("Jitsi is not configured on this portal");
            };
            let token = conference::protocol::jwt::jitsi_token(
                j.secret.as_bytes(),
                &conference::protocol::jwt::JitsiGrant {
                    app_id: &j.app_id,
                    domain: &j.domain,
                    room: &id,
                    user: conference::protocol::jwt::JitsiUser {
                        id: "venue-capture".to_owned(),
                        name: "Stream".to_owned(),
                        email: String::new(),
                        moderator: false,
                    },
                    now: now.timestamp(),
                    ttl: j.token_ttl,
                },
            );
            Ok(format!(
                "https://{}/{id}?jwt={token}#config.iAmRecorder=true&config.startWithAudioMuted=true\
                 &config.startWithVideoMuted=true&config.prejoinConfig.enabled=false\
                 &config.disableInitialGUM=true&config.p2p.enabled=false",
                j.domain
            ))
        }
    }
}
