//! `venue image build|list|delete`: snapshot images that carry an installed
//! base system, so that `venue up` boots new servers from one and only
//! deploys (`[cloud] image = "auto"`, the default). What a new server boots
//! is decided in `crate::images`.

pub mod build;

use std::path::PathBuf;

use anyhow::{bail, Result};
use conference::Event;
use reqwest::Method;
use serde::Serialize;

use crate::cloud::Client;
pub use crate::images::profile::{Arch, Source};
use crate::images::snapshots::{self, Snapshot};
use crate::plan::prices::eur_text;

#[derive(Debug, Serialize)]
pub struct Row {
    pub id: u64,
    pub profile: String,
    pub arch: String,
    pub status: String,
    pub image_size_gb: Option<f64>,
    pub monthly_micro_eur: Option<u64>,
    pub created: chrono::DateTime<chrono::Utc>,
    pub description: String,
}

pub fn rows(all: &[Snapshot], per_gb: Option<u64>) -> Vec<Row> {
    all.iter()
        .map(|s| Row {
            id: s.id,
            profile: s.profile().to_owned(),
            arch: s.architecture.clone(),
            status: s.status.clone(),
            image_size_gb: s.image_size,
            monthly_micro_eur: per_gb.map(|p| s.monthly_micro_eur(p)),
            created: s.created,
            description: s.description.clone(),
        })
        .collect()
}

pub fn table(rows: &[Row]) -> String {
    if rows.is_empty() {
        return "no venue images (`venue image build` makes one)\n".into();
    }
    let mut t = vec![[
        "ID",
        "PROFILE",
        "ARCH",
        "STATUS",
        "SIZE GB",
        "EUR/MONTH",
        "CREATED",
    ]
    .map(String::from)
    .to_vec()];
    for r in rows {
        t.push(vec![
            r.id.to_string(),
            r.profile.clone(),
            r.arch.clone(),
            r.status.clone(),
            r.image_size_gb
                .map(|g| format!("{g:.2}"))
                .unwrap_or_else(|| "-".into()),
            r.monthly_micro_eur
                .map(eur_text)
                .unwrap_or_else(|| "-".into()),
            r.created.format("%Y-%m-%d %H:%M").to_string(),
        ]);
    }
    let total: u64 = rows.iter().filter_map(|r| r.monthly_micro_eur).sum();
    format!(
        "{}\n{} images, {} EUR a month (Hetzner bills snapshots per GB-month; they belong to no event and `venue down` keeps them)\n",
        crate::model::table::render(&t),
        rows.len(),
        eur_text(total)
    )
}

pub enum Command {
    Build {
        event: Option<PathBuf>,
        arch: Arch,
        location: Option<String>,
        state: Option<PathBuf>,
        force: bool,
        json: bool,
    },
    List {
        json: bool,
    },
    Delete {
        ids: Vec<u64>,
        all_but_newest: bool,
        json: bool,
    },
}

/// The command line's entry. `install` is the install phase's function.
pub fn run(cmd: Command, install: build::Install<'_>) -> Result<()> {
    crate::runtime::block_on(async {
        let client = Client::from_env()?;
        match cmd {
            Command::List { json } => {
                let all = snapshots::list(&client).await?;
                let per_gb = snapshots::price_per_gb_month(&client).await?;
                let rows = rows(&all, per_gb);
                if json {
                    println!("{}", serde_json::to_string_pretty(&rows)?);
                } else {
                    print!("{}", table(&rows));
                }
            }
            Command::Delete {
                ids,
                all_but_newest,
                json,
            } => {
                let deleted = delete(&client, &ids, all_but_newest).await?;
                if json {
                    println!("{}", serde_json::json!({ "deleted": deleted }));
                } else if deleted.is_empty() {
                    println!("nothing to delete");
                } else {
                    for id in &deleted {
                        println!("deleted image {id}");
                    }
                }
            }
            Command::Build {
                event,
                arch,
                location,
                state,
                force,
                json,
            } => {
                let event = event.as_deref().map(Event::load).transpose()?;
                let source = Source::of(event.as_ref())?;
                let location = location
                    .or_else(|| event.as_ref().map(|e| e.cloud.location.clone()))
                    .unwrap_or_else(|| "fsn1".to_owned());
                let dir = match (&state, &event) {
                    (Some(d), _) => d.clone(),
                    (None, Some(e)) => {
                        crate::model::state::StateDir::locate(&e.file, "image-build", None)
                    }
                    (None, None) => PathBuf::from(".venue/image-build"),
                };
                let state = crate::model::state::StateDir::open(dir)?;
                let _lock = state.lock()?;
                let report = build::build(
                    &client,
                    &build::BuildOptions {
                        source,
                        arch,
                        location,
                        state: &state,
                        force,
                    },
                    install,
                )
                .await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&report)?);
                } else if report.built {
                    println!(
                        "image {} built: profile {} ({}), {} GB, on a {}",
                        report.image,
                        report.profile,
                        report.arch,
                        report
                            .image_size_gb
                            .map(|g| format!("{g:.2}"))
                            .unwrap_or_else(|| "?".into()),
                        report.server_type.as_deref().unwrap_or("?")
                    );
                } else {
                    println!("image {} is up to date", report.image);
                }
            }
        }
        Ok(())
    })
}

/// Deletes the named images (each must be a venue image) or, with
/// `all_but_newest`, every one that a newer image of its profile and
/// architecture replaces. Servers booted from them keep running.
pub async fn delete(client: &Client, ids: &[u64], all_but_newest: bool) -> Result<Vec<u64>> {
    if ids.is_empty() != all_but_newest {
        bail!("name image ids or --all-but-newest (one of the two)");
    }
    let all = snapshots::list(client).await?;
    let doomed: Vec<u64> = if all_but_newest {
        snapshots::superseded(&all).iter().map(|s| s.id).collect()
    } else {
        for id in ids {
            if !all.iter().any(|s| s.id == *id) {
                bail!(
                    "image {id} is not a venue image (no {} label): venue deletes only its own",
                    snapshots::IMAGE
                );
            }
        }
        ids.to_vec()
    };
    let mut deleted = Vec::new();
    for id in doomed {
        match client
            .request(Method::DELETE, &format!("/images/{id}"), &[], None)
            .await
        {
            Ok(_) => deleted.push(id),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(deleted)
}
