//! The portal as the event's OpenID Connect provider (OpenID Connect Core
//! 1.0 and Discovery 1.0; PKCE, RFC 7636; JWKS, RFC 7517), so that ticket
//! holders log in to the event's Matrix homeserver with their ticket and no
//! second password. One client is registered, from `[oidc]` of the
//! configuration: the homeserver. It is the event's own service, so there is
//! no consent screen: a logged-in ticket holder is sent straight back.
//!
//! - `config`: `[oidc]` and the resolved provider;
//! - `keys`: the ES256 signing key in the state directory;
//! - `store`: subjects, codes and access tokens in the portal's database;
//! - `claims`: the ID token and the profile claims;
//! - `authorize`, `token`, `userinfo`: the three endpoints; discovery and
//!   the JWKS are here.

pub mod authorize;
pub mod claims;
pub mod config;
pub mod keys;
pub mod store;
pub mod token;
pub mod userinfo;

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::state::AppState;

pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";
pub const AUTHORIZE_PATH: &str = "/oidc/authorize";
pub const TOKEN_PATH: &str = "/oidc/token";
pub const USERINFO_PATH: &str = "/oidc/userinfo";
pub const JWKS_PATH: &str = "/oidc/jwks";

/// The provider's routes; they answer 404 when `[oidc]` is not configured.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(DISCOVERY_PATH, get(discovery))
        .route(
            AUTHORIZE_PATH,
            get(authorize::authorize_get).post(authorize::authorize_post),
        )
        .route(TOKEN_PATH, axum::routing::post(token::token))
        .route(
            USERINFO_PATH,
            get(userinfo::userinfo).post(userinfo::userinfo),
        )
        .route(JWKS_PATH, get(jwks))
}

fn not_configured() -> Response {
    (
        StatusCode::NOT_FOUND,
        "this portal is not an OpenID Connect provider ([oidc] is not configured)\n",
    )
        .into_response()
}

pub(crate) fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

async fn discovery(State(state): State<Arc<AppState>>) -> Response {
    let Some(o) = &state.config.oidc else {
        return not_configured();
    };
    Json(json!({
        "issuer": o.issuer,
        "authorization_endpoint": o.endpoint(AUTHORIZE_PATH),
        "token_endpoint": o.endpoint(TOKEN_PATH),
        "userinfo_endpoint": o.endpoint(USERINFO_PATH),
        "jwks_uri": o.endpoint(JWKS_PATH),
        "scopes_supported": ["openid", "profile", "email"],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nonce", "at_hash", "name", "preferred_username", "email", "email_verified"],
        "authorization_response_iss_parameter_supported": true,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
    }))
    .into_response()
}

async fn jwks(State(state): State<Arc<AppState>>) -> Response {
    let Some(o) = &state.config.oidc else {
        return not_configured();
    };
    Json(json!({ "keys": [o.key.jwk] })).into_response()
}
