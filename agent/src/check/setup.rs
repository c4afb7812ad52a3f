//! What `venue check` probes, from the event's state directory: the hosts of
//! fleet.json with their names, the event's secrets (read, never created:
//! a check changes nothing), the roots to trust, and SSH to the portal host
//! for the probe ticket.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use conference::protocol::bbb::Checksum;
use conference::{Event, Role};

use super::portal::{SshTickets, TicketDesk};
use super::{Check, EventSecrets, Ports, Target};
use crate::cloud::dns::names::names;
use crate::model::fleet::Fleet;
use crate::model::state::StateDir;

/// The app id the Jitsi module expects by default (modules/jitsi.nix).
pub const JITSI_APP_ID: &str = "venue";
/// The checksum the portal signs BBB calls with (modules/portal.nix's default).
pub const BBB_CHECKSUM: Checksum = Checksum::Sha256;
/// The longest one probe may take.
pub const TIMEOUT: Duration = Duration::from_secs(5);

pub struct Options<'a> {
    pub event: &'a Path,
    pub state: Option<&'a Path>,
    pub resolver: Option<SocketAddr>,
}

pub fn load(opts: &Options) -> Result<Check> {
    let event = Event::load(opts.event)?;
    let dir = StateDir::locate(opts.event, &event.id, opts.state);
    // Opening would create it: a check changes nothing.
    if !dir.is_dir() {
        bail!(
            "no state directory {}: nothing to check before `venue up {}`",
            dir.display(),
            opts.event.display()
        );
    }
    let state = StateDir::open(dir)?;
    let fleet_text = state.read("fleet.json").with_context(|| {
        format!(
            "no fleet.json in {}: nothing to check before `venue up {}`",
            state.dir.display(),
            opts.event.display()
        )
    })?;
    let fleet: Fleet = serde_json::from_str(&fleet_text)
        .with_context(|| format!("{} is not a fleet file", state.path("fleet.json").display()))?;
    let secrets = read_secrets(&state)?;
    let targets = targets(&fleet)?;
    let tickets = portal_tickets(&event, &state, &fleet)?;
    Ok(Check {
        event: Arc::new(event),
        targets,
        secrets,
        checksum: BBB_CHECKSUM,
        jitsi_app_id: JITSI_APP_ID.into(),
        resolver: opts.resolver,
        tls: super::tls::client_config()?,
        timeout: TIMEOUT,
        tickets,
    })
}

fn read_secrets(state: &StateDir) -> Result<EventSecrets> {
    let file = state.path("secrets.json");
    let text = state.read("secrets.json").with_context(|| {
        format!(
            "no secrets in {}: the event was never deployed",
            file.display()
        )
    })?;
    let values: BTreeMap<String, String> = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a JSON object of secrets", file.display()))?;
    let get = |name: &str| {
        values
            .get(name)
            .cloned()
            .with_context(|| format!("{} holds no {name}", file.display()))
    };
    Ok(EventSecrets {
        bbb: get("bbb-secret")?,
        turn: get("turn-secret")?,
        jwt: get("jwt-secret")?,
    })
}

/// One target per fleet entry; DNS and TLS once per host name.
pub fn targets(fleet: &Fleet) -> Result<Vec<Target>> {
    let mut out: Vec<Target> = Vec::new();
    for s in &fleet.servers {
        let role: Role = serde_json::from_value(serde_json::Value::String(s.role.clone()))
            .with_context(|| format!("fleet.json: {} has unknown role {}", s.name, s.role))?;
        let address: IpAddr = s
            .ipv4
            .as_deref()
            .or(s.ipv6.as_deref())
            .with_context(|| format!("fleet.json: {} has no address", s.name))?
            .parse()
            .with_context(|| format!("fleet.json: {} has a bad address", s.name))?;
        let primary = !out.iter().any(|t| t.name == s.name);
        let service_name = match role {
            Role::Portal => fleet.domain.to_ascii_lowercase(),
            Role::Chat => super::chat::public_name(&fleet.domain),
            _ => format!("{}.{}", s.name, fleet.domain).to_ascii_lowercase(),
        };
        // A static host's names are probed once, with all of its roles' names.
        let all_roles: Vec<(&str, &str)> = fleet
            .servers
            .iter()
            .filter(|o| o.name == s.name)
            .map(|o| (o.name.as_str(), o.role.as_str()))
            .collect();
        // The chat's public name is its service's, whether or not the DNS
        // layer lists it among the host's names.
        let mut host_names = names(&fleet.domain, all_roles);
        if role == Role::Chat && !host_names.contains(&service_name) {
            host_names.push(service_name.clone());
            host_names.sort();
        }
        out.push(Target {
            name: s.name.clone(),
            role,
            address,
            service_name,
            names: host_names,
            primary,
            ports: Ports::default(),
        });
    }
    Ok(out)
}

/// SSH to the portal host with the event's deploy key, if there is one.
fn portal_tickets(
    event: &Event,
    state: &StateDir,
    fleet: &Fleet,
) -> Result<Option<Arc<dyn TicketDesk>>> {
    if !fleet.servers.iter().any(|s| s.role == "portal") {
        return Ok(None);
    }
    let identity = state.path("deploy_ed25519");
    if !identity.exists() {
        bail!(
            "no deploy key at {}: the probe ticket is made over SSH with it",
            identity.display()
        );
    }
    let hosts = crate::deploy::command::hosts(event, state, fleet)?;
    Ok(hosts
        .into_iter()
        .find(|h| h.roles.contains(&Role::Portal))
        .map(|host| Arc::new(SshTickets { host, identity }) as Arc<dyn TicketDesk>))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fleet::FleetServer;

    fn server(name: &str, role: &str, v4: &str, is_static: bool) -> FleetServer {
        FleetServer {
            name: name.into(),
            role: role.into(),
            server_type: "cx23".into(),
            location: "fsn1".into(),
            ipv4: Some(v4.into()),
            ipv6: None,
            is_static,
            configuration: None,
        }
    }

    #[test]
    fn a_static_host_with_two_roles_gets_its_names_probed_once() {
        let fleet = Fleet {
            event: "ev".into(),
            domain: "ev.example.org".into(),
            acme_email: None,
            tls: true,
            servers: vec![
                server("ev-portal-1", "portal", "192.0.2.1", false),
                server("coop", "jitsi", "192.0.2.3", true),
                server("coop", "coturn", "192.0.2.3", true),
            ],
            schedule: None,
            chat_federation: false,
        };
        let t = targets(&fleet).unwrap();
        let got: Vec<(&str, Role, &str, bool, Vec<&str>)> = t
            .iter()
            .map(|t| {
                (
                    t.name.as_str(),
                    t.role,
                    t.service_name.as_str(),
                    t.primary,
                    t.names.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "ev-portal-1",
                    Role::Portal,
                    "ev.example.org",
                    true,
                    vec!["ev-portal-1.ev.example.org", "ev.example.org"]
                ),
                (
                    "coop",
                    Role::Jitsi,
                    "coop.ev.example.org",
                    true,
                    vec!["coop.ev.example.org"]
                ),
                (
                    "coop",
                    Role::Coturn,
                    "coop.ev.example.org",
                    false,
                    vec!["coop.ev.example.org"]
                ),
            ]
        );
        let mut bad = fleet.clone();
        bad.servers[0].ipv4 = Some("not an address".into());
        let e = format!("{:#}", targets(&bad).unwrap_err());
        assert!(e.contains("ev-portal-1 has a bad address"), "{e}");
    }
}
