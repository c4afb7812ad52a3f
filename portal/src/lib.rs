//! `venue-portal`: the attendee portal of a virtual conference declared in
//! an `event.toml`. Server-rendered pages (no JavaScript needed), SQLite for
//! tickets and sessions, BigBlueButton status polled in the background.

pub mod app;
pub mod auth;
pub mod bbb;
pub mod cache;
pub mod capture;
pub mod chat;
pub mod config;
pub mod feeds;
pub mod fragments;
pub mod ics;
pub mod jitsi;
pub mod oidc;
pub mod pages;
pub mod pool;
pub mod proposals;
pub mod rooms;
pub mod state;
pub mod store;
pub mod throttle;
pub mod views;
pub mod vote;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};

/// `N` bytes from the operating system's random source.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("the operating system's random source");
    b
}

pub struct ServeOptions {
    pub event: PathBuf,
    pub listen: String,
    pub state: PathBuf,
    pub config: Option<PathBuf>,
}

/// Loads everything, binds, starts the pollers and serves until SIGTERM or
/// Ctrl-C.
pub async fn serve(opts: ServeOptions) -> Result<()> {
    let event = conference::Event::load(&opts.event).map_err(|e| anyhow::anyhow!("{e}"))?;
    let store = store::Store::open(&opts.state)?;
    let config = config::Config::load(opts.config.as_deref(), &opts.state)?;
    if opts.config.is_none() {
        tracing::warn!("no --config: development mode, no BigBlueButton, Jitsi or TURN configured");
    }
    let state = state::AppState::new(event, config, store).with_chat()?;
    state.spawn_pollers();
    let listener = tokio::net::TcpListener::bind(&opts.listen)
        .await
        .with_context(|| format!("cannot listen on {}", opts.listen))?;
    let addr = listener.local_addr()?;
    let (tickets, staff) = state.store.ticket_count()?;
    tracing::info!(%addr, event = %state.event.id, tickets, staff, bbb_servers = state.cluster.len(), jitsi_bridges = state.jitsi.bridges().len(), "venue-portal listening");
    // Tests and scripts read this line to learn the port of `--listen 127.0.0.1:0`.
    println!("venue-portal listening on http://{addr}");
    let state = Arc::new(state);
    chat::sync::spawn(state.clone());
    let router = app::router(state);
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown())
    .await?;
    Ok(())
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn shutdown() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
}
