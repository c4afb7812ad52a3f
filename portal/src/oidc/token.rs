//! The token endpoint: the registered client (client_secret_basic or
//! client_secret_post) redeems a code with its PKCE verifier for an access
//! token and a signed ID token.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::claims::{id_token, Profile};
use super::config::Oidc;
use super::store::Redeem;
use super::{not_configured, now};
use crate::state::AppState;
use conference::protocol::constant_time_eq;

/// An error answer of RFC 6749, 5.2.
fn error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut resp = (
        status,
        Json(json!({ "error": error, "error_description": description })),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"venue-portal\""),
        );
    }
    resp.headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

fn invalid_grant(description: &str) -> Response {
    error(StatusCode::BAD_REQUEST, "invalid_grant", description)
}

/// `%XX` and `+` decoding (RFC 6749, 2.3.1: Basic credentials are
/// form-urlencoded before base64).
fn form_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// The client's id and secret, from the Basic header or the body, never both.
#[allow(clippy::result_large_err)]
fn client_credentials(
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<(String, String), Response> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Basic ")
                .or_else(|| v.strip_prefix("basic "))
        });
    let in_body = form.contains_key("client_secret");
    match basic {
        Some(_) if in_body => Err(error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "client credentials both in the Authorization header and the body",
        )),
        Some(b) => {
            let decoded = STANDARD
                .decode(b.trim())
                .ok()
                .and_then(|d| String::from_utf8(d).ok());
            let pair = decoded.as_deref().and_then(|d| d.split_once(':'));
            match pair.and_then(|(i, s)| Some((form_decode(i)?, form_decode(s)?))) {
                Some(p) => Ok(p),
                None => Err(error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    "malformed Basic credentials",
                )),
            }
        }
        None if in_body => Ok((
            form.get("client_id").cloned().unwrap_or_default(),
            form["client_secret"].clone(),
        )),
        None => Err(error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication is required (client_secret_basic or client_secret_post)",
        )),
    }
}

/// RFC 7636, 4.1: 43 to 128 characters of `[A-Za-z0-9-._~]`.
fn valid_verifier(v: &str) -> bool {
    (43..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

pub async fn token(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(o) = &state.config.oidc else {
        return not_configured();
    };
    let mut form = HashMap::new();
    for (k, v) in form_urlencoded::parse(&body) {
        // RFC 6749, 3.2: parameters must not be repeated.
        if form.insert(k.into_owned(), v.into_owned()).is_some() {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "a parameter is repeated",
            );
        }
    }
    let (client_id, secret) = match client_credentials(&headers, &form) {
        Ok(c) => c,
        Err(r) => return r,
    };
    if client_id != o.client_id || !constant_time_eq(secret.as_bytes(), o.client_secret.as_bytes())
    {
        tracing::warn!("OIDC token request with a wrong client_id or client secret");
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "unknown client or wrong client secret",
        );
    }
    if form.get("grant_type").map(String::as_str) != Some("authorization_code") {
        return error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "only grant_type=authorization_code is supported",
        );
    }
    let Some(code) = form.get("code") else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "code is missing",
        );
    };
    let t = now();
    let grant = match state.store.oidc_redeem_code(code, t) {
        Ok(Redeem::Granted(g)) => g,
        Ok(Redeem::Reused) => {
            tracing::warn!("OIDC code redeemed twice: its access token is revoked");
            return invalid_grant("the code was already used");
        }
        Ok(Redeem::Invalid) => return invalid_grant("unknown or expired code"),
        Err(e) => {
            tracing::error!(error = %e, "cannot redeem an OIDC code");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "database error",
            );
        }
    };
    if grant.client_id != client_id {
        return invalid_grant("the code was issued to another client");
    }
    if form.get("redirect_uri") != Some(&grant.redirect_uri) {
        return invalid_grant("redirect_uri differs from the authorization request's");
    }
    let verifier = form.get("code_verifier").map(String::as_str).unwrap_or("");
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    if !valid_verifier(verifier)
        || !constant_time_eq(computed.as_bytes(), grant.code_challenge.as_bytes())
    {
        tracing::warn!(
            ticket = grant.ticket.id,
            "OIDC code_verifier does not match"
        );
        return invalid_grant("code_verifier does not match the code_challenge");
    }
    match issue(&state, o, code, &grant, t) {
        Ok(r) => {
            tracing::info!(ticket = grant.ticket.id, "OIDC tokens issued");
            r
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot issue OIDC tokens");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "cannot issue tokens",
            )
        }
    }
}

fn issue(
    state: &AppState,
    o: &Oidc,
    code: &str,
    grant: &super::store::Grant,
    t: i64,
) -> anyhow::Result<Response> {
    let access = crate::auth::new_token();
    state.store.oidc_insert_token(
        &access,
        code,
        grant.ticket.id,
        &grant.client_id,
        &grant.scope,
        t + o.token_ttl,
    )?;
    let sub = state.store.oidc_subject(grant.ticket.id)?;
    let profile = Profile::new(sub, &grant.ticket, &grant.scope);
    let id = id_token(o, &profile, grant.nonce.as_deref(), &access, t)?;
    let mut resp = Json(json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": o.token_ttl,
        "id_token": id,
        "scope": grant.scope,
    }))
    .into_response();
    resp.headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_decoded() {
        assert_eq!(form_decode("a%3Ab+c").as_deref(), Some("a:b c"));
        assert_eq!(form_decode("%zz"), None);
        assert_eq!(form_decode("%4"), None);
    }

    #[test]
    fn verifiers_follow_rfc_7636() {
        assert!(valid_verifier(&"a".repeat(43)));
        assert!(!valid_verifier(&"a".repeat(42)));
        assert!(!valid_verifier(&"a".repeat(129)));
        assert!(!valid_verifier(&format!("{}+", "a".repeat(43))));
    }
}
