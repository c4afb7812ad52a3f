//! `GET /pool/api/servers`: what the agent needs to decide that a draining
//! server is empty, from the pollers' cache (never a call to BigBlueButton).
//! Authenticated like the capture API, with its own shared secret
//! (`Authorization: Bearer <secret>`, `pool_api_secret_file`).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use conference::protocol::constant_time_eq;
use serde::{Deserialize, Serialize};

use crate::bbb::Health;
use crate::state::AppState;

/// One server of the pool.
#[derive(Debug, Serialize, Deserialize, Clone, PartialEq, Eq)]
pub struct Server {
    pub name: String,
    /// `static` (the portal's configuration) or `pool` (the pool file).
    pub source: String,
    /// `up`, `down` or `unknown` (not polled yet).
    pub state: String,
    pub up: bool,
    pub draining: bool,
    pub draining_since: Option<DateTime<Utc>>,
    /// Meetings and people in them, as the last poll saw them.
    pub meetings: usize,
    pub participants: u64,
    /// Meetings the portal opened there that no poll has listed yet.
    pub unconfirmed: usize,
    /// Each meeting of the last poll, for the agent's per-room load and
    /// peaks (no names of people).
    #[serde(default)]
    pub rooms: Vec<MeetingLoad>,
    /// Draining, up, and a poll sent after the drain began found it empty
    /// (meetings = unconfirmed = 0): the agent may release it.
    pub drained: bool,
    pub last_answer: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

/// One meeting's counts, as getMeetings gave them.
#[derive(Debug, Serialize, Deserialize, Clone, PartialEq, Eq)]
pub struct MeetingLoad {
    pub id: String,
    pub participants: u64,
    pub listeners: u64,
    pub video: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Servers {
    /// The pool file, if configured.
    pub pool_file: Option<String>,
    /// `updated` of the pool file in force: the agent sees that its last
    /// write was taken.
    pub updated: Option<DateTime<Utc>>,
    pub applied_at: Option<DateTime<Utc>>,
    /// Why the latest version of the pool file was refused, if it was.
    pub error: Option<String>,
    pub poll_interval_seconds: f64,
    pub servers: Vec<Server>,
}

fn error(status: StatusCode, msg: &str) -> Response {
    (status, Json(serde_json::json!({ "error": msg }))).into_response()
}

/// `GET /pool/api/servers`.
pub async fn servers(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let Some(secret) = &state.config.pool_api_secret else {
        return error(
            StatusCode::NOT_FOUND,
            "the pool API is not configured on this portal (pool_api_secret_file in its config)",
        );
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !given.is_some_and(|g| constant_time_eq(g.as_bytes(), secret.as_bytes())) {
        tracing::warn!(
            presented = given.is_some(),
            "pool API call with a missing or wrong secret"
        );
        let mut r = error(
            StatusCode::UNAUTHORIZED,
            "the pool API needs `Authorization: Bearer <the pool API secret>`",
        );
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    }
    let pool = state.cluster.pool_status();
    let servers = state.cluster.states();
    let servers = servers
        .iter()
        .map(|s| Server {
            name: s.name.clone(),
            source: if s.pooled { "pool" } else { "static" }.to_owned(),
            state: match s.health {
                Health::Up => "up",
                Health::Down => "down",
                Health::Unknown => "unknown",
            }
            .to_owned(),
            up: s.health == Health::Up,
            draining: s.draining,
            draining_since: s.draining_since,
            meetings: s.meetings.len(),
            participants: s.participants(),
            unconfirmed: state.cluster.unconfirmed(s),
            rooms: s
                .meetings
                .iter()
                .map(|m| MeetingLoad {
                    id: m.id.clone(),
                    participants: m.participants,
                    listeners: m.listeners,
                    video: m.video,
                })
                .collect(),
            drained: state.cluster.drained(s),
            last_answer: s.last_answer,
            last_error: s.last_error.clone(),
        })
        .collect();
    Json(Servers {
        pool_file: pool.path.map(|p| p.display().to_string()),
        updated: pool.updated,
        applied_at: pool.applied_at,
        error: pool.error,
        poll_interval_seconds: state.config.poll_interval.as_secs_f64(),
        servers,
    })
    .into_response()
}
