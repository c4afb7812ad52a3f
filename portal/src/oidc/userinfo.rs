//! The userinfo endpoint: the profile claims for a Bearer access token. A
//! revoked ticket's tokens are gone with it (ON DELETE CASCADE), so its next
//! request fails.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::claims::Profile;
use super::{not_configured, now};
use crate::state::AppState;

/// RFC 6750, 3.1.
fn invalid_token(description: &'static str) -> Response {
    let mut resp = (StatusCode::UNAUTHORIZED, description).into_response();
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer error=\"invalid_token\""),
    );
    resp
}

pub async fn userinfo(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if state.config.oidc.is_none() {
        return not_configured();
    }
    let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
    else {
        let mut resp = (
            StatusCode::UNAUTHORIZED,
            "a Bearer access token is required\n",
        )
            .into_response();
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return resp;
    };
    let found = match state.store.oidc_token(token, now()) {
        Ok(f) => f,
        Err(e) => return crate::pages::internal_error("access token lookup failed", &e),
    };
    let Some((ticket, scope)) = found else {
        return invalid_token("unknown, expired or revoked access token\n");
    };
    match state.store.oidc_subject(ticket.id) {
        Ok(sub) => Json(Profile::new(sub, &ticket, &scope)).into_response(),
        Err(e) => crate::pages::internal_error("subject lookup failed", &e),
    }
}
