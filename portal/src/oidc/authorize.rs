//! The authorization endpoint (authorization code flow, PKCE S256 required).
//! A client or redirect_uri that is not the registered one gets an error
//! page, never a redirect; other errors go back to the client as
//! `error=…&state=…`. A ticket holder who is not logged in goes through the
//! ticket login and comes back here.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::{Deserialize, Serialize};

use super::config::{Oidc, CODE_TTL_SECONDS};
use super::store::NewCode;
use super::{not_configured, now, AUTHORIZE_PATH};
use crate::auth;
use crate::state::AppState;
use conference::protocol::bbb::encode_component;

#[derive(Deserialize, Serialize, Default)]
pub struct AuthRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    response_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    redirect_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code_challenge: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code_challenge_method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt: Option<String>,
}

pub async fn authorize_get(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(req): Query<AuthRequest>,
) -> Response {
    authorize(&state, &headers, req)
}

/// OIDC Core 3.1.2.1: the endpoint takes POST too, with the same parameters.
pub async fn authorize_post(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Form(req): Form<AuthRequest>,
) -> Response {
    authorize(&state, &headers, req)
}

fn bad_request(msg: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        crate::views::message_page("Login for the chat failed", msg),
    )
        .into_response()
}

/// Back to the client with an error (RFC 6749, 4.1.2.1).
fn error_to_client(o: &Oidc, state: Option<&str>, error: &str, description: &str) -> Response {
    let mut url = o.redirect_uri.clone();
    url.push(if url.contains('?') { '&' } else { '?' });
    url.push_str(&format!(
        "error={error}&error_description={}",
        encode_component(description)
    ));
    if let Some(s) = state {
        url.push_str(&format!("&state={}", encode_component(s)));
    }
    url.push_str(&format!("&iss={}", encode_component(&o.issuer)));
    Redirect::to(&url).into_response()
}

/// RFC 7636, 4.2: a S256 challenge is 43 base64url characters.
fn valid_challenge(c: &str) -> bool {
    c.len() == 43
        && c.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn authorize(state: &AppState, headers: &HeaderMap, req: AuthRequest) -> Response {
    let Some(o) = &state.config.oidc else {
        return not_configured();
    };
    if req.client_id.as_deref() != Some(o.client_id.as_str()) {
        tracing::warn!("OIDC authorization request for an unknown client_id");
        return bad_request("The application that sent you here is not registered with this portal (unknown client_id).");
    }
    if req.redirect_uri.as_deref() != Some(o.redirect_uri.as_str()) {
        tracing::warn!("OIDC authorization request with a redirect_uri that is not registered");
        return bad_request("The application that sent you here asked to return to an address that is not registered with this portal (redirect_uri).");
    }
    let st = req.state.as_deref();
    if req.response_type.as_deref() != Some("code") {
        return error_to_client(
            o,
            st,
            "unsupported_response_type",
            "only response_type=code is supported",
        );
    }
    let scope = req.scope.as_deref().unwrap_or("");
    if !scope.split(' ').any(|s| s == "openid") {
        return error_to_client(o, st, "invalid_scope", "scope must include openid");
    }
    if req.code_challenge_method.as_deref() != Some("S256") {
        return error_to_client(
            o,
            st,
            "invalid_request",
            "PKCE is required: code_challenge_method=S256",
        );
    }
    let challenge = req.code_challenge.as_deref().unwrap_or("");
    if !valid_challenge(challenge) {
        return error_to_client(
            o,
            st,
            "invalid_request",
            "code_challenge must be 43 base64url characters (S256)",
        );
    }
    if req.nonce.as_deref().is_some_and(|n| n.len() > 512)
        || st.is_some_and(|s| s.len() > 2048)
        || scope.len() > 512
    {
        return error_to_client(o, st, "invalid_request", "nonce, state or scope too long");
    }
    // The database, not the 2-second cache: a revoked ticket gets no code.
    let ticket = auth::cookie(headers, auth::SESSION_COOKIE)
        .and_then(|v| auth::session_token(&state.config.session_key, v))
        .map(|token| state.store.session(token));
    let ticket = match ticket {
        Some(Ok(t)) => t,
        Some(Err(e)) => return crate::pages::internal_error("session lookup failed", &e),
        None => None,
    };
    let Some(ticket) = ticket else {
        if req
            .prompt
            .as_deref()
            .is_some_and(|p| p.split(' ').any(|p| p == "none"))
        {
            return error_to_client(o, st, "login_required", "not logged in to the portal");
        }
        let again = query_again(&req);
        let next = format!("{AUTHORIZE_PATH}?{again}");
        return Redirect::to(&format!("/login?next={}", encode_component(&next))).into_response();
    };
    let code = crate::auth::new_token();
    let issued = now();
    let stored = state.store.oidc_insert_code(
        &code,
        &NewCode {
            ticket_id: ticket.id,
            client_id: &o.client_id,
            redirect_uri: &o.redirect_uri,
            code_challenge: challenge,
            nonce: req.nonce.as_deref(),
            scope,
            issued,
            expires: issued + CODE_TTL_SECONDS,
        },
    );
    if let Err(e) = stored {
        return crate::pages::internal_error("cannot store the authorization code", &e);
    }
    tracing::info!(ticket = ticket.id, "OIDC authorization code issued");
    let mut url = o.redirect_uri.clone();
    url.push(if url.contains('?') { '&' } else { '?' });
    url.push_str(&format!("code={code}"));
    if let Some(s) = st {
        url.push_str(&format!("&state={}", encode_component(s)));
    }
    // RFC 9207: the client can check who answered.
    url.push_str(&format!("&iss={}", encode_component(&o.issuer)));
    Redirect::to(&url).into_response()
}

/// The request again as a query string, for the way back from the login.
fn query_again(req: &AuthRequest) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    let v = serde_json::to_value(req).unwrap_or_default();
    if let Some(m) = v.as_object() {
        for (k, v) in m {
            if let Some(v) = v.as_str() {
                s.append_pair(k, v);
            }
        }
    }
    s.finish()
}
