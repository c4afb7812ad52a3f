//! TLS: the certificate a host presents for each of its names chains to a
//! trusted root and is valid for the name, with days to spare: a warning
//! below [`WARN_DAYS`], a failure below [`FAIL_DAYS`].
//!
//! Trusted roots: the public web's (webpki-roots, what browsers trust), plus
//! `VENUE_ACME_ROOT` (the agent's other CA, as its ACME client takes it) and
//! `VENUE_CHECK_ROOT` (PEM, e.g. the testbed Pebble's `issuer-root.pem`,
//! which signs the certificates Pebble issues).

use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use chrono::{DateTime, Utc};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;

use super::{probe, Check, Outcome, Probe, Target};

pub const WARN_DAYS: i64 = 14;
pub const FAIL_DAYS: i64 = 3;

/// The environment variables naming extra root certificates (PEM files).
pub const ROOT_VARS: &[&str] = &["VENUE_ACME_ROOT", "VENUE_CHECK_ROOT"];

/// A client configuration trusting the web's roots and those `ROOT_VARS` name.
pub fn client_config() -> Result<Arc<rustls::ClientConfig>> {
    let mut extra = Vec::new();
    for var in ROOT_VARS {
        if let Some(path) = std::env::var_os(var).filter(|v| !v.is_empty()) {
            let pem = std::fs::read(&path)
                .with_context(|| format!("{var}={}: cannot read", path.to_string_lossy()))?;
            extra.push((format!("{var}={}", path.to_string_lossy()), pem));
        }
    }
    config_with(&extra)
}

/// The web's roots plus the certificates in `extra` (a label, PEM bytes).
pub fn config_with(extra: &[(String, Vec<u8>)]) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for (label, pem) in extra {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<_, _>>()
            .map_err(|e| anyhow!("{label}: not PEM certificates: {e}"))?;
        if certs.is_empty() {
            anyhow::bail!("{label}: holds no certificate");
        }
        for c in certs {
            roots
                .add(c)
                .map_err(|e| anyhow!("{label}: not a usable root certificate: {e}"))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Connects to `addr` over TCP and TLS for `name`, verifying the chain. A
/// handshake the server cut (reset, or closed early) is tried once more
/// after a moment: a service that restarts as the probe connects (coturn,
/// for a renewed certificate) cuts what it had accepted and serves the next.
/// A refused certificate or any other TLS error is not tried again.
pub async fn connect(
    check: &Check,
    addr: std::net::SocketAddr,
    name: &str,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    let server_name = ServerName::try_from(name.to_owned())
        .map_err(|e| format!("`{name}` is not a TLS name: {e}"))?;
    let connector = tokio_rustls::TlsConnector::from(check.tls.clone());
    let mut cut: Option<String> = None;
    loop {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("TCP {} cannot connect: {e}", addr.port()))?;
        let e = match connector.connect(server_name.clone(), tcp).await {
            Ok(stream) => return Ok(stream),
            Err(e) => e,
        };
        let said = format!("TLS {} for {name}: {}", addr.port(), tls_cause(&e));
        let was_cut = matches!(
            e.kind(),
            std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::UnexpectedEof
                | std::io::ErrorKind::BrokenPipe
        ) && e.get_ref().is_none_or(|i| !i.is::<rustls::Error>());
        match cut {
            None if was_cut => {
                cut = Some(said);
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
            Some(first) => return Err(format!("{said} (twice; the first: {first})")),
            None => return Err(said),
        }
    }
}

/// The rustls error inside an io::Error, said plainly.
fn tls_cause(e: &std::io::Error) -> String {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::InvalidCertificate(c)) => format!("certificate refused: {c:?}"),
        Some(other) => other.to_string(),
        None => e.to_string(),
    }
}

/// When the first certificate of a presented chain ends.
pub fn not_after(leaf: &CertificateDer<'_>) -> Result<DateTime<Utc>, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| format!("the certificate cannot be read: {e}"))?;
    DateTime::from_timestamp(cert.validity().not_after.timestamp(), 0)
        .ok_or_else(|| "the certificate's end date is out of range".into())
}

/// How many days a certificate has left, judged.
pub fn judge(name: &str, port: u16, end: DateTime<Utc>, now: DateTime<Utc>) -> Outcome {
    let days = (end - now).num_days();
    let when = end.format("%Y-%m-%d %H:%M UTC");
    if days < FAIL_DAYS {
        Outcome::Fail(format!(
            "TLS {port}: the certificate for {name} expires in {days} days ({when}): renew it now (venue up, then venue deploy)"
        ))
    } else if days < WARN_DAYS {
        Outcome::Warn(format!(
            "the certificate for {name} (TLS {port}) expires in {days} days ({when})"
        ))
    } else {
        Outcome::Ok(format!("valid for {name}, {days} days left"))
    }
}

/// One probe per name of the host, on its HTTPS port.
pub async fn probes(check: &Check, target: &Target) -> Vec<Probe> {
    let port = target.ports.https;
    let mut out = Vec::new();
    for name in &target.names {
        let p = probe(
            check,
            target,
            format!("tls {name}"),
            &format!("TLS {port}"),
            async {
                let stream = match connect(check, target.socket(port), name).await {
                    Ok(s) => s,
                    Err(e) => return Outcome::Fail(e),
                };
                let (_, conn) = stream.get_ref();
                let Some(leaf) = conn.peer_certificates().and_then(|c| c.first()) else {
                    return Outcome::Fail(format!("TLS {port}: no certificate presented"));
                };
                match not_after(leaf) {
                    Ok(end) => judge(name, port, end, Utc::now()),
                    Err(e) => Outcome::Fail(e),
                }
            },
        )
        .await;
        out.push(p);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_left_warn_below_14_and_fail_below_3() {
        let now = Utc::now();
        let at = |days: i64, hours: i64| {
            judge(
                "a.example.org",
                443,
                now + chrono::Duration::days(days) + chrono::Duration::hours(hours),
                now,
            )
        };
        assert!(matches!(at(14, 1), Outcome::Ok(m) if m.contains("14 days left")));
        assert!(matches!(at(13, 23), Outcome::Warn(m) if m.contains("expires in 13 days")));
        assert!(matches!(at(3, 1), Outcome::Warn(_)));
        assert!(
            matches!(at(2, 23), Outcome::Fail(m) if m.contains("TLS 443") && m.contains("expires in 2 days"))
        );
        assert!(matches!(at(-1, 0), Outcome::Fail(_)));
    }

    #[test]
    fn a_root_file_without_certificates_is_an_error() {
        let e = config_with(&[("VENUE_CHECK_ROOT=x".into(), b"not pem".to_vec())]).unwrap_err();
        assert!(e.to_string().contains("VENUE_CHECK_ROOT=x"), "{e}");
    }
}
