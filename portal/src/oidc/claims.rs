//! What the provider says about a ticket holder: the ID token and the
//! userinfo answer. Never the ticket code; the email only with scope `email`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{encode, Header};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::config::Oidc;
use super::keys::ALG;
use crate::store::Ticket;

/// The profile claims (`name`, `preferred_username`) and, with scope
/// `email`, the email.
#[derive(Serialize)]
pub struct Profile {
    pub sub: String,
    pub name: String,
    pub preferred_username: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
}

impl Profile {
    pub fn new(sub: String, ticket: &Ticket, scope: &str) -> Profile {
        let name = ticket.display_name();
        let email = scope.split(' ').any(|s| s == "email");
        Profile {
            sub,
            preferred_username: username(&name),
            name,
            email: email.then(|| ticket.email.clone()),
            // Tickets are sold to an address; the portal has not proved it.
            email_verified: email.then_some(false),
        }
    }
}

#[derive(Serialize)]
struct IdToken<'a> {
    iss: &'a str,
    aud: &'a str,
    exp: i64,
    iat: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
    at_hash: String,
    #[serde(flatten)]
    profile: &'a Profile,
}

/// A signed ID token (ES256, with the key's `kid`).
pub fn id_token(
    oidc: &Oidc,
    profile: &Profile,
    nonce: Option<&str>,
    access_token: &str,
    now: i64,
) -> anyhow::Result<String> {
    let claims = IdToken {
        iss: &oidc.issuer,
        aud: &oidc.client_id,
        exp: now + oidc.token_ttl,
        iat: now,
        nonce,
        at_hash: at_hash(access_token),
        profile,
    };
    let mut header = Header::new(ALG);
    header.kid = Some(oidc.key.kid.clone());
    encode(&header, &claims, &oidc.key.encoding)
        .map_err(|e| anyhow::anyhow!("cannot sign the ID token: {e}"))
}

/// OIDC Core 3.1.3.6: the left half of SHA-256 of the access token (ES256
/// hashes with SHA-256), base64url.
pub fn at_hash(access_token: &str) -> String {
    URL_SAFE_NO_PAD.encode(&Sha256::digest(access_token.as_bytes())[..16])
}

/// A Matrix-safe user name from the ticket's name: lower-case ASCII letters
/// and digits, other runs of characters as one `.`, at most 32 characters;
/// `attendee` when nothing is left. The homeserver still sanitises it and
/// numbers it when taken; it is a suggestion, `sub` is the identity.
pub fn username(name: &str) -> String {
    let mut out = String::new();
    let mut sep = false;
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            if sep && !out.is_empty() {
                out.push('.');
            }
            sep = false;
            out.push(c.to_ascii_lowercase());
        } else {
            sep = true;
        }
        if out.len() >= 32 {
            break;
        }
    }
    if out.is_empty() {
        "attendee".to_owned()
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_safe() {
        assert_eq!(username("Ada Lovelace"), "ada.lovelace");
        assert_eq!(username("  Jürgen  Müller "), "j.rgen.m.ller");
        assert_eq!(username("<script>"), "script");
        assert_eq!(username("李"), "attendee");
        assert_eq!(username(&"x".repeat(100)).len(), 32);
        assert_eq!(username("@admin:evil.org"), "admin.evil.org");
    }

    #[test]
    fn at_hash_is_the_left_half_of_sha256() {
        // Computed independently: Python's hashlib and base64.urlsafe_b64encode.
        assert_eq!(
            at_hash("jHkWEdUXMU1BwAsC4vtUsZwnNk_Ck9qiyyLOrA5f6_0"),
            "w4ZjCjwlj6WyZV7QnyWuJw"
        );
    }
}
