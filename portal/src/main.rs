use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

mod backup;

/// venue-portal: the attendee portal of a virtual conference.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the portal.
    Serve {
        /// The event file (event.toml).
        #[arg(long)]
        event: PathBuf,
        /// Address to listen on, like 127.0.0.1:8080.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// State directory (SQLite database, development session key).
        #[arg(long, default_value = "/var/lib/venue-portal")]
        state: PathBuf,
        /// Configuration file (BBB servers, Jitsi, TURN; secrets as file paths).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Copy the database to FILE with SQLite's online backup (safe while serving).
    Backup {
        file: PathBuf,
        #[arg(long, default_value = "/var/lib/venue-portal")]
        state: PathBuf,
    },
    /// Manage tickets.
    Tickets {
        #[command(subcommand)]
        command: TicketsCommand,
    },
    /// Run the stage captures of this capture host: poll the portal for the
    /// rooms that should be live, start and stop one capture per room.
    Capture {
        /// The portal's base URL (https://portal.example.org).
        #[arg(long)]
        portal: String,
        /// File with the capture secret shared with the portal.
        #[arg(long)]
        secret_file: PathBuf,
        /// Seconds between polls.
        #[arg(long, default_value_t = 5.0)]
        interval: f64,
        /// Run each capture as `<PROGRAM> <room>` (a child process) instead of
        /// the systemd unit venue-capture@<room>.service.
        #[arg(long)]
        command: Option<PathBuf>,
        /// Where the captures' inputs (join URL, RTMP URL) are written, one
        /// directory per room, mode 0700.
        #[arg(long, default_value = "/run/venue-capture")]
        state: PathBuf,
    },
    /// Talk proposals for the attendees' vote.
    Proposals {
        #[command(subcommand)]
        command: ProposalsCommand,
    },
}

#[derive(Subcommand)]
enum ProposalsCommand {
    /// Import proposals from pretalx's submissions (JSON) or a CSV file with
    /// the header `id,title,abstract,track,speakers`. Known ids are updated
    /// (their votes stay); all or nothing.
    Import {
        file: PathBuf,
        #[arg(long, default_value = "/var/lib/venue-portal")]
        state: PathBuf,
    },
}

#[derive(Subcommand)]
enum TicketsCommand {
    /// Import tickets from a CSV file with the header `email,code,role` (role
    /// attendee or staff; an optional `name` column gives the name shown in
    /// meetings and matched against the schedule's speakers).
    Import {
        file: PathBuf,
        #[arg(long, default_value = "/var/lib/venue-portal")]
        state: PathBuf,
    },
    /// Add one ticket with a generated code, and print the code.
    Add {
        email: String,
        /// A staff ticket.
        #[arg(long)]
        staff: bool,
        /// The holder's name.
        #[arg(long)]
        name: Option<String>,
        #[arg(long, default_value = "/var/lib/venue-portal")]
        state: PathBuf,
    },
    /// Revoke the ticket of EMAIL: its logins end, and its picks, calendar
    /// feed and talk votes are deleted with it.
    Revoke {
        email: String,
        #[arg(long, default_value = "/var/lib/venue-portal")]
        state: PathBuf,
    },
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve {
            event,
            listen,
            state,
            config,
        } => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(portal::serve(portal::ServeOptions {
                event,
                listen,
                state,
                config,
            })),
        Command::Capture {
            portal,
            secret_file,
            interval,
            command,
            state,
        } => {
            if !(0.1..=600.0).contains(&interval) {
                anyhow::bail!("--interval must be between 0.1 and 600 seconds, not {interval}");
            }
            let secret = std::fs::read_to_string(&secret_file)
                .map_err(|e| {
                    anyhow::anyhow!(
                        "cannot read the capture secret from {}: {e}",
                        secret_file.display()
                    )
                })?
                .trim()
                .to_owned();
            if secret.is_empty() {
                anyhow::bail!("the capture secret file {} is empty", secret_file.display());
            }
            let runner: Box<dyn portal::capture::runner::Runner> = match command {
                Some(program) => Box::new(portal::capture::runner::Children::new(program, state)),
                None => Box::new(portal::capture::runner::Systemd { dir: state }),
            };
            let controller = portal::capture::controller::Controller::new(&portal, secret, runner)?;
            tracing::info!(%portal, interval, "capture controller started");
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()?
                .block_on(controller.run(
                    std::time::Duration::from_secs_f64(interval),
                    portal::shutdown(),
                ));
            Ok(())
        }
        Command::Backup { file, state } => {
            let pages = backup::backup(&state, &file)?;
            println!("copied {pages} pages to {}", file.display());
            Ok(())
        }
        Command::Tickets { command } => match command {
            TicketsCommand::Import { file, state } => {
                let n = portal::store::Store::open(&state)?.import_csv(&file)?;
                println!("imported {n} tickets");
                Ok(())
            }
            TicketsCommand::Add {
                email,
                staff,
                name,
                state,
            } => {
                let code = portal::store::Store::open(&state)?.add_ticket(
                    &email,
                    staff,
                    name.as_deref(),
                )?;
                println!("{code}");
                Ok(())
            }
            TicketsCommand::Revoke { email, state } => {
                if portal::store::Store::open(&state)?
                    .revoke_ticket(&email)?
                    .is_none()
                {
                    anyhow::bail!("there is no ticket for {email}");
                }
                println!("revoked the ticket of {email}");
                Ok(())
            }
        },
        Command::Proposals { command } => match command {
            ProposalsCommand::Import { file, state } => {
                let proposals = portal::proposals::read(&file)?;
                let n = portal::store::Store::open(&state)?.import_proposals(&proposals)?;
                println!("imported {n} proposals");
                Ok(())
            }
        },
    }
}
