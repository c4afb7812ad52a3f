//! Venue images: snapshots that carry an installed base system (the
//! event's profile, `profile`), as the cloud lists them (`snapshots`), and
//! what a new server boots ([`resolve`]): the newest snapshot of the event's
//! profile, else the public image and the install phase. The verbs that
//! build, list and delete them are `commands::image`.

pub mod profile;
pub mod snapshots;

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;
use conference::Event;

use crate::cloud::Client;
pub use profile::{Arch, Source};
pub use snapshots::Snapshot;

/// The public image a server starts from when no venue image fits; the
/// install phase makes it NixOS.
pub const PUBLIC_IMAGE: &str = "ubuntu-24.04";

/// What a new server boots: an image name or id for `POST /servers`, and
/// the snapshot's id when it is a venue snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Boot {
    pub image: String,
    pub snapshot: Option<u64>,
}

impl Boot {
    fn public(image: &str) -> Boot {
        Boot {
            image: image.to_owned(),
            snapshot: None,
        }
    }
}

/// The image for each architecture `up` will create servers of. With
/// `image = "auto"`: the newest venue snapshot of the event's base system,
/// else the public Ubuntu image (and the install phase). Anything else is
/// an image name or id, used as given. Also warnings for the organiser.
pub async fn resolve(
    client: &Client,
    event: &Event,
    archs: &BTreeSet<Arch>,
) -> Result<(BTreeMap<Arch, Boot>, Vec<String>)> {
    let mut boots = BTreeMap::new();
    let mut warnings = Vec::new();
    if event.cloud.image != "auto" {
        for a in archs {
            boots.insert(*a, Boot::public(&event.cloud.image));
        }
        return Ok((boots, warnings));
    }
    for &arch in archs {
        let mut boot = Boot::public(PUBLIC_IMAGE);
        // No snapshot at all: no need to evaluate the base system.
        if snapshots::any_for(client, arch).await? {
            // Evaluation may take a while (nixpkgs): off the async threads.
            let hash = match Source::of(Some(event)) {
                Ok(source) => tokio::task::spawn_blocking(move || source.hash(arch)).await?,
                Err(e) => Err(e),
            };
            match hash {
                Ok(h) => match snapshots::newest(client, &h, arch).await? {
                    Some(s) => {
                        boot = Boot {
                            image: s.id.to_string(),
                            snapshot: Some(s.id),
                        }
                    }
                    None => warnings.push(format!(
                        "no venue image of this base system ({h}, {}): servers start from {} and are installed (`venue image build` makes one)",
                        arch.label(),
                        PUBLIC_IMAGE
                    )),
                },
                Err(e) => warnings.push(format!(
                    "cannot tell which venue image fits ({e:#}): servers start from {} and are installed",
                    PUBLIC_IMAGE
                )),
            }
        }
        boots.insert(arch, boot);
    }
    Ok((boots, warnings))
}

/// Whether a server was created from a venue snapshot (its `image` as the
/// API shows it): such a server runs the base system from its first boot.
pub fn booted_from_snapshot(server_image: &serde_json::Value) -> bool {
    server_image["type"] == "snapshot"
        && server_image["labels"]
            .as_object()
            .is_some_and(|l| l.contains_key(snapshots::IMAGE))
}
