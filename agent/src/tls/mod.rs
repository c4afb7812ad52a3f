//! The event's one certificate, for `<domain>` and `*.<domain>`: obtained
//! by ACME DNS-01 through the event's DNS zone (`acme`), or brought by the
//! organiser (`[tls] certificate`/`key`), kept in the state directory
//! (`files`), and reused by every `up` until fewer than [`RENEW_DAYS`]
//! remain. The deploy uploads it to every host with the role secrets
//! (deploy/secrets.rs), as `tls-fullchain.pem` and `tls-key.pem`.

pub mod acme;
pub mod files;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use conference::Event;
use serde::Serialize;

use crate::cloud::dns::DnsApi;
use crate::model::state::StateDir;

/// Renew when fewer days than this remain (Let's Encrypt's certificates
/// last 90 days; it advises renewing with 30 left).
pub const RENEW_DAYS: i64 = 30;

/// Whether venue hands the hosts a certificate (instead of per-host ACME).
pub fn supplied_by_venue(event: &Event) -> bool {
    event.dns.is_some() || event.tls.certificate.is_some()
}

#[derive(Debug, Clone, Serialize)]
pub struct TlsReport {
    /// `acme` (ordered now), `reused` (still good), `supplied` (event.toml's files).
    pub source: &'static str,
    pub names: Vec<String>,
    pub not_after: DateTime<Utc>,
    pub days_left: i64,
}

/// Makes sure the state directory holds the event's certificate, good for
/// at least [`RENEW_DAYS`] more days. None when venue supplies none (no
/// `[dns]` and no `[tls] certificate`): the hosts then use per-host ACME.
pub async fn ensure(
    event: &Event,
    state: &StateDir,
    dns: Option<&DnsApi>,
) -> Result<Option<TlsReport>> {
    let now = Utc::now();
    let report = |source, info: &files::CertInfo| TlsReport {
        source,
        names: info.names.clone(),
        not_after: info.not_after,
        days_left: info.days_left(now),
    };
    if let (Some(cert), Some(key)) = (&event.tls.certificate, &event.tls.key) {
        let chain = std::fs::read_to_string(cert)
            .with_context(|| format!("[tls] certificate: reading {}", cert.display()))?;
        let key_pem = std::fs::read_to_string(key)
            .with_context(|| format!("[tls] key: reading {}", key.display()))?;
        let info = files::inspect(&chain)
            .with_context(|| format!("[tls] certificate {}", cert.display()))?;
        if info.not_after <= now {
            bail!(
                "[tls] certificate {} expired on {}",
                cert.display(),
                info.not_after
            );
        }
        if !info.covers(&event.domain) {
            eprintln!(
                "warning: [tls] certificate {} is for {}, not for both {} and *.{}: some hosts' names will not match",
                cert.display(),
                info.names.join(", "),
                event.domain,
                event.domain
            );
        }
        files::store(state, &chain, &key_pem)?;
        return Ok(Some(report("supplied", &info)));
    }
    let Some(api) = dns else {
        return Ok(None);
    };
    // A killed run may have left its challenge record: it goes first.
    acme::clean_challenges(api, event, state).await?;
    if let Some((_, _, info)) = files::current(state) {
        if info.covers(&event.domain) && info.days_left(now) >= RENEW_DAYS {
            state.journal(
                "up",
                &format!("tls: reusing the certificate (until {})", info.not_after),
            );
            return Ok(Some(report("reused", &info)));
        }
    }
    let info = acme::obtain(api, event, state).await?;
    Ok(Some(report("acme", &info)))
}

/// One line for humans.
pub fn summary(r: &TlsReport) -> String {
    let how = match r.source {
        "acme" => "new from the ACME server",
        "reused" => "reused",
        _ => "from [tls] certificate",
    };
    format!(
        "certificate for {} ({how}): valid until {} ({} days)",
        r.names.join(", "),
        r.not_after.format("%Y-%m-%d"),
        r.days_left
    )
}

/// What `venue up` did for the venue's names: the records, the certificate.
#[derive(Debug, Clone, Serialize, Default)]
pub struct NamesReport {
    pub dns: Vec<crate::cloud::dns::publish::DnsRow>,
    pub tls: Option<TlsReport>,
}

/// `venue up`, after the servers exist: the A/AAAA records of every name,
/// then the certificate (which needs the zone for its DNS-01 challenge).
pub async fn publish_and_certify(
    dns: Option<&DnsApi>,
    event: &Event,
    fleet: &crate::model::fleet::Fleet,
    state: &StateDir,
) -> Result<NamesReport> {
    let mut out = NamesReport::default();
    if let Some(api) = dns {
        out.dns = crate::cloud::dns::publish::publish(api, event, fleet, state).await?;
    }
    let spinner = indicatif::ProgressBar::new_spinner().with_message("certificate");
    if dns.is_some() {
        spinner.enable_steady_tick(std::time::Duration::from_millis(120));
    }
    let tls = ensure(event, state, dns).await;
    spinner.finish_and_clear();
    out.tls = tls?;
    Ok(out)
}

/// The names report as text.
pub fn text(r: &NamesReport) -> String {
    let mut out = String::new();
    if !r.dns.is_empty() {
        out.push_str(&crate::cloud::dns::publish::text(&r.dns));
    }
    if let Some(t) = &r.tls {
        out.push_str(&summary(t));
        out.push('\n');
    }
    out
}
