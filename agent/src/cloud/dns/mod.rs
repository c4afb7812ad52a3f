//! DNS through the Hetzner Cloud API (`/zones`, `/zones/{zone}/rrsets`):
//! the event's zone, its record sets, and the actions that change them.
//! Every record set venue writes carries `venue/event=<id>`; nothing without
//! that label is changed or deleted, whatever the API's filter said.

pub mod names;
pub mod publish;

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use conference::event::Dns;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::labels::{self, Labels};
use super::{Client, ClientConfig, CloudError};

/// TTL of every record venue writes: short, so a re-rented server's new
/// address is seen within a minute.
pub const TTL: u32 = 60;
/// How long a zone action may run.
const ACTION_WAIT: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Zone {
    pub id: u64,
    pub name: String,
    #[serde(default)]
    pub mode: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct RecordValue {
    pub value: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct RrSet {
    pub id: String,
    /// Relative to the zone; `@` for its apex.
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub ttl: Option<u32>,
    #[serde(default)]
    pub labels: Labels,
    #[serde(default)]
    pub records: Vec<RecordValue>,
}

impl RrSet {
    pub fn values(&self) -> Vec<String> {
        self.records.iter().map(|r| r.value.clone()).collect()
    }
}

/// The event's zone, with a client holding the token that may change it.
#[derive(Debug, Clone)]
pub struct DnsApi {
    client: Client,
    pub zone: Zone,
    /// Where the token came from, for messages.
    pub token_var: String,
}

/// A client for the zone's project: `[dns] token_env` when set (a zone kept
/// in another project), else `HCLOUD_TOKEN`; the endpoint is the same.
fn client_for(dns: &Dns) -> Result<(Client, String)> {
    let var = dns
        .token_env
        .clone()
        .unwrap_or_else(|| "HCLOUD_TOKEN".into());
    let token = std::env::var(&var)
        .ok()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty());
    let cfg = match (token, &dns.token_env) {
        (Some(t), _) => ClientConfig::from_env_with_token(&t),
        (None, None) => return Err(CloudError::NoToken.into()),
        (None, Some(v)) => bail!(
            "[dns] token_env names {v}, which is not set: export {v} with an API token of the project that holds the zone {}",
            dns.zone
        ),
    };
    Ok((Client::new(cfg)?, var))
}

/// `GET`-style errors of the zone API, told in the organiser's terms.
fn zone_error(e: CloudError, zone: &str, var: &str) -> anyhow::Error {
    if e.is_unauthorized() {
        anyhow!(
            "the token in {var} was refused (unauthorized) while looking for the DNS zone {zone}"
        )
    } else if e.is("forbidden") {
        anyhow!("the token in {var} may not read DNS zones (forbidden): use a read & write token of the project that holds {zone}")
    } else {
        anyhow!(e).context(format!("looking up the DNS zone {zone}"))
    }
}

impl DnsApi {
    /// Finds the event's zone. A zone the token cannot see, or one that is
    /// not a primary zone, is an error here: `up` calls this before it
    /// rents anything.
    pub async fn open(dns: &Dns) -> Result<DnsApi> {
        let (client, var) = client_for(dns)?;
        let zones: Vec<Zone> = client
            .list("/zones", &[("name", dns.zone.clone())], "zones")
            .await
            .map_err(|e| zone_error(e, &dns.zone, &var))?;
        let Some(zone) = zones.into_iter().find(|z| z.name == dns.zone) else {
            bail!(
                "the DNS zone {} is not visible to the token in {var}: create it in the Hetzner console \
                 (DNS → Add zone) in the project of that token, or set `[dns] token_env` to the variable \
                 holding a token of the project that has it; nothing was rented",
                dns.zone
            );
        };
        if !zone.mode.is_empty() && zone.mode != "primary" {
            bail!(
                "the DNS zone {} is a {} zone: venue can only write records in a primary zone",
                zone.name,
                zone.mode
            );
        }
        Ok(DnsApi {
            client,
            zone,
            token_var: var,
        })
    }

    /// The name relative to the zone (`@` for its apex), or None outside it.
    pub fn relative(&self, fqdn: &str) -> Option<String> {
        let fqdn = fqdn.trim_end_matches('.').to_ascii_lowercase();
        if fqdn == self.zone.name {
            Some("@".into())
        } else {
            fqdn.strip_suffix(&format!(".{}", self.zone.name))
                .map(str::to_owned)
        }
    }

    pub fn fqdn(&self, rel: &str) -> String {
        if rel == "@" {
            self.zone.name.clone()
        } else {
            format!("{rel}.{}", self.zone.name)
        }
    }

    fn rrsets_path(&self) -> String {
        format!("/zones/{}/rrsets", self.zone.id)
    }

    fn rrset_path(&self, rel: &str, kind: &str) -> String {
        format!("/zones/{}/rrsets/{rel}/{kind}", self.zone.id)
    }

    /// Every record set labelled for `event` (checked again here).
    pub async fn event_rrsets(&self, event: &str) -> Result<Vec<RrSet>> {
        let sets: Vec<RrSet> = self
            .client
            .list(
                &self.rrsets_path(),
                &[("label_selector", labels::selector(event))],
                "rrsets",
            )
            .await
            .with_context(|| format!("listing the records of {}", self.zone.name))?;
        Ok(sets
            .into_iter()
            .filter(|r| labels::belongs(&r.labels, event))
            .collect())
    }

    /// One record set, if it exists.
    pub async fn get(&self, rel: &str, kind: &str) -> Result<Option<RrSet>> {
        match self
            .client
            .get::<RrSet>(&self.rrset_path(rel, kind), &[], "rrset")
            .await
        {
            Ok(r) => Ok(Some(r)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(anyhow!(e).context(format!("reading {}/{kind}", self.fqdn(rel)))),
        }
    }

    /// Makes `rel`/`kind` hold exactly `values` (TTL [`TTL`]), labelled for
    /// `event`. A record set of that name and type without the event's
    /// label is someone else's: it is left alone and this is an error.
    /// Returns whether anything changed.
    pub async fn put(&self, event: &str, rel: &str, kind: &str, values: &[String]) -> Result<bool> {
        let fqdn = self.fqdn(rel);
        let records: Vec<RecordValue> = values
            .iter()
            .map(|v| RecordValue { value: v.clone() })
            .collect();
        let mut actions = Vec::new();
        match self.get(rel, kind).await? {
            Some(r) if !labels::belongs(&r.labels, event) => bail!(
                "{fqdn} already has {kind} records ({}) without the label {}={event}: venue does not \
                 overwrite records it did not make; delete them or choose another name",
                r.values().join(", "),
                labels::EVENT
            ),
            Some(r) => {
                let mut have = r.values();
                let mut want = values.to_vec();
                have.sort();
                want.sort();
                if have == want && r.ttl == Some(TTL) {
                    return Ok(false);
                }
                if have != want {
                    let v = self
                        .client
                        .request(
                            Method::POST,
                            &format!("{}/actions/set_records", self.rrset_path(rel, kind)),
                            &[],
                            Some(&json!({"records": records})),
                        )
                        .await
                        .with_context(|| format!("setting {fqdn} {kind}"))?;
                    actions.extend(v["action"]["id"].as_u64());
                }
                if r.ttl != Some(TTL) {
                    let v = self
                        .client
                        .request(
                            Method::POST,
                            &format!("{}/actions/change_ttl", self.rrset_path(rel, kind)),
                            &[],
                            Some(&json!({"ttl": TTL})),
                        )
                        .await
                        .with_context(|| format!("changing the TTL of {fqdn} {kind}"))?;
                    actions.extend(v["action"]["id"].as_u64());
                }
            }
            None => {
                let body = json!({"name": rel, "type": kind, "ttl": TTL, "records": records, "labels": labels::event(event)});
                match self
                    .client
                    .request(Method::POST, &self.rrsets_path(), &[], Some(&body))
                    .await
                {
                    Ok(v) => actions.extend(v["action"]["id"].as_u64()),
                    // A lost answer to our own create: look again.
                    Err(e) if e.is_uniqueness() => {
                        return Box::pin(self.put(event, rel, kind, values)).await
                    }
                    Err(e) => return Err(anyhow!(e).context(format!("creating {fqdn} {kind}"))),
                }
            }
        }
        self.wait(&actions, &format!("{fqdn} {kind}")).await?;
        Ok(true)
    }

    /// Deletes a record set of `event` (its label is checked first).
    pub async fn delete(&self, event: &str, r: &RrSet) -> Result<()> {
        if !labels::belongs(&r.labels, event) {
            bail!(
                "refusing to delete {} {}: it is not labelled {}={event}",
                self.fqdn(&r.name),
                r.kind,
                labels::EVENT
            );
        }
        match self
            .client
            .request(
                Method::DELETE,
                &self.rrset_path(&r.name, &r.kind),
                &[],
                None,
            )
            .await
        {
            Ok(v) => {
                let ids: Vec<u64> = v["action"]["id"].as_u64().into_iter().collect();
                self.wait(&ids, &format!("deleting {} {}", self.fqdn(&r.name), r.kind))
                    .await
            }
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => {
                Err(anyhow!(e).context(format!("deleting {} {}", self.fqdn(&r.name), r.kind)))
            }
        }
    }

    /// Waits for zone actions (`GET /zones/actions?id=…`) to finish.
    async fn wait(&self, ids: &[u64], what: &str) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let mut interval = self.client.poll_start();
        loop {
            let q: Vec<(&str, String)> = ids.iter().map(|i| ("id", i.to_string())).collect();
            let actions: Vec<super::types::Action> = self
                .client
                .list("/zones/actions", &q, "actions")
                .await
                .with_context(|| format!("waiting for {what}"))?;
            if let Some(e) = super::actions::first_error(&actions) {
                return Err(anyhow!(e).context(what.to_owned()));
            }
            if actions.iter().all(|a| a.status != "running") {
                return Ok(());
            }
            if started.elapsed() > ACTION_WAIT {
                return Err(CloudError::Timeout {
                    what: what.to_owned(),
                }
                .into());
            }
            tokio::time::sleep(interval).await;
            interval = (interval * 2).min(Duration::from_secs(2));
        }
    }
}
