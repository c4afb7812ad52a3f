//! fleet.json, the file the NixOS flake reads (nix/lib.nix's mkFleet): one
//! entry per host with its role and addresses; rented servers and the
//! event's static hosts (`"static": true`, deployed by their owners).

use anyhow::Result;
use conference::Event;
use serde::Serialize;

use super::state::StateDir;
use crate::cloud::types::Server;
use crate::plan::PlannedServer;

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct FleetServer {
    pub name: String,
    pub role: String,
    pub server_type: String,
    pub location: String,
    pub ipv4: Option<String>,
    pub ipv6: Option<String>,
    #[serde(rename = "static")]
    pub is_static: bool,
    /// A static host's own NixOS configuration (absolute path), if venue deploys it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration: Option<String>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Fleet {
    pub event: String,
    pub domain: String,
    /// The ACME account's contact (event.toml `[tls] email`); mkFleet gives it
    /// to every host, as nixpkgs' security.acme requires one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acme_email: Option<String>,
    /// True when venue supplies the one certificate for `<domain>` and
    /// `*.<domain>` (event.toml `[dns]`, or `[tls] certificate`): mkFleet
    /// then turns per-host ACME off (`services.venue.tls.fromAgent`).
    #[serde(default)]
    pub tls: bool,
    pub servers: Vec<FleetServer>,
}

/// The fleet from the plan's servers as they exist in the cloud (matched by
/// name), in the plan's order, then the static hosts (one entry per role).
pub fn build(event: &Event, planned: &[PlannedServer], existing: &[Server]) -> Fleet {
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
    }
}

pub fn write(state: &StateDir, fleet: &Fleet) -> Result<std::path::PathBuf> {
    let text = serde_json::to_string_pretty(fleet)? + "\n";
    state.write("fleet.json", text.as_bytes(), 0o644)
}

/// A plain table of the fleet, for humans.
pub fn table(fleet: &Fleet) -> String {
    let mut rows = vec![["NAME", "ROLE", "TYPE", "LOCATION", "IPV4", "IPV6"]
        .map(String::from)
        .to_vec()];
    for s in &fleet.servers {
        rows.push(vec![
            s.name.clone(),
            s.role.clone(),
            s.server_type.clone(),
            s.location.clone(),
            s.ipv4.clone().unwrap_or_else(|| "-".into()),
            s.ipv6.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    render(&rows)
}

/// Left-aligned columns, two spaces apart.
pub fn render(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, s)| format!("{s:<w$}", w = widths[i]))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
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
        let fleet = build(&event, &[], &[]);
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
