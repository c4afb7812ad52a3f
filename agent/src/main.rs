//! `venue`: plan, rent, deploy and release the servers of a virtual conference.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use conference::Event;
use venue_agent::plan;

#[derive(Parser)]
#[command(
    name = "venue",
    version,
    about = "Rent a free-software conference venue for the days of an event"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Size and price the venue for an event, offline.
    Plan {
        /// The event file (event.toml).
        event: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VENUE_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Plan { event, json } => {
            let event = Event::load(&event)?;
            let prices = plan::prices::PriceTable::bundled();
            let plan = plan::plan(&event, &prices)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&plan::report::json(&plan))?
                );
            } else {
                print!("{}", plan::report::table(&plan, &event));
            }
            Ok(())
        }
    }
}
