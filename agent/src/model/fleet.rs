//! fleet.json, the file the NixOS flake reads (nix/lib.nix's mkFleet): one
//! entry per host with its role and addresses; rented servers and the
//! event's static hosts (`"static": true`, deployed by their owners).

use anyhow::Result;
use serde::Serialize;

use super::table::render;
use crate::model::state::StateDir;

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
    /// event.toml's schedule file, as it names it: mkFleet copies it to the
    /// store with event.toml, which it does not parse (Nix's fromTOML
    /// refuses the TOML dates `[vote]` uses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// event.toml's `[chat] federation`, for the same reason.
    #[serde(default)]
    pub chat_federation: bool,
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
