//! TURN REST credentials for the ticket holder (coturn's static-auth-secret scheme).

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;

use super::unavailable;
use crate::auth::User;
use crate::state::AppState;

pub async fn turn(State(state): State<Arc<AppState>>, user: User) -> Response {
    let Some(t) = &state.config.turn else {
        return unavailable(
            "Not configured",
            "No TURN server is configured on this portal.",
        );
    };
    let expires = Utc::now().timestamp() + t.ttl;
    let c = conference::protocol::turn::credentials(
        &t.secret,
        &format!("venue-{}", user.ticket.id),
        expires,
    );
    Json(serde_json::json!({
        "username": c.username,
        "password": c.password,
        "credential": c.password,
        "ttl": t.ttl,
        "uris": t.uris,
    }))
    .into_response()
}
