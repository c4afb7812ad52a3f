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
        /// State directory whose measured.json (the autopilot's measured
        /// peaks) sizes the rooms (default: .venue/<event id>/ beside the event file).
        #[arg(long)]
        state: Option<PathBuf>,
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
    /// Keep the venue at what the schedule needs now: rent each server before
    /// its window, release it (archive, verify, delete) after, until the
    /// event is over.
    Autopilot {
        /// The event file (event.toml).
        event: PathBuf,
        /// Print the timeline it would follow (rents, releases, cost) and exit.
        #[arg(long)]
        dry_run: bool,
        /// Seconds of venue time between ticks.
        #[arg(long, value_name = "SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
        interval: u64,
        /// State directory (default: .venue/<event id>/ beside the event file).
        #[arg(long)]
        state: Option<PathBuf>,
        /// Print JSON (the dry run's timeline; one object per action).
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
    /// Venue images: snapshots of an installed base system, which `venue up`
    /// boots new servers from (`[cloud] image = "auto"`). They belong to no
    /// event: `venue down` keeps them.
    Image {
        #[command(subcommand)]
        command: ImageCommand,
    },
    /// One machine outside a rented fleet (a long-lived host, a test VM).
    Machine {
        #[command(subcommand)]
        command: MachineCommand,
    },
    /// Probe every host from outside as attendees reach it: DNS, TLS, the
    /// portal, BigBlueButton, Jitsi, TURN, load. Exits non-zero if a probe fails.
    Check {
        /// The event file (event.toml).
        event: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Probe again every SECONDS, printing only changes, until interrupted.
        #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
        watch: Option<u64>,
        /// Resolve names through this DNS server (ADDR or ADDR:PORT) instead of the system's
        /// [default: $VENUE_RESOLVER when set].
        #[arg(long, value_name = "ADDR")]
        resolver: Option<String>,
        /// State directory (default: .venue/<event id>/ beside the event file).
        #[arg(long)]
        state: Option<PathBuf>,
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

#[derive(Subcommand)]
enum MachineCommand {
    /// Install NixOS on a running Linux machine over SSH, checking its pinned
    /// host key on every connection: kexec into the installer, partition
    /// with disko, nixos-install, reboot. ERASES THE MACHINE'S DISK.
    Install {
        /// The machine's address.
        address: String,
        #[arg(long, default_value_t = 22)]
        port: u16,
        /// Its host key's private half (OpenSSH): the only key accepted, kept
        /// by the installed system.
        #[arg(long, value_name = "FILE")]
        host_key: PathBuf,
        /// The deploy identity (private key); its public half becomes root's key.
        #[arg(long, value_name = "FILE")]
        identity: PathBuf,
        /// The kexec installer tarball (the flake's packages.<system>.kexec-installer).
        #[arg(long, value_name = "TARBALL")]
        kexec: PathBuf,
        /// The disko script (config.system.build.diskoScript).
        #[arg(long, value_name = "SCRIPT")]
        disko: PathBuf,
        /// The system to install (config.system.build.toplevel).
        #[arg(long, value_name = "TOPLEVEL")]
        system: PathBuf,
        /// Stop after nixos-install, without rebooting.
        #[arg(long)]
        no_reboot: bool,
        /// Confirm that the machine's disk is erased.
        #[arg(long)]
        erase_disk: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ImageCommand {
    /// Install the base system on one small server, snapshot it, delete the server.
    Build {
        /// The event file whose base system to build (default: the flake's
        /// Hetzner profile, from the current directory).
        event: Option<PathBuf>,
        /// CPU architecture of the servers that will boot it.
        #[arg(long, value_enum, default_value = "x86")]
        arch: venue_agent::images::Arch,
        /// Hetzner location of the build server (default: the event's, else fsn1).
        #[arg(long)]
        location: Option<String>,
        /// State directory for the build's keys (default: .venue/image-build/).
        #[arg(long)]
        state: Option<PathBuf>,
        /// Build even when an image of this base system exists.
        #[arg(long)]
        force: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// The project's venue images, their size and monthly cost.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Delete venue images by id, or every one a newer image replaces.
    Delete {
        /// Image ids.
        ids: Vec<u64>,
        /// Keep only the newest image of each base system and architecture.
        #[arg(long, conflicts_with = "ids")]
        all_but_newest: bool,
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
        Command::Plan {
            event: file,
            json,
            state,
        } => {
            let event = Event::load(&file)?;
            let measured = plan::measured::load(
                &venue_agent::model::state::StateDir::locate(&file, &event.id, state.as_deref()),
                &event,
            )?;
            // Live prices with HCLOUD_TOKEN, else the bundled table.
            let (prices, warning) =
                venue_agent::runtime::block_on(venue_agent::cloud::pricing::live_or_bundled());
            if let Some(w) = warning {
                eprintln!("warning: {w}");
            }
            let plan = plan::plan_measured(&event, &prices, measured.as_ref())?;
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
        Command::Autopilot {
            event,
            dry_run,
            interval,
            state,
            json,
        } => commands::autopilot::run(commands::autopilot::AutopilotOptions {
            event,
            state,
            dry_run,
            json,
            interval,
        }),
        Command::Deploy {
            event: file,
            host,
            state,
            json,
        } => {
            let event = Event::load(&file)?;
            let state = venue_agent::model::state::StateDir::open(
                venue_agent::model::state::StateDir::locate(&file, &event.id, state.as_deref()),
            )?;
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
        Command::Image { command } => {
            let command = match command {
                ImageCommand::Build {
                    event,
                    arch,
                    location,
                    state,
                    force,
                    json,
                } => commands::image::Command::Build {
                    event,
                    arch,
                    location,
                    state,
                    force,
                    json,
                },
                ImageCommand::List { json } => commands::image::Command::List { json },
                ImageCommand::Delete {
                    ids,
                    all_but_newest,
                    json,
                } => commands::image::Command::Delete {
                    ids,
                    all_but_newest,
                    json,
                },
            };
            commands::image::run(command, &commands::image::build::install_base)
        }
        Command::Machine {
            command:
                MachineCommand::Install {
                    address,
                    port,
                    host_key,
                    identity,
                    kexec,
                    disko,
                    system,
                    no_reboot,
                    erase_disk,
                    json,
                },
        } => commands::machine::install(commands::machine::InstallOptions {
            address,
            port,
            host_key,
            identity,
            kexec,
            disko,
            system,
            reboot: !no_reboot,
            erase_disk,
            json,
        }),
        Command::Check {
            event,
            json,
            watch,
            resolver,
            state,
        } => {
            let ok = venue_agent::check::command(venue_agent::check::CommandOptions {
                event: &event,
                state: state.as_deref(),
                json,
                watch: watch.map(std::time::Duration::from_secs),
                resolver: resolver.as_deref(),
            })?;
            if !ok {
                anyhow::bail!("venue check: not every probe passed");
            }
            Ok(())
        }
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
