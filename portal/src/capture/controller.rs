//! `venue-portal capture`: runs on a capture host. Every few seconds it asks
//! the portal which rooms should be live (`crate::capture::api`) and starts
//! or stops their captures. When the portal cannot be reached it changes
//! nothing: a running stream is not cut because the portal blinked.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::api::{Join, Rooms};
use super::runner::{check_slug, Runner};

pub struct Controller {
    pub portal: String,
    pub secret: String,
    pub http: reqwest::Client,
    pub runner: Box<dyn Runner>,
}

impl Controller {
    pub fn new(portal: &str, secret: String, runner: Box<dyn Runner>) -> Result<Controller> {
        Ok(Controller {
            portal: portal.trim_end_matches('/').to_owned(),
            secret,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
            runner,
        })
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<T> {
        let resp = req
            .bearer_auth(&self.secret)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach the portal: {}", e.without_url()))?;
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            let msg = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_owned))
                .unwrap_or(body);
            bail!("the portal answered {status}: {msg}");
        }
        serde_json::from_str(&body).context("the portal's answer is not what the capture API sends")
    }

    /// One round: brings the running captures in line with the portal.
    pub async fn tick(&mut self) -> Result<()> {
        let rooms: Rooms = self
            .call(self.http.get(format!("{}/capture/api/rooms", self.portal)))
            .await?;
        let mut known = BTreeSet::new();
        for r in &rooms.rooms {
            if let Err(e) = check_slug(&r.slug) {
                tracing::warn!(error = %e, "skipping a room");
                continue;
            }
            known.insert(r.slug.clone());
            let running = self.runner.is_running(&r.slug);
            if r.live && !running {
                let join: Join = match self
                    .call(
                        self.http
                            .post(format!("{}/capture/api/rooms/{}/join", self.portal, r.slug)),
                    )
                    .await
                {
                    Ok(j) => j,
                    Err(e) => {
                        tracing::warn!(room = %r.slug, error = %e, "cannot start the capture yet");
                        continue;
                    }
                };
                match self.runner.start(&r.slug, &join.join_url, &r.rtmp_url) {
                    Ok(()) => {
                        tracing::info!(room = %r.slug, why = %r.why, rtmp = %r.rtmp_url, "capture started")
                    }
                    Err(e) => {
                        tracing::error!(room = %r.slug, error = %e, "cannot start the capture")
                    }
                }
            } else if !r.live && running {
                match self.runner.stop(&r.slug) {
                    Ok(()) => tracing::info!(room = %r.slug, why = %r.why, "capture stopped"),
                    Err(e) => {
                        tracing::error!(room = %r.slug, error = %e, "cannot stop the capture")
                    }
                }
            }
        }
        // A room the portal no longer lists (event.toml changed) stops too.
        for room in self.runner.running() {
            if !known.contains(&room) {
                tracing::info!(%room, "capture stopped: no longer a captured room");
                let _ = self.runner.stop(&room);
            }
        }
        Ok(())
    }

    /// Polls every `interval` until `stop` completes.
    pub async fn run(mut self, interval: Duration, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            if let Err(e) = self.tick().await {
                tracing::warn!(error = %format!("{e:#}"), "capture poll failed; captures left as they are");
            }
            tokio::select! {
                _ = &mut stop => break,
                _ = tokio::time::sleep(interval) => {}
            }
        }
        self.runner.shutdown();
    }
}
