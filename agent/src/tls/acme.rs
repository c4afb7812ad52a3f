//! ACME (RFC 8555) with DNS-01 through the Hetzner rrsets API, with
//! instant-acme: one order for `<domain>` and `*.<domain>`; both challenges
//! are answered by one TXT record set `_acme-challenge.<domain>` (two
//! values), labelled for the event and removed afterwards, also when the
//! order fails. The order's URL and the certificate key are saved (0600)
//! before the challenge record is written, so a run killed in between
//! finishes the same order rather than asking for a second certificate.

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use conference::Event;
use instant_acme::{
    Account, AccountBuilder, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier,
    NewAccount, NewOrder, Order, OrderStatus, RetryPolicy,
};
use serde::{Deserialize, Serialize};

use super::files::{self, CertInfo, ACCOUNT, PENDING};
use crate::cloud::dns::DnsApi;
use crate::model::state::StateDir;

/// How long the ACME server may take to validate, and to issue.
const ACME_WAIT: Duration = Duration::from_secs(180);

/// `VENUE_ACME_DIRECTORY` (rehearsals: Pebble), else event.toml's
/// `[tls] acme_directory` (default: Let's Encrypt production).
pub fn directory(event: &Event) -> String {
    std::env::var("VENUE_ACME_DIRECTORY")
        .ok()
        .filter(|d| !d.trim().is_empty())
        .unwrap_or_else(|| event.tls.acme_directory.clone())
}

/// An HTTP client trusting the system roots, or only `VENUE_ACME_ROOT`
/// (a test CA's root, as Pebble's listener has).
fn builder() -> Result<AccountBuilder> {
    match std::env::var("VENUE_ACME_ROOT")
        .ok()
        .filter(|r| !r.trim().is_empty())
    {
        Some(root) => {
            Account::builder_with_root(&root).map_err(|e| anyhow!("VENUE_ACME_ROOT={root}: {e}"))
        }
        None => Account::builder().map_err(|e| anyhow!("ACME client: {e}")),
    }
}

#[derive(Serialize, Deserialize)]
struct StoredAccount {
    directory: String,
    credentials: AccountCredentials,
}

#[derive(Serialize, Deserialize)]
struct Pending {
    directory: String,
    /// The event's domain when it was ordered (a changed domain orders anew).
    domain: String,
    order_url: String,
    /// The certificate's private key (PEM), made before the order completes.
    key_pem: String,
}

/// The event's ACME account on `directory`: the stored one, else a new one
/// (contact: `[tls] email`), stored 0600.
async fn account(event: &Event, state: &StateDir, directory: &str) -> Result<Account> {
    if let Some(text) = state.read(ACCOUNT) {
        let stored: StoredAccount = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not an ACME account file",
                state.path(ACCOUNT).display()
            )
        })?;
        if stored.directory == directory {
            return builder()?
                .from_credentials(stored.credentials)
                .await
                .map_err(|e| anyhow!("{e}"));
        }
    }
    let contact = event.tls.email.as_ref().map(|e| format!("mailto:{e}"));
    let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
    let (account, credentials) = builder()?
        .create(
            &NewAccount {
                contact: &contacts,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            directory.to_owned(),
            None,
        )
        .await
        .map_err(|e| anyhow!("{e}"))?;
    let stored = StoredAccount {
        directory: directory.to_owned(),
        credentials,
    };
    state.write(ACCOUNT, &serde_json::to_vec_pretty(&stored)?, 0o600)?;
    state.journal("up", &format!("tls: ACME account created at {directory}"));
    Ok(account)
}

/// Deletes the event's `_acme-challenge` TXT record sets (leftovers of a
/// killed run, or this run's, once the order is done).
pub async fn clean_challenges(api: &DnsApi, event: &Event, state: &StateDir) -> Result<()> {
    for r in api.event_rrsets(&event.id).await? {
        if r.kind == "TXT" && r.name.split('.').next() == Some("_acme-challenge") {
            api.delete(&event.id, &r).await?;
            state.journal(
                "up",
                &format!("tls: removed the challenge record {}", api.fqdn(&r.name)),
            );
        }
    }
    Ok(())
}

/// Gets a certificate from the ACME server and stores it with its key.
pub async fn obtain(api: &DnsApi, event: &Event, state: &StateDir) -> Result<CertInfo> {
    let directory = directory(event);
    let account = account(event, state, &directory)
        .await
        .with_context(|| format!("the ACME account at {directory}"))?;
    let domain = event.domain.clone();
    let challenge = format!("_acme-challenge.{domain}");
    let rel = api
        .relative(&challenge)
        .with_context(|| format!("{challenge} is not in the zone {}", api.zone.name))?;

    let mut resumed: Option<(Order, String)> = None;
    if let Some(p) = state
        .read(PENDING)
        .and_then(|t| serde_json::from_str::<Pending>(&t).ok())
        .filter(|p| p.directory == directory && p.domain == domain)
    {
        match account.order(p.order_url.clone()).await {
            Ok(mut o) => {
                if o.state().status == OrderStatus::Invalid {
                    tracing::info!("the saved ACME order is invalid; ordering again");
                } else {
                    state.journal("up", &format!("tls: resuming order {}", p.order_url));
                    resumed = Some((o, p.key_pem));
                }
            }
            Err(e) => tracing::info!(error = %e, "the saved ACME order is gone; ordering again"),
        }
    }
    let (mut order, key_pem) = match resumed {
        Some(x) => x,
        None => {
            let ids = [
                Identifier::Dns(domain.clone()),
                Identifier::Dns(format!("*.{domain}")),
            ];
            let order = account
                .new_order(&NewOrder::new(&ids))
                .await
                .map_err(|e| anyhow!("{e}"))
                .with_context(|| format!("ordering a certificate for {domain} and *.{domain}"))?;
            let key = rcgen::KeyPair::generate()?.serialize_pem();
            let pending = Pending {
                directory: directory.clone(),
                domain: domain.clone(),
                order_url: order.url().to_owned(),
                key_pem: key.clone(),
            };
            state.write(PENDING, &serde_json::to_vec(&pending)?, 0o600)?;
            state.journal("up", &format!("tls: ordered {}", order.url()));
            (order, key)
        }
    };
    let result = finish(&mut order, &key_pem, api, event, state, &rel).await;
    // The challenge record goes, whatever happened to the order.
    let cleaned = clean_challenges(api, event, state).await;
    let chain = result?;
    cleaned?;
    let info = files::inspect(&chain).context("the certificate from the ACME server")?;
    files::store(state, &chain, &key_pem)?;
    std::fs::remove_file(state.path(PENDING)).ok();
    state.journal(
        "up",
        &format!(
            "tls: certificate {} for {} until {}",
            info.serial,
            info.names.join(", "),
            info.not_after
        ),
    );
    Ok(info)
}

/// Answers the challenges (when the order still needs it), finalizes with
/// our key, and returns the PEM chain.
async fn finish(
    order: &mut Order,
    key_pem: &str,
    api: &DnsApi,
    event: &Event,
    state: &StateDir,
    rel: &str,
) -> Result<String> {
    let acme = |e: instant_acme::Error| anyhow!("ACME: {e}");
    if order.state().status == OrderStatus::Pending {
        let mut values = Vec::new();
        let mut auths = order.authorizations();
        while let Some(a) = auths.next().await {
            let mut a = a.map_err(acme)?;
            match a.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => bail!("ACME authorization for {} is {other:?}", a.identifier()),
            }
            let ch = a
                .challenge(ChallengeType::Dns01)
                .ok_or_else(|| anyhow!("the ACME server offers no dns-01 challenge"))?;
            values.push(format!("\"{}\"", ch.key_authorization().dns_value()));
        }
        values.sort();
        values.dedup();
        if !values.is_empty() {
            api.put(&event.id, rel, "TXT", &values).await?;
            state.journal(
                "up",
                &format!("tls: challenge record {} set", api.fqdn(rel)),
            );
            let mut auths = order.authorizations();
            while let Some(a) = auths.next().await {
                let mut a = a.map_err(acme)?;
                if a.status != AuthorizationStatus::Pending {
                    continue;
                }
                if let Some(mut ch) = a.challenge(ChallengeType::Dns01) {
                    ch.set_ready().await.map_err(acme)?;
                }
            }
        }
        let status = order
            .poll_ready(&RetryPolicy::new().timeout(ACME_WAIT))
            .await
            .map_err(acme)
            .with_context(|| {
                format!(
                    "waiting for the ACME server to validate {} (its TXT record must be visible on the zone's nameservers)",
                    api.fqdn(rel)
                )
            })?;
        if status != OrderStatus::Ready {
            bail!("the ACME server did not validate the order: it is {status:?}");
        }
    }
    if order.state().status == OrderStatus::Ready {
        let key = rcgen::KeyPair::from_pem(key_pem)?;
        let mut params = rcgen::CertificateParams::new(vec![
            event.domain.clone(),
            format!("*.{}", event.domain),
        ])?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        let csr = params.serialize_request(&key)?;
        order.finalize_csr(csr.der()).await.map_err(acme)?;
    }
    order
        .poll_certificate(&RetryPolicy::new().timeout(ACME_WAIT))
        .await
        .map_err(acme)
        .context("waiting for the certificate")
}
