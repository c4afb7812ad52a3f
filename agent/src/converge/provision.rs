//! Renting: the cloud holds every server of a target set, running, with its
//! pinned host key, the event's SSH key and firewall, labelled addresses,
//! and fleet.json says so. Idempotent and resumable: every step first looks
//! at what the cloud already holds for the event (by label, and by name
//! where names are unique) and creates only what is missing. A request
//! whose answer got lost is safe to repeat: names are unique per project,
//! so a repeated create answers `uniqueness_error` and we adopt the
//! resource that the first attempt made.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use conference::Event;
use futures_util::stream::{self, StreamExt};
use reqwest::Method;
use serde::Serialize;
use serde_json::json;

use crate::cloud::inventory::ip_ids;
use crate::cloud::types::{Firewall, PrimaryIp, Server, SshKey};
use crate::cloud::{actions, labels, Client, CloudError};
use crate::images::{self as image, Arch, Boot};
use crate::model::fleet::{self, Fleet, FleetServer};
use crate::model::keys;
use crate::model::state::StateDir;
use crate::plan::{Plan, PlannedServer};

/// Requests in flight at once while creating servers or labelling addresses.
const PARALLEL: usize = 5;
/// How long servers may take to be created and to start.
const SERVER_WAIT: Duration = Duration::from_secs(15 * 60);
/// Rounds of "create what is missing" when creations fail.
const ROUNDS: usize = 3;

#[derive(Debug, Serialize)]
pub struct UpReport {
    pub fleet: Fleet,
    pub created: Vec<String>,
    pub adopted: Vec<String>,
    /// Servers labelled for the event that the plan does not name.
    pub extra: Vec<String>,
    /// The event's servers created from a venue snapshot (they run the base
    /// system from their first boot: no install phase).
    pub from_snapshot: Vec<String>,
    pub requests: u64,
    pub fleet_file: PathBuf,
}

/// The install phase's way back into the cloud: deletes server `name` (its
/// kexec never took) and provisions again, which creates it under the same
/// name, labels, user_data (the same pinned host key) and SSH key. Returns
/// its new address. `target` is what the convergence rents (the others are
/// not created again).
pub fn recreate_server(
    event: &Event,
    state: &StateDir,
    target: &[PlannedServer],
    name: &str,
) -> Result<String> {
    crate::runtime::block_on(async {
        let client = Client::from_env()?;
        let servers = list_servers(&client, &event.id).await?;
        if let Some(old) = servers.get(name) {
            state.journal(
                "up",
                &format!(
                    "recreating server {name} (id {}): kexec did not take",
                    old.id
                ),
            );
            match client
                .request(Method::DELETE, &format!("/servers/{}", old.id), &[], None)
                .await
            {
                Ok(v) => {
                    let ids: Vec<u64> = v["action"]["id"].as_u64().into_iter().collect();
                    let done = actions::wait_all(&client, &ids, "deleting the server", SERVER_WAIT)
                        .await?;
                    if let Some(e) = actions::first_error(&done) {
                        return Err(anyhow!(e).context(format!("deleting server {name}")));
                    }
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        let report = provision_servers(&client, event, target, state).await?;
        report
            .fleet
            .servers
            .iter()
            .find(|s| s.name == name)
            .and_then(|s| s.ipv4.clone().or_else(|| s.ipv6.clone()))
            .with_context(|| format!("{name} has no address after it was created again"))
    })
}

/// The records (and certificate) again, for the fleet as it is now.
pub async fn republish_names(event: &Event, state: &StateDir) -> Result<crate::tls::NamesReport> {
    let fleet: Fleet =
        serde_json::from_slice(&std::fs::read(state.path("fleet.json"))?).context("fleet.json")?;
    let dns = crate::cloud::dns::publish::preflight(
        event,
        fleet
            .servers
            .iter()
            .map(|s| (s.name.as_str(), s.role.as_str())),
    )
    .await?;
    crate::tls::publish_and_certify(dns.as_ref(), event, &fleet, state).await
}

/// Creates what is missing of the plan's fleet and writes fleet.json.
pub async fn provision(
    client: &Client,
    event: &Event,
    plan: &Plan,
    state: &StateDir,
) -> Result<UpReport> {
    provision_servers(client, event, &plan.fleet(), state).await
}

/// Creates what is missing of `planned` and writes fleet.json with the
/// servers of `planned` (other servers of the event are left as they are
/// and reported as `extra`).
pub async fn provision_servers(
    client: &Client,
    event: &Event,
    planned: &[PlannedServer],
    state: &StateDir,
) -> Result<UpReport> {
    labels::check_value(&event.id).map_err(|e| anyhow!("event id: {e}"))?;
    let sent_before = client.requests_sent();
    state.journal("up", &format!("start: {} servers planned", planned.len()));
    let key = ensure_ssh_key(client, event, state).await?;
    let firewall = ensure_firewall(client, event).await?;
    let (mut created, mut adopted) = (Vec::new(), Vec::new());

    let mut servers = list_servers(client, &event.id).await?;
    // What new servers boot (`[cloud] image`; "auto": a venue snapshot when
    // one of this base system exists). Only asked when something is missing.
    let boots: BTreeMap<Arch, Boot> = if planned.iter().any(|p| !servers.contains_key(&p.name)) {
        let archs: BTreeSet<Arch> = planned
            .iter()
            .map(|p| Arch::of_server_type(&p.server_type))
            .collect();
        let (boots, warnings) = image::resolve(client, event, &archs).await?;
        for w in warnings {
            tracing::warn!("{w}");
            state.journal("up", &format!("warning: {w}"));
        }
        boots
    } else {
        BTreeMap::new()
    };
    for round in 0..ROUNDS {
        let missing: Vec<&PlannedServer> = planned
            .iter()
            .filter(|p| !servers.contains_key(&p.name))
            .collect();
        if round == 0 {
            adopted = planned
                .iter()
                .filter(|p| servers.contains_key(&p.name))
                .map(|p| p.name.clone())
                .collect();
        }
        if missing.is_empty() {
            break;
        }
        // Owned items: futures over borrowed ones are not `Send` for every
        // lifetime (a rustc limitation), and callers spawn `provision`.
        let missing: Vec<PlannedServer> = missing.into_iter().cloned().collect();
        let (key, firewall, boots) = (&key, &firewall, &boots);
        let results: Vec<Result<(Server, Vec<u64>, bool)>> = stream::iter(missing)
            .map(|p| async move {
                let boot = boots
                    .get(&Arch::of_server_type(&p.server_type))
                    .ok_or_else(|| anyhow!("no image resolved for {}", p.server_type))?;
                create_server(client, event, &p, boot, key, firewall, state).await
            })
            .buffer_unordered(PARALLEL)
            .collect()
            .await;
        let mut action_ids = Vec::new();
        for r in results {
            let (server, ids, fresh) = r?;
            if fresh {
                created.push(server.name.clone())
            } else {
                adopted.push(server.name.clone())
            }
            action_ids.extend(ids);
            servers.insert(server.name.clone(), server);
        }
        let finished =
            actions::wait_all(client, &action_ids, "creating servers", SERVER_WAIT).await?;
        let failed: Vec<u64> = finished
            .iter()
            .filter(|a| a.status == "error")
            .flat_map(|a| {
                a.resources
                    .iter()
                    .filter(|r| r.kind == "server")
                    .map(|r| r.id)
            })
            .collect();
        if failed.is_empty() {
            break;
        }
        // A server whose creation failed is broken: delete it and make it again.
        let err = actions::first_error(&finished)
            .map(|e| e.to_string())
            .unwrap_or_default();
        tracing::warn!(count = failed.len(), error = %err, "server creation failed; deleting and retrying");
        if round + 1 == ROUNDS {
            bail!("creating servers failed {ROUNDS} times; last error: {err}");
        }
        let mut delete_actions = Vec::new();
        for id in &failed {
            state.journal("up", &format!("deleting failed server {id}"));
            match client
                .request(Method::DELETE, &format!("/servers/{id}"), &[], None)
                .await
            {
                Ok(v) => delete_actions.extend(v["action"]["id"].as_u64()),
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
            servers.retain(|_, s| s.id != *id);
            created.retain(|n| servers.contains_key(n));
        }
        actions::wait_all(
            client,
            &delete_actions,
            "deleting failed servers",
            SERVER_WAIT,
        )
        .await?;
    }

    let servers = settle(client, &event.id, planned).await?;
    label_addresses(client, &event.id, &servers).await?;
    let from_snapshot: Vec<String> = servers
        .values()
        .filter(|s| s.image.as_ref().is_some_and(image::booted_from_snapshot))
        .map(|s| s.name.clone())
        .collect();
    let extra: Vec<String> = servers
        .values()
        .filter(|s| !planned.iter().any(|p| p.name == s.name))
        .map(|s| s.name.clone())
        .collect();
    let all: Vec<Server> = servers.into_values().collect();
    let fleet = build_fleet(event, planned, &all);
    let own: Vec<String> = fleet
        .servers
        .iter()
        .flat_map(|s| s.ipv4.iter().chain(s.ipv6.iter()).cloned())
        .collect();
    ensure_rules(client, event, &firewall, &own).await?;
    let fleet_file = fleet::write(state, &fleet)?;
    state.journal(
        "up",
        &format!("done: {} created, {} adopted", created.len(), adopted.len()),
    );
    adopted.sort();
    adopted.dedup();
    Ok(UpReport {
        fleet,
        created,
        adopted,
        extra,
        from_snapshot,
        requests: client.requests_sent() - sent_before,
        fleet_file,
    })
}

pub async fn list_servers(client: &Client, event: &str) -> Result<BTreeMap<String, Server>> {
    let servers: Vec<Server> = client
        .list(
            "/servers",
            &[("label_selector", labels::selector(event))],
            "servers",
        )
        .await?;
    Ok(servers
        .into_iter()
        .filter(|s| labels::belongs(&s.labels, event))
        .map(|s| (s.name.clone(), s))
        .collect())
}

/// The event's deploy key in the cloud: found by fingerprint, else created.
async fn ensure_ssh_key(client: &Client, event: &Event, state: &StateDir) -> Result<SshKey> {
    let pair = keys::deploy_key(state, &event.id)?;
    let fp = keys::md5_fingerprint(&pair.public).ok_or_else(|| {
        anyhow!(
            "cannot fingerprint the deploy key {}",
            state.path("deploy_ed25519.pub").display()
        )
    })?;
    let fp_query = [("fingerprint", fp.clone())];
    let by_fp = || client.list::<SshKey>("/ssh_keys", &fp_query, "ssh_keys");
    if let Some(k) = by_fp().await?.into_iter().next() {
        return Ok(k);
    }
    let name = format!("venue-{}-deploy", event.id);
    let body = json!({"name": name, "public_key": pair.public, "labels": labels::event(&event.id)});
    for _ in 0..2 {
        match client
            .request(Method::POST, "/ssh_keys", &[], Some(&body))
            .await
        {
            Ok(v) => {
                state.journal("up", &format!("created ssh key {name}"));
                return Ok(crate::cloud::client::decode(
                    &v,
                    "ssh_key",
                    "POST",
                    "/ssh_keys",
                )?);
            }
            Err(e) if e.is_uniqueness() => {
                if let Some(k) = by_fp().await?.into_iter().next() {
                    return Ok(k);
                }
                // The name is taken by another key: ours from a lost state
                // directory (replace it), or someone else's (stop).
                let same_name: Vec<SshKey> = client
                    .list("/ssh_keys", &[("name", name.clone())], "ssh_keys")
                    .await?;
                match same_name.into_iter().next() {
                    Some(old) if labels::belongs(&old.labels, &event.id) => {
                        state.journal("up", &format!("replacing ssh key {name} (its private half is not in this state directory)"));
                        match client.request(Method::DELETE, &format!("/ssh_keys/{}", old.id), &[], None).await {
                            Ok(_) => {}
                            Err(e) if e.is_not_found() => {}
                            Err(e) => return Err(e.into()),
                        }
                    }
                    Some(_) => bail!("an SSH key named {name} exists in the project without the label {}={}: rename or delete it", labels::EVENT, event.id),
                    None => {}
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    bail!("could not create the SSH key {name}")
}

/// The firewall's rules once the fleet's addresses are known: the event's own
/// servers (and only they) may reach the main Jitsi host's XMPP port and the
/// stream origin's RTMP ingest. Also
/// repairs a firewall made by an older venue or changed by hand (one request
/// and one action; none when nothing changed).
async fn ensure_rules(client: &Client, event: &Event, f: &Firewall, own: &[String]) -> Result<()> {
    if !crate::cloud::firewall::same_rules(&f.rules, event, own) {
        let body = json!({"rules": crate::cloud::firewall::rules(event, own)});
        let path = format!("/firewalls/{}/actions/set_rules", f.id);
        let v = client
            .request(Method::POST, &path, &[], Some(&body))
            .await?;
        let ids: Vec<u64> = v["actions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a["id"].as_u64())
            .collect();
        let done = actions::wait_all(client, &ids, "updating firewall rules", SERVER_WAIT).await?;
        if let Some(e) = actions::first_error(&done) {
            return Err(anyhow!(e).context(format!("updating the rules of firewall {}", f.name)));
        }
    }
    Ok(())
}

/// The event's firewall: found by label, else created (its rules are settled
/// by [`ensure_rules`] once the servers exist).
async fn ensure_firewall(client: &Client, event: &Event) -> Result<Firewall> {
    let sel = [("label_selector", labels::selector(&event.id))];
    let name = format!("venue-{}", event.id);
    let found: Vec<Firewall> = client.list("/firewalls", &sel, "firewalls").await?;
    if let Some(f) = found.iter().find(|f| f.name == name).or(found.first()) {
        return Ok(f.clone());
    }
    let body = json!({"name": name, "labels": labels::event(&event.id), "rules": crate::cloud::firewall::rules(event, &[])});
    match client
        .request(Method::POST, "/firewalls", &[], Some(&body))
        .await
    {
        Ok(v) => Ok(crate::cloud::client::decode(
            &v,
            "firewall",
            "POST",
            "/firewalls",
        )?),
        Err(e) if e.is_uniqueness() => {
            let same: Vec<Firewall> = client
                .list("/firewalls", &[("name", name.clone())], "firewalls")
                .await?;
            match same.into_iter().next() {
                Some(f) if labels::belongs(&f.labels, &event.id) => Ok(f),
                _ => bail!(
                    "a firewall named {name} exists without the label {}={}: rename or delete it",
                    labels::EVENT,
                    event.id
                ),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Creates one server; returns it, the actions to wait for, and whether it
/// is new (false: a previous, unanswered attempt had made it).
async fn create_server(
    client: &Client,
    event: &Event,
    p: &PlannedServer,
    boot: &Boot,
    key: &SshKey,
    fw: &Firewall,
    state: &StateDir,
) -> Result<(Server, Vec<u64>, bool)> {
    // The host key is on disk before the server exists, so a crash between
    // the two leaves a server whose key we still have.
    let host = keys::host_key(state, &p.name)?;
    let body = json!({
        "name": p.name,
        "server_type": p.server_type,
        "location": p.location,
        "image": boot.image,
        "labels": labels::role(&event.id, &p.role.to_string()),
        "ssh_keys": [key.name],
        "firewalls": [{"firewall": fw.id}],
        "user_data": keys::user_data(&p.name, &host),
        "start_after_create": true,
        "public_net": {"enable_ipv4": true, "enable_ipv6": true},
    });
    let from = match boot.snapshot {
        Some(id) => format!("venue image {id}"),
        None => boot.image.clone(),
    };
    state.journal("up", &format!("creating server {} from {from}", p.name));
    match client
        .request(Method::POST, "/servers", &[], Some(&body))
        .await
    {
        Ok(v) => {
            let server: Server = crate::cloud::client::decode(&v, "server", "POST", "/servers")?;
            let mut ids: Vec<u64> = v["action"]["id"].as_u64().into_iter().collect();
            ids.extend(
                v["next_actions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|a| a["id"].as_u64()),
            );
            state.journal(
                "up",
                &format!("created server {} (id {})", p.name, server.id),
            );
            Ok((server, ids, true))
        }
        Err(e) if e.is_uniqueness() => {
            let same: Vec<Server> = client
                .list("/servers", &[("name", p.name.clone())], "servers")
                .await?;
            match same.into_iter().next() {
                Some(s) if labels::belongs(&s.labels, &event.id) => Ok((s, vec![], false)),
                Some(_) => bail!("a server named {} exists without the label {}={}: venue will not adopt it; rename or delete it", p.name, labels::EVENT, event.id),
                None => Err(anyhow!(e).context(format!("creating server {}", p.name))),
            }
        }
        Err(e) => Err(anyhow!(e).context(format!("creating server {}", p.name))),
    }
}

/// Lists the event's servers until every planned one runs: powers on those
/// that are off, and waits for those a previous run left starting.
async fn settle(
    client: &Client,
    event: &str,
    planned: &[PlannedServer],
) -> Result<BTreeMap<String, Server>> {
    let started = std::time::Instant::now();
    let mut interval = client.poll_start();
    let mut powered: Vec<u64> = Vec::new();
    loop {
        let servers = list_servers(client, event).await?;
        let missing: Vec<&str> = planned
            .iter()
            .filter(|p| !servers.contains_key(&p.name))
            .map(|p| p.name.as_str())
            .collect();
        if !missing.is_empty() {
            bail!(
                "servers vanished while `up` ran: {} (run `venue up` again)",
                missing.join(", ")
            );
        }
        let not_running: Vec<&Server> = planned
            .iter()
            .map(|p| &servers[&p.name])
            .filter(|s| s.status != "running")
            .collect();
        if not_running.is_empty() {
            return Ok(servers);
        }
        let mut ids = Vec::new();
        let off: Vec<u64> = not_running
            .iter()
            .filter(|s| s.status == "off" && !powered.contains(&s.id))
            .map(|s| s.id)
            .collect();
        for id in off {
            let v = client
                .request(
                    Method::POST,
                    &format!("/servers/{id}/actions/poweron"),
                    &[],
                    None,
                )
                .await?;
            ids.extend(v["action"]["id"].as_u64());
            powered.push(id);
        }
        if !ids.is_empty() {
            let done = actions::wait_all(client, &ids, "starting servers", SERVER_WAIT).await?;
            if let Some(e) = actions::first_error(&done) {
                return Err(anyhow!(e).context("powering on servers"));
            }
            continue;
        }
        if started.elapsed() > SERVER_WAIT {
            let names: Vec<String> = not_running
                .iter()
                .map(|s| format!("{} ({})", s.name, s.status))
                .collect();
            return Err(CloudError::Timeout {
                what: format!("servers to run: {}", names.join(", ")),
            }
            .into());
        }
        tokio::time::sleep(interval).await;
        interval = (interval * 2).min(Duration::from_secs(2));
    }
}

/// Labels the primary IPs that came with the servers (Hetzner creates them
/// unlabelled), so that `status` and `down` see them as the event's.
async fn label_addresses(
    client: &Client,
    event: &str,
    servers: &BTreeMap<String, Server>,
) -> Result<()> {
    let labelled: Vec<PrimaryIp> = client
        .list(
            "/primary_ips",
            &[("label_selector", labels::selector(event))],
            "primary_ips",
        )
        .await?;
    let todo: Vec<(u64, String)> = servers
        .values()
        .flat_map(|s| {
            ip_ids(s)
                .into_iter()
                .map(move |id| (id, s.labels.get(labels::ROLE).cloned().unwrap_or_default()))
        })
        .filter(|(id, _)| !labelled.iter().any(|p| p.id == *id))
        .collect();
    let results: Vec<Result<(), CloudError>> = stream::iter(todo)
        .map(|(id, role)| async move {
            let body = json!({"labels": if role.is_empty() { labels::event(event) } else { labels::role(event, &role) }});
            match client.request(Method::PUT, &format!("/primary_ips/{id}"), &[], Some(&body)).await {
                Ok(_) => Ok(()),
                Err(e) if e.is_not_found() => Ok(()),
                Err(e) => Err(e),
            }
        })
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    results
        .into_iter()
        .collect::<Result<Vec<()>, _>>()
        .context("labelling primary IPs")?;
    Ok(())
}

/// The fleet from the plan's servers as they exist in the cloud (matched by
/// name), in the plan's order, then the static hosts (one entry per role).
fn build_fleet(event: &Event, planned: &[PlannedServer], existing: &[Server]) -> Fleet {
    let mut servers: Vec<FleetServer> = planned
        .iter()
        .filter_map(|p| existing.iter().find(|s| s.name == p.name).map(|s| (p, s)))
        .map(|(p, s)| FleetServer {
            name: p.name.clone(),
            role: p.role.to_string(),
            server_type: s.server_type.name.clone(),
            location: s.location.name.clone(),
            ipv4: s.ipv4(),
            ipv6: s.ipv6_host(),
            is_static: false,
            configuration: None,
        })
        .collect();
    for h in &event.static_hosts {
        let v6 = h.address.contains(':');
        for role in &h.roles {
            servers.push(FleetServer {
                name: h.name.clone(),
                role: role.to_string(),
                server_type: "static".into(),
                location: "static".into(),
                ipv4: (!v6).then(|| h.address.clone()),
                ipv6: v6.then(|| h.address.clone()),
                is_static: true,
                configuration: h.configuration.as_ref().map(|p| p.display().to_string()),
            });
        }
    }
    Fleet {
        event: event.id.clone(),
        domain: event.domain.clone(),
        acme_email: event.tls.email.clone(),
        tls: crate::tls::supplied_by_venue(event),
        servers,
        schedule: event.schedule_file.clone(),
        chat_federation: event.homeserver.as_ref().is_some_and(|h| h.federation),
    }
}

#[cfg(test)]
mod fleet_tests {
    use super::*;

    #[test]
    fn static_hosts_join_the_fleet_once_per_role() {
        let src = r#"
id = "ev"
name = "Ev"
timezone = "UTC"
domain = "ev.example.org"
attendees = 10
[cloud]
location = "fsn1"
image = "ubuntu-24.04"
[[day]]
date = "2026-05-01"
open = "09:00"
close = "17:00"
[[room]]
name = "Main"
kind = "session"
peak = 10
[[static_host]]
name = "coop-jitsi"
address = "192.0.2.10"
host_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGnUX4q4Re1CvIRm1C2ZSXTMeJkyVXv8zGu8w1DU2U2W"
roles = ["jitsi", "coturn"]
cores = 8
"#;
        let event = Event::parse(std::path::Path::new("event.toml"), src).unwrap();
        let fleet = build_fleet(&event, &[], &[]);
        assert_eq!(fleet.domain, "ev.example.org");
        let roles: Vec<(&str, &str, bool)> = fleet
            .servers
            .iter()
            .map(|s| (s.name.as_str(), s.role.as_str(), s.is_static))
            .collect();
        assert_eq!(
            roles,
            vec![
                ("coop-jitsi", "jitsi", true),
                ("coop-jitsi", "coturn", true)
            ]
        );
        let json = serde_json::to_value(&fleet).unwrap();
        assert_eq!(json["servers"][0]["static"], true);
        assert_eq!(json["servers"][0]["ipv4"], "192.0.2.10");
    }
}
