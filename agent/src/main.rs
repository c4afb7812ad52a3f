//! `venue`: plan, rent, deploy and release the servers of a virtual conference.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use conference::Event;
use venue_agent::{archive, commands, deploy, plan};

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
    /// Rent the planned servers on Hetzner Cloud (HCLOUD_TOKEN), write fleet.json.
    Up {
        /// The event file (event.toml).
        event: PathBuf,
        /// Provision only, do not deploy.
        #[arg(long)]
        no_deploy: bool,
        /// State directory (default: .venue/<event id>/ beside the event file).
        #[arg(long)]
        state: Option<PathBuf>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Deploy the event's systems onto its rented servers (fleet.json) and static hosts.
    Deploy {
        /// The event file (event.toml).
        event: PathBuf,
        /// Only this host.
        #[arg(long)]
        host: Option<String>,
        /// State directory (default: .venue/<event id>/ beside the event file).
        #[arg(long)]
        state: Option<PathBuf>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// What the event holds in the cloud: resources, state, age, cost so far,
    /// and what its servers hold that is not archived yet.
    Status {
        /// The event file (event.toml).
        event: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// State directory (default: .venue/<event id>/ beside the event file).
        #[arg(long)]
        state: Option<PathBuf>,
    },
    /// Copy what outlives the event (recordings, the portal's database) from
    /// every host into <state>/archive/, with a manifest of SHA-256 sums.
    Archive {
        /// The event file (event.toml).
        event: PathBuf,
        /// Only this host.
        #[arg(long)]
        host: Option<String>,
        /// State directory (default: .venue/<event id>/ beside the event file).
        #[arg(long)]
        state: Option<PathBuf>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Delete everything labelled for the event, and check that nothing is left.
    Down {
        /// The event file (event.toml).
        event: PathBuf,
        /// Only list what would be deleted.
        #[arg(long)]
        dry_run: bool,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
        /// Delete without archiving recordings and the portal's database.
        #[arg(long)]
        discard: bool,
        /// State directory (default: .venue/<event id>/ beside the event file).
        #[arg(long)]
        state: Option<PathBuf>,
        /// Print JSON instead of text.
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
            // Live prices with HCLOUD_TOKEN, else the bundled table.
            let (prices, warning) =
                commands::block_on(venue_agent::cloud::pricing::live_or_bundled());
            if let Some(w) = warning {
                eprintln!("warning: {w}");
            }
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
        Command::Up {
            event,
            no_deploy,
            state,
            json,
        } => commands::up::run(commands::up::UpOptions {
            event,
            state,
            json,
            no_deploy,
        }),
        Command::Deploy {
            event: file,
            host,
            state,
            json,
        } => {
            let event = Event::load(&file)?;
            let state = commands::state::StateDir::open(commands::state::StateDir::locate(
                &file,
                &event.id,
                state.as_deref(),
            ))?;
            let _lock = state.lock()?;
            let reports = deploy::command::run(&deploy::command::DeployArgs {
                event: &event,
                state: &state,
                only: host.as_deref(),
                connect_wait: std::time::Duration::from_secs(60),
            })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&reports)?);
            } else {
                print!("{}", deploy::command::table(&reports));
            }
            if !deploy::command::all_healthy(&reports) {
                anyhow::bail!("not every host is healthy");
            }
            Ok(())
        }
        Command::Status { event, json, state } => {
            commands::status::run(commands::status::StatusOptions { event, json, state })
        }
        Command::Archive {
            event,
            host,
            state,
            json,
        } => archive::command::run(&event, host.as_deref(), state.as_deref(), json),
        Command::Down {
            event,
            dry_run,
            yes,
            discard,
            state,
            json,
        } => commands::down::run(commands::down::DownOptions {
            event,
            state,
            dry_run,
            yes,
            json,
            discard,
        }),
    }
}
