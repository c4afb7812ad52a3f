//! `venue machine install`: the install phase of `venue up` (kexec into the
//! NixOS installer, disko, nixos-install, reboot, all over the pinned SSH)
//! for one machine that is not part of a rented fleet: a long-lived host,
//! or the target of the NixOS VM test (tests/vm/install.nix). It erases the
//! machine's disk, so it asks for `--erase-disk` and takes its artifacts as
//! built store paths; nothing is rented or looked up in a cloud.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use ssh_key::PrivateKey;

use crate::deploy::Host;
use crate::install::{self, artifacts, How};

pub struct InstallOptions {
    /// Address (or name) of the machine.
    pub address: String,
    pub port: u16,
    /// The machine's host key, private half (OpenSSH): its public half is
    /// the only key accepted, and the installed system keeps it.
    pub host_key: PathBuf,
    /// The deploy identity; its public half becomes root's authorized key.
    pub identity: PathBuf,
    /// The kexec installer tarball.
    pub kexec: PathBuf,
    /// The machine's disko script (`config.system.build.diskoScript`).
    pub disko: PathBuf,
    /// The system to install (`config.system.build.toplevel`).
    pub system: PathBuf,
    pub reboot: bool,
    pub erase_disk: bool,
    pub json: bool,
}

fn private_key(path: &Path) -> Result<(String, String)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the key {}", path.display()))?;
    let key = PrivateKey::from_openssh(&text)
        .with_context(|| format!("{} is not an OpenSSH private key", path.display()))?;
    let public = key
        .public_key()
        .to_openssh()
        .context("encoding its public half")?;
    Ok((text, public))
}

fn store_path(what: &str, path: &Path) -> Result<PathBuf> {
    let real = path
        .canonicalize()
        .with_context(|| format!("{what} {}: not found", path.display()))?;
    if !real.starts_with("/nix/store/") {
        bail!(
            "{what} {} is not in the Nix store ({}): give a built path",
            path.display(),
            real.display()
        );
    }
    Ok(real)
}

pub fn install(opts: InstallOptions) -> Result<()> {
    if !opts.erase_disk {
        bail!(
            "`venue machine install` erases {}'s disk: say so with --erase-disk",
            opts.address
        );
    }
    let kexec = store_path("--kexec", &opts.kexec)?;
    let disko = store_path("--disko", &opts.disko)?;
    let system = store_path("--system", &opts.system)?;
    let (host_key_private, host_key) = private_key(&opts.host_key)?;
    let (_, authorized_key) = private_key(&opts.identity)?;
    let name = opts.address.clone();
    let target = install::Target {
        host: Host {
            name: name.clone(),
            roles: Vec::new(),
            address: opts.address.clone(),
            port: opts.port,
            host_key,
        },
        host_key_private,
        authorized_key,
        system,
        from_snapshot: false,
    };
    // known_hosts files for the pinned key: private to this run.
    let work_dir = std::env::temp_dir().join(format!("venue-machine-{}", std::process::id()));
    std::fs::create_dir_all(&work_dir)
        .with_context(|| format!("creating {}", work_dir.display()))?;
    let built = artifacts::Lazy::ready(artifacts::Artifacts {
        kexec,
        disko: [(name, disko)].into_iter().collect(),
    });
    let options = install::Options {
        user: "root".into(),
        identity: opts.identity.clone(),
        work_dir: work_dir.clone(),
        concurrency: 1,
        boot_wait: Duration::from_secs(10 * 60),
        kexec_wait: install::kexec_wait_from_env(),
        reboot: opts.reboot,
    };
    let reports = install::install(&[target], &built, &options, None);
    let _ = std::fs::remove_dir_all(&work_dir);
    if opts.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        print!("{}", install::report::table(&reports));
    }
    match reports.first().map(|r| (r.install, &r.message)) {
        Some((How::Installed | How::Already, _)) => Ok(()),
        Some((_, message)) => bail!("{}: {message}", opts.address),
        None => bail!("{}: no report", opts.address),
    }
}
