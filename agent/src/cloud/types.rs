//! The parts of the API's resources that venue reads. Unknown fields are
//! ignored, so the API can grow without breaking us.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::labels::Labels;

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Named {
    pub name: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct PublicIp {
    #[serde(default)]
    pub id: Option<u64>,
    pub ip: String,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct PublicNet {
    pub ipv4: Option<PublicIp>,
    pub ipv6: Option<PublicIp>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Server {
    pub id: u64,
    pub name: String,
    /// running, initializing, starting, stopping, off, deleting, …
    pub status: String,
    pub created: DateTime<Utc>,
    #[serde(default)]
    pub labels: Labels,
    #[serde(default)]
    pub public_net: PublicNet,
    pub server_type: Named,
    pub location: Named,
    /// The image it was created from, as the API shows it (null once a
    /// snapshot it came from is deleted).
    #[serde(default)]
    pub image: Option<serde_json::Value>,
}

impl Server {
    /// The host address of the server's /64 (`…::1`), as Hetzner configures it.
    pub fn ipv6_host(&self) -> Option<String> {
        let net = self
            .public_net
            .ipv6
            .as_ref()?
            .ip
            .split('/')
            .next()?
            .to_owned();
        Some(if net.ends_with("::") {
            format!("{net}1")
        } else {
            net
        })
    }
    pub fn ipv4(&self) -> Option<String> {
        self.public_net.ipv4.as_ref().map(|i| i.ip.clone())
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ActionError {
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Resource {
    pub id: u64,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Action {
    pub id: u64,
    pub command: String,
    /// running, success, error
    pub status: String,
    #[serde(default)]
    pub progress: u32,
    pub error: Option<ActionError>,
    #[serde(default)]
    pub resources: Vec<Resource>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct SshKey {
    pub id: u64,
    pub name: String,
    pub fingerprint: String,
    pub created: DateTime<Utc>,
    #[serde(default)]
    pub labels: Labels,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Firewall {
    pub id: u64,
    pub name: String,
    pub created: DateTime<Utc>,
    #[serde(default)]
    pub labels: Labels,
    #[serde(default)]
    pub rules: Vec<RuleSeen>,
}

/// A firewall rule as the API shows it.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct RuleSeen {
    pub direction: String,
    pub protocol: String,
    pub port: Option<String>,
    #[serde(default)]
    pub source_ips: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct PrimaryIp {
    pub id: u64,
    pub name: String,
    pub ip: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub assignee_id: Option<u64>,
    #[serde(default)]
    pub auto_delete: bool,
    pub created: DateTime<Utc>,
    #[serde(default)]
    pub labels: Labels,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Pagination {
    pub next_page: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Meta {
    pub pagination: Pagination,
}

/// A firewall rule as the API takes it.
#[derive(Debug, Clone, Serialize)]
pub struct Rule {
    pub direction: &'static str,
    pub protocol: &'static str,
    pub port: String,
    pub source_ips: Vec<String>,
    pub description: String,
}
