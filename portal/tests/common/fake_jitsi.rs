//! A fake of the two Jitsi statistics endpoints the portal reads, answering
//! as they do: prosody's mod_muc_size (`GET /room-size?room=R&domain=D` →
//! `{"participants": N}`, 404 for a room that does not exist) and a
//! videobridge's private REST API (`GET /colibri/stats`).
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

#[derive(Default)]
pub struct FakeJitsiState {
    /// People per room name (rooms absent here do not exist).
    pub rooms: HashMap<String, u64>,
    /// The domain the portal must ask for.
    pub domain: String,
    pub conferences: u64,
    pub participants: u64,
    pub stress_level: f64,
    pub calls: u64,
    pub down: bool,
}

#[derive(Clone)]
pub struct FakeJitsi {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<FakeJitsiState>>,
}

impl FakeJitsi {
    pub async fn start(domain: &str) -> FakeJitsi {
        let state = Arc::new(Mutex::new(FakeJitsiState {
            domain: domain.to_owned(),
            ..Default::default()
        }));
        let app = Router::new()
            .route("/room-size", get(room_size))
            .route("/colibri/stats", get(stats))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeJitsi { addr, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn set_room(&self, room: &str, people: u64) {
        self.state
            .lock()
            .unwrap()
            .rooms
            .insert(room.to_owned(), people);
    }

    pub fn set_bridge(&self, conferences: u64, participants: u64, stress: f64) {
        let mut s = self.state.lock().unwrap();
        s.conferences = conferences;
        s.participants = participants;
        s.stress_level = stress;
    }

    pub fn calls(&self) -> u64 {
        self.state.lock().unwrap().calls
    }
}

async fn room_size(
    State(state): State<Arc<Mutex<FakeJitsiState>>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut s = state.lock().unwrap();
    s.calls += 1;
    if s.down {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    if q.get("domain") != Some(&s.domain) {
        return (StatusCode::BAD_REQUEST, "domain does not match").into_response();
    }
    match q.get("room").and_then(|r| s.rooms.get(r)) {
        Some(n) => Json(serde_json::json!({ "participants": n })).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn stats(State(state): State<Arc<Mutex<FakeJitsiState>>>) -> Response {
    let mut s = state.lock().unwrap();
    s.calls += 1;
    if s.down {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    // A subset of a real answer's fields, with some the portal ignores.
    Json(serde_json::json!({
        "inactive_endpoints": 0, "endpoints_sending_audio": 1, "endpoints_sending_video": 2,
        "conferences": s.conferences, "participants": s.participants,
        "largest_conference": s.participants, "stress_level": s.stress_level,
        "current_timestamp": "2026-11-23 20:00:00.000", "graceful_shutdown": false, "version": "2.3.100",
    }))
    .into_response()
}
