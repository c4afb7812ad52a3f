//! venue's snapshot images in the cloud: labelled `venue/image=<profile
//! hash>` and `venue/arch=<x86|arm>`, and no `venue/event`: they belong to
//! no event, so `venue down` (which deletes only what carries the event's
//! label) never touches them. Listing, choosing the newest for a profile,
//! and their price (Hetzner bills snapshots per GB-month of `image_size`).

use std::collections::BTreeMap;

use anyhow::Result;
use chrono::{DateTime, Utc};
use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::profile::Arch;
use crate::cloud::labels::Labels;
use crate::cloud::pricing::micro_eur;
use crate::cloud::Client;

pub const IMAGE: &str = "venue/image";
pub const ARCH: &str = "venue/arch";
/// On the servers (and SSH key) of an image build: found and removed by the
/// next build when one crashed.
pub const BUILD: &str = "venue/image-build";

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct CreatedFrom {
    pub id: u64,
    pub name: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Snapshot {
    pub id: u64,
    pub description: String,
    /// creating, available, unavailable
    pub status: String,
    pub created: DateTime<Utc>,
    /// GB in Hetzner's storage: what is billed. None while creating.
    pub image_size: Option<f64>,
    pub disk_size: f64,
    pub architecture: String,
    pub created_from: Option<CreatedFrom>,
    #[serde(default)]
    pub labels: Labels,
}

impl Snapshot {
    pub fn profile(&self) -> &str {
        self.labels.get(IMAGE).map(String::as_str).unwrap_or("")
    }
    pub fn arch(&self) -> Option<Arch> {
        Arch::parse(&self.architecture)
    }
    /// Monthly cost at `per_gb` micro-EUR per GB-month.
    pub fn monthly_micro_eur(&self, per_gb: u64) -> u64 {
        (self.image_size.unwrap_or(0.0) * per_gb as f64).round() as u64
    }
}

/// Every venue snapshot of the project (any profile, any architecture).
pub async fn list(client: &Client) -> Result<Vec<Snapshot>> {
    let mut all: Vec<Snapshot> = client
        .list(
            "/images",
            &[
                ("type", "snapshot".to_owned()),
                ("label_selector", IMAGE.to_owned()),
            ],
            "images",
        )
        .await?;
    // The API filtered; a snapshot without our label is never taken for ours.
    all.retain(|s| s.labels.contains_key(IMAGE));
    all.sort_by(|a, b| b.created.cmp(&a.created).then(b.id.cmp(&a.id)));
    Ok(all)
}

/// The newest available snapshot of `profile` for `arch`.
pub async fn newest(client: &Client, profile: &str, arch: Arch) -> Result<Option<Snapshot>> {
    let mut found: Vec<Snapshot> = client
        .list(
            "/images",
            &[
                ("type", "snapshot".to_owned()),
                ("status", "available".to_owned()),
                ("architecture", arch.label().to_owned()),
                (
                    "label_selector",
                    format!("{IMAGE}={profile},{ARCH}={}", arch.label()),
                ),
            ],
            "images",
        )
        .await?;
    found.retain(|s| s.profile() == profile && s.arch() == Some(arch) && s.status == "available");
    Ok(found
        .into_iter()
        .max_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id))))
}

/// Whether the project holds any venue snapshot for `arch` (one request,
/// and no evaluation of the base system when it holds none).
pub async fn any_for(client: &Client, arch: Arch) -> Result<bool> {
    let v = client
        .request(
            Method::GET,
            "/images",
            &[
                ("type", "snapshot".to_owned()),
                ("status", "available".to_owned()),
                ("architecture", arch.label().to_owned()),
                ("label_selector", IMAGE.to_owned()),
                ("per_page", "1".to_owned()),
            ],
            None,
        )
        .await?;
    Ok(v["images"].as_array().is_some_and(|a| !a.is_empty()))
}

/// Micro-EUR per GB-month of snapshot storage, from `GET /pricing`.
pub async fn price_per_gb_month(client: &Client) -> Result<Option<u64>> {
    let v = client.request(Method::GET, "/pricing", &[], None).await?;
    Ok(v["pricing"]["image"]["price_per_gb_month"]["net"]
        .as_str()
        .and_then(micro_eur))
}

/// For `--all-but-newest`: every snapshot that a newer one of the same
/// profile and architecture replaces.
pub fn superseded(all: &[Snapshot]) -> Vec<&Snapshot> {
    let mut newest: BTreeMap<(String, String), &Snapshot> = BTreeMap::new();
    for s in all.iter().filter(|s| s.status == "available") {
        let key = (s.profile().to_owned(), s.architecture.clone());
        let keep = newest
            .get(&key)
            .is_none_or(|n| (s.created, s.id) > (n.created, n.id));
        if keep {
            newest.insert(key, s);
        }
    }
    all.iter()
        .filter(|s| s.status == "available")
        .filter(|s| {
            newest
                .get(&(s.profile().to_owned(), s.architecture.clone()))
                .is_some_and(|n| n.id != s.id)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(id: u64, profile: &str, arch: &str, hour: u32) -> Snapshot {
        Snapshot {
            id,
            description: String::new(),
            status: "available".into(),
            created: format!("2026-11-20T{hour:02}:00:00Z").parse().unwrap(),
            image_size: Some(2.5),
            disk_size: 40.0,
            architecture: arch.into(),
            created_from: None,
            labels: Labels::from([(IMAGE.to_owned(), profile.to_owned())]),
        }
    }

    #[test]
    fn only_older_snapshots_of_the_same_profile_and_arch_are_superseded() {
        let all = vec![
            snap(1, "a", "x86", 1),
            snap(2, "a", "x86", 3),
            snap(3, "a", "arm", 2),
            snap(4, "b", "x86", 0),
            snap(5, "a", "x86", 2),
        ];
        let mut ids: Vec<u64> = superseded(&all).iter().map(|s| s.id).collect();
        ids.sort();
        assert_eq!(ids, [1, 5]);
        // 2.5 GB at 0.011 EUR per GB-month.
        assert_eq!(all[0].monthly_micro_eur(11_000), 27_500);
    }
}
