//! The Matrix client-server API (v3) and Synapse's admin API, as far as the
//! portal uses them. Every call names what it did in its error; access
//! tokens go in the Authorization header only, never into a URL or a log.

use std::time::Duration;

use serde_json::{json, Value};

/// An answer other than 2xx, or no answer.
#[derive(Debug)]
pub enum CallError {
    Matrix {
        what: String,
        status: u16,
        errcode: String,
        error: String,
    },
    Http {
        what: String,
        error: String,
        /// No answer in time: the homeserver may still be working on it.
        timed_out: bool,
    },
}

impl CallError {
    pub fn errcode(&self) -> Option<&str> {
        match self {
            CallError::Matrix { errcode, .. } => Some(errcode),
            CallError::Http { .. } => None,
        }
    }
    pub fn status(&self) -> Option<u16> {
        match self {
            CallError::Matrix { status, .. } => Some(*status),
            CallError::Http { .. } => None,
        }
    }
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }
    /// An error every other call of this pass would meet as well: no
    /// answer or a server error (the homeserver, or the proxy before it,
    /// down or restarting), the bot's token refused (401) or deactivated,
    /// or the bot rate-limited (429).
    pub fn stops_pass(&self) -> bool {
        match self {
            CallError::Http { .. } => true,
            CallError::Matrix {
                status, errcode, ..
            } => {
                *status >= 500
                    || *status == 401
                    || *status == 429
                    || errcode == "M_USER_DEACTIVATED"
            }
        }
    }
    /// A request given up on (or a proxy's 504) that the homeserver may
    /// still carry out.
    pub fn may_still_run(&self) -> bool {
        match self {
            CallError::Http { timed_out, .. } => *timed_out,
            CallError::Matrix { status, .. } => *status == 504,
        }
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Matrix {
                what,
                status,
                errcode,
                error,
            } => write!(
                f,
                "{what}: the homeserver answered {status} {errcode}: {error}"
            ),
            CallError::Http { what, error, .. } => {
                write!(f, "{what}: cannot reach the homeserver: {error}")
            }
        }
    }
}

impl std::error::Error for CallError {}

pub type Res<T> = Result<T, CallError>;

/// Percent-encodes one path segment (room IDs, aliases, user IDs hold `!#@:`).
pub fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// How long a createRoom may take (Synapse under load takes seconds).
const CREATE_ROOM_TIMEOUT: Duration = Duration::from_secs(60);

/// A homeserver, reached with one access token (the bot's) or none.
#[derive(Clone)]
pub struct Matrix {
    http: reqwest::Client,
    base: String,
}

impl Matrix {
    pub fn new(base: &str) -> Matrix {
        Matrix {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("an HTTP client"),
            base: base.trim_end_matches('/').to_owned(),
        }
    }

    /// One request; the JSON answer, or the homeserver's error.
    pub async fn call(
        &self,
        what: &str,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Res<Value> {
        self.call_within(what, method, path, token, body, None)
            .await
    }

    /// `call`, with another timeout than the client's.
    async fn call_within(
        &self,
        what: &str,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
        timeout: Option<Duration>,
    ) -> Res<Value> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = timeout {
            req = req.timeout(t);
        }
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let http = |e: reqwest::Error| CallError::Http {
            what: what.to_owned(),
            timed_out: e.is_timeout(),
            error: e.without_url().to_string(),
        };
        let resp = req.send().await.map_err(http)?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(http)?;
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if !(200..300).contains(&status) {
            return Err(CallError::Matrix {
                what: what.to_owned(),
                status,
                errcode: v["errcode"].as_str().unwrap_or("").to_owned(),
                error: v["error"]
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| text.chars().take(200).collect()),
            });
        }
        Ok(v)
    }

    async fn get(&self, what: &str, path: &str, token: &str) -> Res<Value> {
        self.call(what, reqwest::Method::GET, path, Some(token), None)
            .await
    }
    async fn post(&self, what: &str, path: &str, token: &str, body: &Value) -> Res<Value> {
        self.call(what, reqwest::Method::POST, path, Some(token), Some(body))
            .await
    }
    async fn put(&self, what: &str, path: &str, token: &str, body: &Value) -> Res<Value> {
        self.call(what, reqwest::Method::PUT, path, Some(token), Some(body))
            .await
    }
    async fn delete(
        &self,
        what: &str,
        path: &str,
        token: &str,
        body: Option<&Value>,
    ) -> Res<Value> {
        self.call(what, reqwest::Method::DELETE, path, Some(token), body)
            .await
    }

    /// `GET /_matrix/client/v3/account/whoami`: the token's user.
    pub async fn whoami(&self, token: &str) -> Res<String> {
        let v = self
            .get("whoami", "/_matrix/client/v3/account/whoami", token)
            .await?;
        Ok(v["user_id"].as_str().unwrap_or_default().to_owned())
    }

    /// Synapse's shared-secret registration (`/_synapse/admin/v1/register`):
    /// a nonce, then the user with
    /// `mac = hex(HMAC-SHA1(secret, nonce\0user\0password\0admin|notadmin))`.
    /// Returns (user_id, access_token).
    pub async fn register_with_shared_secret(
        &self,
        secret: &str,
        localpart: &str,
        displayname: &str,
        admin: bool,
    ) -> Res<(String, String)> {
        let what = "shared-secret registration";
        let nonce = self
            .call(
                what,
                reqwest::Method::GET,
                "/_synapse/admin/v1/register",
                None,
                None,
            )
            .await?["nonce"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        // Password logins are off on the event's homeserver; the password is
        // only there because registration needs one.
        let password = conference::protocol::hex(&crate::random_bytes::<24>());
        let mac = registration_mac(secret, &nonce, localpart, &password, admin);
        let body = json!({
            "nonce": nonce,
            "username": localpart,
            "displayname": displayname,
            "password": password,
            "admin": admin,
            "mac": mac,
        });
        let v = self
            .call(
                what,
                reqwest::Method::POST,
                "/_synapse/admin/v1/register",
                None,
                Some(&body),
            )
            .await?;
        Ok((
            v["user_id"].as_str().unwrap_or_default().to_owned(),
            v["access_token"].as_str().unwrap_or_default().to_owned(),
        ))
    }

    /// Synapse admin: no rate limit for `user` (the bot posts for many).
    pub async fn unlimit(&self, token: &str, user: &str) -> Res<()> {
        self.post(
            "override the bot's rate limit",
            &format!("/_synapse/admin/v1/users/{}/override_ratelimit", seg(user)),
            token,
            &json!({"messages_per_second": 0, "burst_count": 0}),
        )
        .await
        .map(|_| ())
    }

    /// The room an alias points to, or None.
    pub async fn resolve_alias(&self, token: &str, alias: &str) -> Res<Option<String>> {
        match self
            .get(
                &format!("resolve {alias}"),
                &format!("/_matrix/client/v3/directory/room/{}", seg(alias)),
                token,
            )
            .await
        {
            Ok(v) => Ok(v["room_id"].as_str().map(str::to_owned)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Removes an alias (Synapse lets a server admin remove any).
    pub async fn delete_alias(&self, token: &str, alias: &str) -> Res<()> {
        self.delete(
            &format!("remove {alias}"),
            &format!("/_matrix/client/v3/directory/room/{}", seg(alias)),
            token,
            None,
        )
        .await
        .map(|_| ())
    }

    /// `POST /join/{room}`: the token's user joins a room by its ID.
    pub async fn join(&self, token: &str, room: &str) -> Res<()> {
        self.post(
            &format!("join {room}"),
            &format!("/_matrix/client/v3/join/{}", seg(room)),
            token,
            &json!({}),
        )
        .await
        .map(|_| ())
    }

    /// Synapse admin: a room's current state, whether or not the admin is
    /// in it (`/_synapse/admin/v1/rooms/<id>/state`).
    pub async fn admin_room_state(&self, token: &str, room: &str) -> Res<Vec<Value>> {
        let v = self
            .get(
                &format!("read the state of {room}"),
                &format!("/_synapse/admin/v1/rooms/{}/state", seg(room)),
                token,
            )
            .await?;
        v["state"]
            .as_array()
            .cloned()
            .ok_or_else(|| CallError::Matrix {
                what: format!("read the state of {room}"),
                status: 200,
                errcode: String::new(),
                error: "the answer has no \"state\" list".to_owned(),
            })
    }

    /// Synapse admin: who made a room, from the homeserver's own record
    /// (kept even when no event of the room was stored).
    pub async fn admin_room_creator(&self, token: &str, room: &str) -> Res<Option<String>> {
        let v = self
            .get(
                &format!("read the details of {room}"),
                &format!("/_synapse/admin/v1/rooms/{}", seg(room)),
                token,
            )
            .await?;
        Ok(v["creator"].as_str().map(str::to_owned))
    }

    /// Synapse admin: a new access token of `user`, held by the admin that
    /// asks (`/_synapse/admin/v1/users/<id>/login`; not for oneself).
    pub async fn admin_login_as(&self, token: &str, user: &str) -> Res<String> {
        let v = self
            .post(
                &format!("log in as {user}"),
                &format!("/_synapse/admin/v1/users/{}/login", seg(user)),
                token,
                &json!({}),
            )
            .await?;
        Ok(v["access_token"].as_str().unwrap_or_default().to_owned())
    }

    /// Ends the session of this token only.
    pub async fn logout(&self, token: &str) -> Res<()> {
        self.post("log out", "/_matrix/client/v3/logout", token, &json!({}))
            .await
            .map(|_| ())
    }

    /// `POST /createRoom`; the new room's ID. Given longer than other calls:
    /// a createRoom given up while the homeserver still works on it looks
    /// like one cut short, and would be made again.
    pub async fn create_room(&self, token: &str, what: &str, body: &Value) -> Res<String> {
        let v = self
            .call_within(
                what,
                reqwest::Method::POST,
                "/_matrix/client/v3/createRoom",
                Some(token),
                Some(body),
                Some(CREATE_ROOM_TIMEOUT),
            )
            .await?;
        Ok(v["room_id"].as_str().unwrap_or_default().to_owned())
    }

    /// The content of a state event, or None.
    pub async fn state(
        &self,
        token: &str,
        room: &str,
        kind: &str,
        key: &str,
    ) -> Res<Option<Value>> {
        match self
            .get(
                &format!("read {kind} of {room}"),
                &format!(
                    "/_matrix/client/v3/rooms/{}/state/{}/{}",
                    seg(room),
                    seg(kind),
                    seg(key)
                ),
                token,
            )
            .await
        {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn put_state(
        &self,
        token: &str,
        room: &str,
        kind: &str,
        key: &str,
        content: &Value,
    ) -> Res<()> {
        self.put(
            &format!("set {kind} of {room}"),
            &format!(
                "/_matrix/client/v3/rooms/{}/state/{}/{}",
                seg(room),
                seg(kind),
                seg(key)
            ),
            token,
            content,
        )
        .await
        .map(|_| ())
    }

    /// Sends an `m.room.message`; returns its event ID. The transaction ID
    /// is random: a retry after a lost answer may post twice, which is
    /// better than never.
    pub async fn send(&self, token: &str, room: &str, content: &Value) -> Res<String> {
        let txn = conference::protocol::hex(&crate::random_bytes::<12>());
        let v = self
            .put(
                &format!("send a message to {room}"),
                &format!(
                    "/_matrix/client/v3/rooms/{}/send/m.room.message/{txn}",
                    seg(room)
                ),
                token,
                content,
            )
            .await?;
        Ok(v["event_id"].as_str().unwrap_or_default().to_owned())
    }

    /// The latest `limit` messages, newest first, with the senders' member
    /// events (lazy-loaded) in `state`.
    pub async fn messages(&self, token: &str, room: &str, limit: u32) -> Res<Value> {
        let filter = json!({"types": ["m.room.message"], "lazy_load_members": true}).to_string();
        self.get(
            &format!("read the messages of {room}"),
            &format!(
                "/_matrix/client/v3/rooms/{}/messages?dir=b&limit={limit}&filter={}",
                seg(room),
                seg(&filter)
            ),
            token,
        )
        .await
    }

    pub async fn invite(&self, token: &str, room: &str, user: &str) -> Res<()> {
        self.post(
            &format!("invite {user} to {room}"),
            &format!("/_matrix/client/v3/rooms/{}/invite", seg(room)),
            token,
            &json!({"user_id": user}),
        )
        .await
        .map(|_| ())
    }

    /// Synapse admin: makes a local user join a room the bot is in.
    pub async fn admin_join(&self, token: &str, room: &str, user: &str) -> Res<()> {
        self.post(
            &format!("join {user} to {room}"),
            &format!("/_synapse/admin/v1/join/{}", seg(room)),
            token,
            &json!({"user_id": user}),
        )
        .await
        .map(|_| ())
    }

    /// Synapse admin: the user an auth provider's subject maps to, or None.
    pub async fn user_by_external_id(
        &self,
        token: &str,
        provider: &str,
        external_id: &str,
    ) -> Res<Option<String>> {
        match self
            .get(
                "look up a user by subject",
                &format!(
                    "/_synapse/admin/v1/auth_providers/{}/users/{}",
                    seg(provider),
                    seg(external_id)
                ),
                token,
            )
            .await
        {
            Ok(v) => Ok(v["user_id"].as_str().map(str::to_owned)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Synapse admin: deactivates a user (their tokens end, they leave
    /// every room); not erased, so what they said stays readable.
    pub async fn deactivate(&self, token: &str, user: &str) -> Res<()> {
        self.post(
            &format!("deactivate {user}"),
            &format!("/_synapse/admin/v1/deactivate/{}", seg(user)),
            token,
            &json!({"erase": false}),
        )
        .await
        .map(|_| ())
    }
}

/// The MAC of Synapse's shared-secret registration.
pub fn registration_mac(
    secret: &str,
    nonce: &str,
    user: &str,
    password: &str,
    admin: bool,
) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes())
        .expect("HMAC accepts keys of any length");
    for (i, part) in [
        nonce,
        user,
        password,
        if admin { "admin" } else { "notadmin" },
    ]
    .iter()
    .enumerate()
    {
        if i > 0 {
            mac.update(b"\0");
        }
        mac.update(part.as_bytes());
    }
    conference::protocol::hex(&mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_mac_is_synapses() {
        // Computed independently with Python:
        // hmac.new(b"secret", b"abc\x00bot\x00pw\x00admin", hashlib.sha1).hexdigest()
        assert_eq!(
            registration_mac("secret", "abc", "bot", "pw", true),
            "e2835259d0cff814a4c80d63a74adf6f779ca5c6"
        );
        assert_eq!(
            registration_mac("secret", "abc", "bot", "pw", false),
            "bc97a1918bc67018ab6c9774cad19bcd9cd97b34"
        );
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(seg("#main-track:venue.test"), "%23main-track%3Avenue.test");
        assert_eq!(seg("!a/b?c"), "%21a%2Fb%3Fc");
    }
}
