//! The event's certificate and keys in the state directory (files 0600
//! under `tls/`), and what a certificate says: its names and its end.

use anyhow::{anyhow, Context, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::model::state::StateDir;

/// The chain (leaf first) and its private key, as uploaded to every host.
pub const CHAIN: &str = "tls/fullchain.pem";
pub const KEY: &str = "tls/key.pem";
/// The ACME account: directory URL and credentials (its private key).
pub const ACCOUNT: &str = "tls/acme-account.json";
/// An order in flight: its URL and the certificate key made for it, so that
/// a run killed mid-order finishes that order instead of starting another.
pub const PENDING: &str = "tls/pending-order.json";

/// What a certificate says about itself.
#[derive(Debug, Clone, Serialize)]
pub struct CertInfo {
    pub names: Vec<String>,
    pub not_after: DateTime<Utc>,
    pub serial: String,
}

impl CertInfo {
    /// Whether the certificate is good for `<domain>` and every `<x>.<domain>`.
    pub fn covers(&self, domain: &str) -> bool {
        let wildcard = format!("*.{domain}");
        self.names.iter().any(|n| n == domain) && self.names.contains(&wildcard)
    }

    pub fn days_left(&self, now: DateTime<Utc>) -> i64 {
        (self.not_after - now).num_days()
    }
}

/// Reads the first certificate of a PEM chain.
pub fn inspect(pem: &str) -> Result<CertInfo> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| anyhow!("not a PEM certificate: {e}"))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| anyhow!("not an X.509 certificate: {e}"))?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                names.push(d.to_ascii_lowercase());
            }
        }
    }
    let not_after = DateTime::from_timestamp(cert.validity().not_after.timestamp(), 0)
        .context("certificate end date out of range")?;
    Ok(CertInfo {
        names,
        not_after,
        serial: cert.raw_serial_as_string(),
    })
}

/// The certificate venue holds for the event, if any (chain, key, what it says).
pub fn current(state: &StateDir) -> Option<(String, String, CertInfo)> {
    let chain = state.read(CHAIN)?;
    let key = state.read(KEY)?;
    let info = inspect(&chain).ok()?;
    Some((chain, key, info))
}

/// Writes chain and key (0600), the key first: a chain is only ever beside its key.
pub fn store(state: &StateDir, chain: &str, key: &str) -> Result<()> {
    state.write(KEY, key.as_bytes(), 0o600)?;
    state.write(CHAIN, chain.as_bytes(), 0o600)?;
    Ok(())
}
