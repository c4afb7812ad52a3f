//! Waiting for actions: all pending ones polled together in one
//! `GET /actions?id=…&id=…` per round (chunks of 25 ids, to keep URLs short),
//! with a poll interval growing from 0.25 s (`VENUE_CLOUD_POLL_MS`) to 2 s:
//! about a dozen polls for a real server creation (~20 s), whatever the
//! number of servers up to 25.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::client::Client;
use super::error::CloudError;
use super::types::Action;

const CHUNK: usize = 25;

/// Polls until every action has finished; returns them all (success or
/// error: the caller decides what an error means). Gives up after `limit`.
pub async fn wait_all(
    client: &Client,
    ids: &[u64],
    what: &str,
    limit: Duration,
) -> Result<Vec<Action>, CloudError> {
    let mut pending: Vec<u64> = ids.to_vec();
    pending.sort_unstable();
    pending.dedup();
    let total = pending.len() as u64;
    let mut done: BTreeMap<u64, Action> = BTreeMap::new();
    let started = Instant::now();
    let mut interval = client.poll_start();
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden());
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg}: {pos}/{len} actions done [{elapsed}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(what.to_owned());
    while !pending.is_empty() {
        // Only waits longer than a moment get a progress bar (and only on a terminal).
        if started.elapsed() > Duration::from_millis(1500) && bar.is_hidden() {
            bar.set_draw_target(ProgressDrawTarget::stderr());
            bar.enable_steady_tick(Duration::from_millis(200));
        }
        for chunk in pending.clone().chunks(CHUNK) {
            let q: Vec<(&str, String)> = chunk.iter().map(|id| ("id", id.to_string())).collect();
            let actions: Vec<Action> = client.get("/actions", &q, "actions").await?;
            for a in actions {
                if a.status != "running" {
                    pending.retain(|p| *p != a.id);
                    done.insert(a.id, a);
                }
            }
        }
        bar.set_position(done.len() as u64);
        if pending.is_empty() {
            break;
        }
        if started.elapsed() > limit {
            bar.finish_and_clear();
            return Err(CloudError::Timeout {
                what: format!(
                    "{what} ({} actions still running after {}s)",
                    pending.len(),
                    limit.as_secs()
                ),
            });
        }
        tokio::time::sleep(interval).await;
        interval = (interval * 2).min(Duration::from_secs(2));
    }
    bar.finish_and_clear();
    Ok(done.into_values().collect())
}

/// The first failed action as an error.
pub fn first_error(actions: &[Action]) -> Option<CloudError> {
    actions.iter().find(|a| a.status == "error").map(|a| {
        let (code, message) = a
            .error
            .as_ref()
            .map(|e| (e.code.clone(), e.message.clone()))
            .unwrap_or_default();
        CloudError::ActionFailed {
            id: a.id,
            command: a.command.clone(),
            code,
            message,
        }
    })
}
