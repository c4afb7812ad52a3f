//! HTTP(S) as a browser reaches a host: the service's name resolved to the
//! fleet's address (DNS is its own probe), the check's roots, no redirects
//! followed (a redirect is an answer the probes read).

use std::time::Duration;

use super::{Check, Target};

/// A client for `target`'s service name, and the base URL to use with it.
pub fn client(
    check: &Check,
    target: &Target,
    name: &str,
) -> Result<(reqwest::Client, String), String> {
    let port = target.ports.https;
    let scheme = if target.ports.plain_http {
        "http"
    } else {
        "https"
    };
    let client = reqwest::Client::builder()
        .use_preconfigured_tls((*check.tls).clone())
        .resolve(name, target.socket(port))
        .redirect(reqwest::redirect::Policy::none())
        .timeout(check.timeout)
        .connect_timeout(Duration::from_secs(3).min(check.timeout))
        .user_agent(concat!("venue-check/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot make an HTTP client: {e}"))?;
    let base = if (scheme, port) == ("https", 443) {
        format!("https://{name}")
    } else {
        format!("{scheme}://{name}:{port}")
    };
    Ok((client, base))
}

/// reqwest's error as a cause, without the URL (which may hold a checksum or
/// a token) and with the innermost reason (refused, certificate, timeout).
pub fn cause(e: &reqwest::Error) -> String {
    let mut msg = if e.is_timeout() {
        "no answer in time".to_owned()
    } else if e.is_connect() {
        "cannot connect".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = std::error::Error::source(e);
    let mut last = None;
    while let Some(s) = source {
        last = Some(s.to_string());
        source = s.source();
    }
    if let Some(l) = last {
        msg.push_str(": ");
        msg.push_str(&l);
    }
    msg
}
