//! Errors of the cloud layer. Callers branch on [`CloudError::code`] (e.g.
//! `uniqueness_error` → adopt the existing resource, `not_found` on delete →
//! already gone); everything else reaches the user through anyhow.

use std::fmt;

#[derive(Debug)]
pub enum CloudError {
    /// The API answered with an error body.
    Api {
        method: String,
        path: String,
        status: u16,
        code: String,
        message: String,
    },
    /// No answer (connect, timeout, dropped connection) after all retries.
    Network {
        method: String,
        path: String,
        detail: String,
    },
    /// An answer we could not read.
    Decode {
        method: String,
        path: String,
        detail: String,
    },
    /// An action ended in an error.
    ActionFailed {
        id: u64,
        command: String,
        code: String,
        message: String,
    },
    /// Waiting for something took longer than we allow.
    Timeout {
        what: String,
    },
    NoToken,
}

impl CloudError {
    /// The API's error code (`not_found`, `uniqueness_error`, `unauthorized`…).
    pub fn code(&self) -> Option<&str> {
        match self {
            CloudError::Api { code, .. } => Some(code),
            _ => None,
        }
    }
    pub fn is(&self, code: &str) -> bool {
        self.code() == Some(code)
    }
    pub fn is_not_found(&self) -> bool {
        self.is("not_found")
    }
    pub fn is_uniqueness(&self) -> bool {
        self.is("uniqueness_error")
    }
    pub fn is_unauthorized(&self) -> bool {
        self.is("unauthorized")
    }
    /// Whether trying the same request again may work: rate limit, server
    /// errors, `locked` and `conflict` (another action holds the resource),
    /// and a lost connection.
    pub fn is_retryable(&self) -> bool {
        match self {
            CloudError::Api { status, code, .. } => {
                *status == 429
                    || *status >= 500
                    || matches!(
                        code.as_str(),
                        "locked" | "conflict" | "rate_limit_exceeded" | "timeout" | "unavailable"
                    )
            }
            CloudError::Network { .. } => true,
            _ => false,
        }
    }
}

impl fmt::Display for CloudError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloudError::Api { code, .. } if code == "unauthorized" => write!(
                f,
                "the Hetzner Cloud API refused the token in HCLOUD_TOKEN (unauthorized): \
                 check that it is a read & write API token of the project you mean"
            ),
            CloudError::Api { method, path, status, code, message } => {
                write!(f, "Hetzner Cloud API: {method} {path} failed with {code} (HTTP {status}): {message}")
            }
            CloudError::Network { method, path, detail } => write!(f, "Hetzner Cloud API: {method} {path}: no answer: {detail}"),
            CloudError::Decode { method, path, detail } => write!(f, "Hetzner Cloud API: {method} {path}: unreadable answer: {detail}"),
            CloudError::ActionFailed { id, command, code, message } => write!(f, "Hetzner Cloud action {id} ({command}) failed: {code}: {message}"),
            CloudError::Timeout { what } => write!(f, "gave up waiting for {what}"),
            CloudError::NoToken => write!(
                f,
                "HCLOUD_TOKEN is not set: create an API token (read & write) in the Hetzner Cloud console, \
                 project → Security → API tokens, and export HCLOUD_TOKEN"
            ),
        }
    }
}

impl std::error::Error for CloudError {}
