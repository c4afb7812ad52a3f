//! The BigBlueButton servers the load rented beyond the plan, and the
//! servers it drains: kept in the state directory (`autopilot.json`),
//! written before a rent is asked, and found again in the cloud by label,
//! so an autopilot killed at any moment and started again adopts them (no
//! second server for one need, none released unarchived as "unplanned").
//!
//! Public interface (the core loop uses these):
//! ```text
//! pub const FILE: &str = "autopilot.json";
//! pub struct Extras { extra: Vec<String>, draining: BTreeSet<String> }
//!     fn Extras::load(&StateDir) -> Result<Extras>
//!     fn Extras::save(&self, &StateDir) -> Result<()>
//! pub fn next_name(event_id: &str, taken: &BTreeSet<String>) -> String
//! pub fn in_cloud(event_id: &str, planned: &BTreeSet<String>, servers: &[Server]) -> Vec<String>
//! ```

use std::collections::BTreeSet;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::cloud::labels;
use crate::cloud::types::Server;
use crate::model::state::StateDir;

/// In the state directory.
pub const FILE: &str = "autopilot.json";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extras {
    /// BigBlueButton servers beyond the plan's, in the order rented.
    pub extra: Vec<String>,
    /// Servers the portal gives no new meeting.
    pub draining: BTreeSet<String>,
}

impl Extras {
    /// The file, or nothing when there is none.
    pub fn load(state: &StateDir) -> Result<Extras> {
        match state.read(FILE) {
            Some(text) => serde_json::from_str(&text).with_context(|| {
                format!(
                    "{} is not the autopilot's state ({{\"extra\": [...], \"draining\": [...]}})",
                    state.path(FILE).display()
                )
            }),
            None => Ok(Extras::default()),
        }
    }

    pub fn save(&self, state: &StateDir) -> Result<()> {
        let mut text = serde_json::to_string_pretty(self)?;
        text.push('\n');
        state.write(FILE, text.as_bytes(), 0o600)?;
        Ok(())
    }
}

/// `<event>-bbb-<n>` with the lowest n no server of `taken` has: the plan
/// numbers its servers from 1, extras continue.
pub fn next_name(event_id: &str, taken: &BTreeSet<String>) -> String {
    (1..)
        .map(|n| format!("{event_id}-bbb-{n}"))
        .find(|n| !taken.contains(n))
        .expect("a free name")
}

/// BigBlueButton servers labelled for the event in the cloud that the plan
/// does not name: extras an earlier run rented.
pub fn in_cloud(event_id: &str, planned: &BTreeSet<String>, servers: &[Server]) -> Vec<String> {
    let prefix = format!("{event_id}-bbb-");
    servers
        .iter()
        .filter(|s| labels::belongs(&s.labels, event_id))
        .filter(|s| s.labels.get(labels::ROLE).map(String::as_str) == Some("bbb"))
        .filter(|s| s.name.starts_with(&prefix) && !planned.contains(&s.name))
        .map(|s| s.name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extras_continue_the_plans_numbering_and_survive_a_restart() {
        let taken: BTreeSet<String> = ["ev-bbb-1", "ev-bbb-2", "ev-portal-1"]
            .map(String::from)
            .into();
        assert_eq!(next_name("ev", &taken), "ev-bbb-3");
        let dir = std::env::temp_dir().join(format!("venue-extras-{}", std::process::id()));
        let state = StateDir::open(dir.clone()).unwrap();
        assert_eq!(Extras::load(&state).unwrap(), Extras::default());
        let e = Extras {
            extra: vec!["ev-bbb-3".into()],
            draining: ["ev-bbb-3".to_owned()].into(),
        };
        e.save(&state).unwrap();
        assert_eq!(Extras::load(&state).unwrap(), e);
        std::fs::write(state.path(FILE), "[3]").unwrap();
        let err = Extras::load(&state).unwrap_err().to_string();
        assert!(err.contains("autopilot.json"), "{err}");
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn the_cloud_tells_which_bbb_servers_are_extras() {
        let server = |name: &str, event: &str, role: &str| -> Server {
            serde_json::from_value(serde_json::json!({
                "id": 1, "name": name, "status": "running", "created": "2026-12-01T08:00:00Z",
                "labels": {"venue/event": event, "venue/role": role},
                "server_type": {"name": "cx23"}, "location": {"name": "fsn1"}
            }))
            .unwrap()
        };
        let servers = [
            server("ev-bbb-1", "ev", "bbb"),
            server("ev-bbb-2", "ev", "bbb"),
            server("ev-portal-1", "ev", "portal"),
            server("ev-bbb-3", "other", "bbb"),
        ];
        let planned: BTreeSet<String> = ["ev-bbb-1".to_owned()].into();
        assert_eq!(in_cloud("ev", &planned, &servers), ["ev-bbb-2"]);
    }
}
