//! What an event holds in the cloud, found by its label (the truth, whatever
//! the local journal says): servers, firewalls, SSH keys, primary IPs.

use std::collections::BTreeSet;

use anyhow::Result;

use crate::cloud::labels;
use crate::cloud::types::{Firewall, PrimaryIp, Server, SshKey};
use crate::cloud::Client;

#[derive(Debug, Default)]
pub struct Inventory {
    pub servers: Vec<Server>,
    pub firewalls: Vec<Firewall>,
    pub ssh_keys: Vec<SshKey>,
    /// Labelled for the event, or assigned to one of its servers (an
    /// address created with a server before `up` could label it).
    pub primary_ips: Vec<PrimaryIp>,
}

impl Inventory {
    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
            && self.firewalls.is_empty()
            && self.ssh_keys.is_empty()
            && self.primary_ips.is_empty()
    }

    pub fn count(&self) -> usize {
        self.servers.len() + self.firewalls.len() + self.ssh_keys.len() + self.primary_ips.len()
    }

    /// Lists everything of `event`: four label-selector lists, plus the
    /// unlabelled primary IPs of its servers (one more list, all pages).
    pub async fn load(client: &Client, event: &str) -> Result<Inventory> {
        let sel = [("label_selector", labels::selector(event))];
        // The API filtered by label; we check again, so that nothing
        // without this event's label is ever taken for the event's.
        let mut servers: Vec<Server> = client.list("/servers", &sel, "servers").await?;
        servers.retain(|s| labels::belongs(&s.labels, event));
        let mut firewalls: Vec<Firewall> = client.list("/firewalls", &sel, "firewalls").await?;
        firewalls.retain(|f| labels::belongs(&f.labels, event));
        let mut ssh_keys: Vec<SshKey> = client.list("/ssh_keys", &sel, "ssh_keys").await?;
        ssh_keys.retain(|k| labels::belongs(&k.labels, event));
        let ours: BTreeSet<u64> = servers.iter().map(|s| s.id).collect();
        let mut primary_ips: Vec<PrimaryIp> = if !servers.is_empty() {
            client.list("/primary_ips", &[], "primary_ips").await?
        } else {
            client.list("/primary_ips", &sel, "primary_ips").await?
        };
        primary_ips.retain(|p| {
            labels::belongs(&p.labels, event) || p.assignee_id.is_some_and(|a| ours.contains(&a))
        });
        Ok(Inventory {
            servers,
            firewalls,
            ssh_keys,
            primary_ips,
        })
    }
}

/// The primary IP ids a server reports in its `public_net`.
pub fn ip_ids(s: &Server) -> Vec<u64> {
    [&s.public_net.ipv4, &s.public_net.ipv6]
        .iter()
        .filter_map(|ip| ip.as_ref().and_then(|i| i.id))
        .collect()
}
