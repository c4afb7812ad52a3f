//! `fake-bbb --listen ADDR --secret-file FILE [--checksums sha1,sha256]`:
//! a BigBlueButton API (create, join, end, getMeetings, getMeetingInfo,
//! isMeetingRunning) that checks checksums exactly as BBB does, for the
//! testbed's bbb hosts, behind nginx at /bigbluebutton/api. No media.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Parser;

#[derive(Parser)]
#[command(about = "A BigBlueButton API server (no media) for the venue testbed")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: String,
    /// File holding the shared secret (bbb-secret, as venue deploys it).
    #[arg(long)]
    secret_file: PathBuf,
    /// BBB's `supportedChecksumAlgorithms` (its default: all four).
    #[arg(long, default_value = "sha1,sha256,sha384,sha512")]
    checksums: String,
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FAKE_BBB_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let secret = std::fs::read_to_string(&args.secret_file).with_context(|| {
        format!(
            "cannot read the BBB secret from {}",
            args.secret_file.display()
        )
    })?;
    let secret = secret.trim();
    if secret.is_empty() {
        bail!(
            "the BBB secret file {} is empty",
            args.secret_file.display()
        );
    }
    let supported = venue_testbed::bbb::parse_checksums(&args.checksums)
        .map_err(|e| anyhow::anyhow!("--checksums {:?}: {e}", args.checksums))?;
    let (app, _state) = venue_testbed::bbb::router(secret, &supported);
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    println!("fake-bbb listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        })
        .await?;
    Ok(())
}
