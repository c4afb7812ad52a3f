//! HS256 JSON Web Tokens (RFC 7519) as Jitsi Meet's prosody `token`
//! authentication expects them: header `{"alg":"HS256","typ":"JWT"}`, claims
//! `iss` (the app id), `aud` (an accepted audience; venue uses the app id),
//! `sub` (the XMPP domain), `room` (the room name, or `*`), `exp`, `nbf` and
//! `context.user` (name, email, id, moderator).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Sha256;

const HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

/// Signs `claims` (a JSON object) with HMAC-SHA256.
pub fn encode_hs256(secret: &[u8], claims: &Value) -> String {
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(HEADER),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = sign(secret, &signing_input);
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

fn sign(secret: &[u8], input: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(input.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("not a JWT (three base64url parts)")]
    Malformed,
    #[error("the token is not HS256")]
    Algorithm,
    #[error("bad signature")]
    Signature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
}

/// Checks an HS256 token's signature and its `exp`/`nbf` against `now`
/// (Unix seconds), and returns its claims.
pub fn decode_hs256(secret: &[u8], token: &str, now: i64) -> Result<Value, JwtError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    let header: Value = URL_SAFE_NO_PAD
        .decode(h)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(JwtError::Malformed)?;
    if header.get("alg").and_then(Value::as_str) != Some("HS256") {
        return Err(JwtError::Algorithm);
    }
    let signature = URL_SAFE_NO_PAD.decode(s).map_err(|_| JwtError::Malformed)?;
    let expected = sign(secret, &format!("{h}.{p}"));
    if !super::constant_time_eq(&signature, &expected) {
        return Err(JwtError::Signature);
    }
    let claims: Value = URL_SAFE_NO_PAD
        .decode(p)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(JwtError::Malformed)?;
    if let Some(exp) = claims.get("exp").and_then(Value::as_i64) {
        if now >= exp {
            return Err(JwtError::Expired);
        }
    }
    if let Some(nbf) = claims.get("nbf").and_then(Value::as_i64) {
        if now < nbf {
            return Err(JwtError::NotYetValid);
        }
    }
    Ok(claims)
}

/// The user in a Jitsi token's `context.user`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JitsiUser {
    pub id: String,
    pub name: String,
    pub email: String,
    pub moderator: bool,
}

/// What a Jitsi token grants.
#[derive(Debug, Clone)]
pub struct JitsiGrant<'a> {
    /// `iss` and `aud`: prosody's `app_id` (and an accepted audience).
    pub app_id: &'a str,
    /// `sub`: the Jitsi Meet XMPP domain.
    pub domain: &'a str,
    /// `room`: the room name as in the meeting URL (lower case).
    pub room: &'a str,
    pub user: JitsiUser,
    /// Unix seconds.
    pub now: i64,
    /// Seconds the token is valid for; keep it short, it only has to reach
    /// prosody once.
    pub ttl: i64,
}

/// A token for one user in one room.
pub fn jitsi_token(secret: &[u8], grant: &JitsiGrant) -> String {
    let claims = serde_json::json!({
        "iss": grant.app_id,
        "aud": grant.app_id,
        "sub": grant.domain,
        "room": grant.room,
        "nbf": grant.now - 60,
        "exp": grant.now + grant.ttl,
        "context": { "user": grant.user },
        "moderator": grant.user.moderator,
    });
    encode_hs256(secret, &claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answer_from_python_hmac() {
        // The same token computed with Python's hmac, hashlib and base64.
        let t = encode_hs256(b"k", &serde_json::json!({"sub": "x"}));
        assert_eq!(
            t,
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ4In0.ZQBNfODvZbWEZlqkYu9Hjz8pREszIDnoFi82AvAUXvI"
        );
    }

    #[test]
    fn jitsi_token_round_trip_and_expiry() {
        let grant = JitsiGrant {
            app_id: "venue",
            domain: "meet.example.org",
            room: "hackroom-1",
            user: JitsiUser {
                id: "7".into(),
                name: "Ada".into(),
                email: "ada@example.org".into(),
                moderator: false,
            },
            now: 1_000_000,
            ttl: 300,
        };
        let t = jitsi_token(b"secret", &grant);
        let c = decode_hs256(b"secret", &t, 1_000_010).unwrap();
        assert_eq!(c["room"], "hackroom-1");
        assert_eq!(c["aud"], "venue");
        assert_eq!(c["iss"], "venue");
        assert_eq!(c["sub"], "meet.example.org");
        assert_eq!(c["context"]["user"]["name"], "Ada");
        assert_eq!(c["exp"], 1_000_300);
        assert_eq!(
            decode_hs256(b"other", &t, 1_000_010),
            Err(JwtError::Signature)
        );
        assert_eq!(
            decode_hs256(b"secret", &t, 1_000_300),
            Err(JwtError::Expired)
        );
        assert_eq!(decode_hs256(b"secret", "a.b", 0), Err(JwtError::Malformed));
    }
}
