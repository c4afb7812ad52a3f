//! TURN REST credentials ("A REST API for access to TURN services",
//! draft-uberti-behave-turn-rest; coturn's `use-auth-secret` with
//! `static-auth-secret`): the username is `<expiry-unix-time>:<user>` and the
//! password is `base64(HMAC-SHA1(secret, username))`. The TURN server
//! recomputes the password and refuses a username whose time has passed.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha1::Sha1;

/// Credentials for one user, valid until `expires` (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TurnCredentials {
    pub username: String,
    pub password: String,
    pub expires: i64,
}

/// Credentials for `user` that expire at `expires` (Unix seconds). A `:` in
/// `user` is kept: coturn reads the timestamp up to the first colon.
pub fn credentials(secret: &str, user: &str, expires: i64) -> TurnCredentials {
    let username = format!("{expires}:{user}");
    let password = password(secret, &username);
    TurnCredentials {
        username,
        password,
        expires,
    }
}

/// `base64(HMAC-SHA1(secret, username))`.
pub fn password(secret: &str, username: &str) -> String {
    let mut mac =
        Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answer() {
        // python3 -c 'import hmac,hashlib,base64;print(base64.b64encode(hmac.new(b"north",b"1600000000:alice",hashlib.sha1).digest()).decode())'
        let c = credentials("north", "alice", 1_600_000_000);
        assert_eq!(c.username, "1600000000:alice");
        assert_eq!(c.password, password("north", "1600000000:alice"));
        assert_eq!(c.password, KNOWN);
        assert_ne!(
            credentials("south", "alice", 1_600_000_000).password,
            c.password
        );
    }

    const KNOWN: &str = "gq98pTOhhHaAu0we9aV79kOVVv0=";
}
