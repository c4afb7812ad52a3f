//! The portal as an OpenID Connect provider, on its own: discovery, the
//! code flow with PKCE, the token endpoint's refusals, the ID token against
//! the JWKS, userinfo, and revoked tickets.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::oidc::{pkce, query, Browser, Provider, CLIENT_ID, CLIENT_SECRET};
use common::{client, TempDir};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde_json::Value;

const CALLBACK: &str = "http://127.0.0.1:9/_synapse/client/oidc/callback";

fn authorize_url(p: &Provider, challenge: &str, state: &str, nonce: &str) -> String {
    let q = form_urlencoded::Serializer::new(String::new())
        .append_pair("response_type", "code")
        .append_pair("client_id", CLIENT_ID)
        .append_pair("redirect_uri", &p.redirect_uri)
        .append_pair("scope", "openid profile")
        .append_pair("state", state)
        .append_pair("nonce", nonce)
        .append_pair("code_challenge", challenge)
        .append_pair("code_challenge_method", "S256")
        .finish();
    format!("{}/oidc/authorize?{q}", p.url())
}

/// Goes through authorize (and the ticket login when needed) to the
/// client's callback; returns its query parameters.
async fn authorize(
    p: &Provider,
    b: &mut Browser,
    c: &reqwest::Client,
    who: (&str, &str),
    challenge: &str,
    state: &str,
    nonce: &str,
) -> std::collections::HashMap<String, String> {
    let mut page = b
        .follow(c, &authorize_url(p, challenge, state, nonce), CALLBACK)
        .await;
    if page.status == 200 && page.url.contains("/login") {
        page = b.log_in(c, &page, who.0, who.1, CALLBACK).await;
    }
    let back = page
        .location
        .unwrap_or_else(|| panic!("no redirect to the client: {} {}", page.status, page.body));
    assert!(back.starts_with(CALLBACK), "redirected to {back}");
    query(&back)
}

enum Auth<'a> {
    Basic(&'a str, &'a str),
    Post(&'a str, &'a str),
}

async fn token(
    p: &Provider,
    c: &reqwest::Client,
    auth: Auth<'_>,
    code: &str,
    verifier: &str,
    redirect_uri: &str,
) -> (u16, Value) {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("code_verifier", verifier),
        ("redirect_uri", redirect_uri),
    ];
    let req = c.post(format!("{}/oidc/token", p.url()));
    let req = match auth {
        Auth::Basic(id, secret) => req.basic_auth(id, Some(secret)),
        Auth::Post(id, secret) => {
            form.push(("client_id", id));
            form.push(("client_secret", secret));
            req
        }
    };
    let resp = req.form(&form).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

async fn jwks(p: &Provider, c: &reqwest::Client) -> JwkSet {
    c.get(format!("{}/oidc/jwks", p.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn verify(id_token: &str, keys: &JwkSet, issuer: &str) -> Value {
    let header = decode_header(id_token).unwrap();
    assert_eq!(header.alg, Algorithm::ES256);
    let jwk = keys
        .find(header.kid.as_deref().expect("a kid"))
        .expect("the kid is in the JWKS");
    let mut v = Validation::new(Algorithm::ES256);
    v.set_audience(&[CLIENT_ID]);
    v.set_issuer(&[issuer]);
    v.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    decode::<Value>(id_token, &DecodingKey::from_jwk(jwk).unwrap(), &v)
        .expect("the ID token verifies against the JWKS")
        .claims
}

#[tokio::test]
async fn discovery_names_the_endpoints_and_the_key_persists() {
    let dir = TempDir::new("oidc-discovery");
    let mut p = Provider::start(&dir, CALLBACK);
    let c = client();
    let d: Value = c
        .get(format!("{}/.well-known/openid-configuration", p.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(d["issuer"], p.issuer);
    assert_eq!(
        d["authorization_endpoint"],
        format!("{}/oidc/authorize", p.issuer)
    );
    assert_eq!(d["token_endpoint"], format!("{}/oidc/token", p.issuer));
    assert_eq!(
        d["userinfo_endpoint"],
        format!("{}/oidc/userinfo", p.issuer)
    );
    assert_eq!(d["jwks_uri"], format!("{}/oidc/jwks", p.issuer));
    assert_eq!(
        d["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(
        d["id_token_signing_alg_values_supported"],
        serde_json::json!(["ES256"])
    );
    let keys = jwks(&p, &c).await;
    assert_eq!(keys.keys.len(), 1);
    let kid = keys.keys[0].common.key_id.clone().unwrap();
    let key_file = p.state.join("oidc-signing-key.pem");
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the signing key is private");
    let pem = std::fs::read_to_string(&key_file).unwrap();
    let der_b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let db = std::fs::read(p.state.join("portal.sqlite")).unwrap();
    assert!(
        !String::from_utf8_lossy(&db).contains(&der_b64[..40]),
        "the key is not in the database"
    );
    assert!(!p.log().contains(&der_b64[..40]), "the key is not logged");
    p.restart();
    // A new client: the old one's pooled connection went with the old process.
    let c = client();
    let again = jwks(&p, &c).await;
    assert_eq!(
        again.keys[0].common.key_id.as_deref(),
        Some(kid.as_str()),
        "the same key after a restart"
    );
}

#[tokio::test]
async fn code_flow_gives_an_id_token_with_nonce_and_name() {
    let dir = TempDir::new("oidc-flow");
    let p = Provider::start(&dir, CALLBACK);
    let c = client();
    let mut b = Browser::default();
    let (verifier, challenge) = pkce();
    // Not logged in: through the ticket login and back.
    let q = authorize(
        &p,
        &mut b,
        &c,
        ("ada@example.org", "ada-ticket-0001"),
        &challenge,
        "st&ate=1",
        "n-0S6_WzA2Mj",
    )
    .await;
    assert_eq!(q["state"], "st&ate=1", "state round-trips");
    assert_eq!(q["iss"], p.issuer);
    let (status, t) = token(
        &p,
        &c,
        Auth::Basic(CLIENT_ID, CLIENT_SECRET),
        &q["code"],
        &verifier,
        CALLBACK,
    )
    .await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(t["token_type"], "Bearer");
    let id_token = t["id_token"].as_str().unwrap();
    let claims = verify(id_token, &jwks(&p, &c).await, &p.issuer);
    assert_eq!(claims["nonce"], "n-0S6_WzA2Mj");
    assert_eq!(claims["name"], "Ada Lovelace");
    assert_eq!(claims["preferred_username"], "ada.lovelace");
    assert!(
        claims.get("email").is_none(),
        "no email without scope email"
    );
    let sub = claims["sub"].as_str().unwrap().to_owned();
    assert!(sub.len() >= 32 && !sub.contains("ada-ticket"));
    // The ticket code is nowhere in what the client gets, nor in the log.
    let payload = id_token.split('.').nth(1).unwrap();
    use base64::Engine;
    let payload = String::from_utf8(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    assert!(!payload.contains("ada-ticket") && !t.to_string().contains("ada-ticket"));
    // Userinfo with the access token: the same subject and name.
    let access = t["access_token"].as_str().unwrap();
    let u: Value = c
        .get(format!("{}/oidc/userinfo", p.url()))
        .bearer_auth(access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(u["sub"], sub);
    assert_eq!(u["name"], "Ada Lovelace");
    // Logged in now: the next authorization goes straight back, same subject.
    let (verifier2, challenge2) = pkce();
    let q2 = authorize(&p, &mut b, &c, ("", ""), &challenge2, "s2", "n2").await;
    let (status, t2) = token(
        &p,
        &c,
        Auth::Post(CLIENT_ID, CLIENT_SECRET),
        &q2["code"],
        &verifier2,
        CALLBACK,
    )
    .await;
    assert_eq!(status, 200, "client_secret_post works: {t2}");
    let claims2 = verify(
        t2["id_token"].as_str().unwrap(),
        &jwks(&p, &c).await,
        &p.issuer,
    );
    assert_eq!(claims2["sub"], sub, "sub is stable per ticket");
    assert_eq!(claims2["nonce"], "n2");
    // Another ticket, another subject.
    let mut b2 = Browser::default();
    let (v3, ch3) = pkce();
    let q3 = authorize(
        &p,
        &mut b2,
        &c,
        ("bob@example.org", "bob-ticket-0002"),
        &ch3,
        "s3",
        "n3",
    )
    .await;
    let (_, t3) = token(
        &p,
        &c,
        Auth::Basic(CLIENT_ID, CLIENT_SECRET),
        &q3["code"],
        &v3,
        CALLBACK,
    )
    .await;
    let claims3 = verify(
        t3["id_token"].as_str().unwrap(),
        &jwks(&p, &c).await,
        &p.issuer,
    );
    assert_ne!(claims3["sub"], sub);
    assert_eq!(claims3["name"], "Bob");
    let log = p.log();
    for secret in [
        "ada-ticket-0001",
        "bob-ticket-0002",
        CLIENT_SECRET,
        access,
        &q["code"],
    ] {
        assert!(!log.contains(secret), "the log must not contain {secret}");
    }
}

#[tokio::test]
async fn token_endpoint_refuses_bad_requests() {
    let dir = TempDir::new("oidc-refusals");
    let p = Provider::start(&dir, CALLBACK);
    let c = client();
    let mut b = Browser::default();
    let ada = ("ada@example.org", "ada-ticket-0001");

    // Wrong client secret, both ways; the code survives that.
    let (verifier, challenge) = pkce();
    let q = authorize(&p, &mut b, &c, ada, &challenge, "s", "n").await;
    let (status, e) = token(
        &p,
        &c,
        Auth::Basic(CLIENT_ID, "wrong-secret-wrong-secret"),
        &q["code"],
        &verifier,
        CALLBACK,
    )
    .await;
    assert_eq!((status, e["error"].as_str()), (401, Some("invalid_client")));
    let (status, e) = token(
        &p,
        &c,
        Auth::Post(CLIENT_ID, "wrong-secret-wrong-secret"),
        &q["code"],
        &verifier,
        CALLBACK,
    )
    .await;
    assert_eq!((status, e["error"].as_str()), (401, Some("invalid_client")));
    let (status, e) = token(
        &p,
        &c,
        Auth::Basic("someone-else", CLIENT_SECRET),
        &q["code"],
        &verifier,
        CALLBACK,
    )
    .await;
    assert_eq!((status, e["error"].as_str()), (401, Some("invalid_client")));

    // Redeemed once; a second time is refused and takes the access token with it.
    let (status, t) = token(
        &p,
        &c,
        Auth::Basic(CLIENT_ID, CLIENT_SECRET),
        &q["code"],
        &verifier,
        CALLBACK,
    )
    .await;
    assert_eq!(status, 200, "{t}");
    let userinfo = |token: String| {
        let c = c.clone();
        let url = format!("{}/oidc/userinfo", p.url());
        async move {
            c.get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let access = t["access_token"].as_str().unwrap().to_owned();
    assert_eq!(userinfo(access.clone()).await, 200);
    let (status, e) = token(
        &p,
        &c,
        Auth::Basic(CLIENT_ID, CLIENT_SECRET),
        &q["code"],
        &verifier,
        CALLBACK,
    )
    .await;
    assert_eq!(
        (status, e["error"].as_str()),
        (400, Some("invalid_grant")),
        "code reuse"
    );
    assert_eq!(
        userinfo(access).await,
        401,
        "a reused code revokes its token"
    );

    // PKCE: a verifier that is not the challenge's.
    let (_, challenge) = pkce();
    let (other_verifier, _) = pkce();
    let q = authorize(&p, &mut b, &c, ada, &challenge, "s", "n").await;
    let (status, e) = token(
        &p,
        &c,
        Auth::Basic(CLIENT_ID, CLIENT_SECRET),
        &q["code"],
        &other_verifier,
        CALLBACK,
    )
    .await;
    assert_eq!(
        (status, e["error"].as_str()),
        (400, Some("invalid_grant")),
        "PKCE mismatch"
    );

    // A redirect_uri at the token endpoint that is not the one of the request.
    let (verifier, challenge) = pkce();
    let q = authorize(&p, &mut b, &c, ada, &challenge, "s", "n").await;
    let (status, e) = token(
        &p,
        &c,
        Auth::Basic(CLIENT_ID, CLIENT_SECRET),
        &q["code"],
        &verifier,
        "http://127.0.0.1:9/other",
    )
    .await;
    assert_eq!(
        (status, e["error"].as_str()),
        (400, Some("invalid_grant")),
        "redirect_uri mismatch"
    );

    // An expired code (the database says so; codes live 60 s).
    let (verifier, challenge) = pkce();
    let q = authorize(&p, &mut b, &c, ada, &challenge, "s", "n").await;
    let db = rusqlite::Connection::open(p.state.join("portal.sqlite")).unwrap();
    db.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
    let n = db
        .execute(
            "UPDATE oidc_codes SET expires = expires - 61 WHERE used = 0",
            [],
        )
        .unwrap();
    assert_eq!(n, 1);
    let (status, e) = token(
        &p,
        &c,
        Auth::Basic(CLIENT_ID, CLIENT_SECRET),
        &q["code"],
        &verifier,
        CALLBACK,
    )
    .await;
    assert_eq!(
        (status, e["error"].as_str()),
        (400, Some("invalid_grant")),
        "expired code"
    );

    // A made-up code, and another grant type.
    let (status, e) = token(
        &p,
        &c,
        Auth::Basic(CLIENT_ID, CLIENT_SECRET),
        "0123456789abcdef",
        &verifier,
        CALLBACK,
    )
    .await;
    assert_eq!((status, e["error"].as_str()), (400, Some("invalid_grant")));
    let resp = c
        .post(format!("{}/oidc/token", p.url()))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[
            ("grant_type", "password"),
            ("username", "ada@example.org"),
            ("password", "ada-ticket-0001"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let e: Value = resp.json().await.unwrap();
    assert_eq!(e["error"], "unsupported_grant_type");
}

#[tokio::test]
async fn authorize_refuses_unregistered_redirects_and_requires_pkce() {
    let dir = TempDir::new("oidc-authorize");
    let p = Provider::start(&dir, CALLBACK);
    let c = client();
    let (_, challenge) = pkce();
    // A redirect_uri that is not exactly the registered one: an error page, no redirect.
    for uri in [
        "http://127.0.0.1:9/_synapse/client/oidc/callback/",
        "http://127.0.0.1:9/_synapse/client/oidc/callback?x=1",
        "http://evil.example/_synapse/client/oidc/callback",
    ] {
        let url = authorize_url(&p, &challenge, "s", "n").replace(
            &form_urlencoded::byte_serialize(CALLBACK.as_bytes()).collect::<String>(),
            &form_urlencoded::byte_serialize(uri.as_bytes()).collect::<String>(),
        );
        assert!(url.contains("evil") || url.contains("callback%2F") || url.contains("x%3D1"));
        let r = c.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 400, "{uri}");
        assert!(r.headers().get("location").is_none());
    }
    let wrong_client = authorize_url(&p, &challenge, "s", "n").replace(CLIENT_ID, "other-client");
    assert_eq!(c.get(&wrong_client).send().await.unwrap().status(), 400);
    // No PKCE, or the plain method: back to the client with invalid_request.
    let mut b = Browser::default();
    for url in [
        authorize_url(&p, &challenge, "s", "n").replace("&code_challenge_method=S256", ""),
        authorize_url(&p, &challenge, "s", "n").replace("S256", "plain"),
        authorize_url(&p, "short", "s", "n"),
    ] {
        let page = b.get(&c, &url).await;
        let back = page.location.expect("a redirect to the client");
        assert!(back.starts_with(CALLBACK));
        let q = query(&back);
        assert_eq!(q["error"], "invalid_request", "{url}");
        assert_eq!(q["state"], "s");
        assert!(!q.contains_key("code"));
    }
}

#[tokio::test]
async fn revoked_ticket_gets_no_token_and_no_userinfo() {
    let dir = TempDir::new("oidc-revoke");
    let mut p = Provider::start(&dir, CALLBACK);
    let c = client();
    let mut b = Browser::default();
    let bob = ("bob@example.org", "bob-ticket-0002");
    // Tokens issued, and a code in flight.
    let (v1, ch1) = pkce();
    let q1 = authorize(&p, &mut b, &c, bob, &ch1, "s", "n").await;
    let (status, t) = token(
        &p,
        &c,
        Auth::Basic(CLIENT_ID, CLIENT_SECRET),
        &q1["code"],
        &v1,
        CALLBACK,
    )
    .await;
    assert_eq!(status, 200);
    let (v2, ch2) = pkce();
    let q2 = authorize(&p, &mut b, &c, bob, &ch2, "s", "n").await;
    // A restart does not lose the code in flight (it is in the database).
    p.restart();
    let c = client();
    let (v3, ch3) = pkce();
    let q3 = authorize(&p, &mut b, &c, bob, &ch3, "s", "n").await;
    let (status, _) = token(
        &p,
        &c,
        Auth::Basic(CLIENT_ID, CLIENT_SECRET),
        &q3["code"],
        &v3,
        CALLBACK,
    )
    .await;
    assert_eq!(status, 200, "codes survive a restart");

    let (ok, _, err) = common::run(&[
        "tickets",
        "revoke",
        "bob@example.org",
        "--state",
        p.state.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let (status, e) = token(
        &p,
        &c,
        Auth::Basic(CLIENT_ID, CLIENT_SECRET),
        &q2["code"],
        &v2,
        CALLBACK,
    )
    .await;
    assert_eq!(
        (status, e["error"].as_str()),
        (400, Some("invalid_grant")),
        "a revoked ticket's code"
    );
    let r = c
        .get(format!("{}/oidc/userinfo", p.url()))
        .bearer_auth(t["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "a revoked ticket's access token");
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("invalid_token"));
    // And the next authorization sends them to the login, where the code no longer works.
    let (_, ch4) = pkce();
    let page = b
        .follow(&c, &authorize_url(&p, &ch4, "s", "n"), CALLBACK)
        .await;
    assert!(
        page.url.contains("/login"),
        "back to the login: {}",
        page.url
    );
    let after = b.log_in(&c, &page, bob.0, bob.1, CALLBACK).await;
    assert_eq!(after.status, 401);
    assert!(after.location.is_none());
}
