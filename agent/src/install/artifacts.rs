//! What the install phase puts on servers besides their systems: the kexec
//! installer tarball and each host's disko script. From event.toml's
//! `[deploy] installer` file (`{ fleet }: { kexec = …; disko.<host> = …; }`,
//! the testbed's toys), else from this repository's flake:
//! `packages.<system>.kexec-installer` and each mkFleet host's
//! `config.system.build.diskoScript`. Built in one nix-build.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use conference::Event;

use crate::deploy::closure::{nix_path, nix_string};

#[derive(Debug, Clone)]
pub struct Artifacts {
    /// The kexec tarball (`…tar.gz`).
    pub kexec: PathBuf,
    /// Host name → its disko script.
    pub disko: BTreeMap<String, PathBuf>,
}

/// The Nix expression `{ kexec; disko.<host>; }` for the event.
fn expr(event: &Event, fleet_json: &Path, flake: Option<&Path>) -> Result<String> {
    let fleet = format!(
        "builtins.fromJSON (builtins.readFile {})",
        nix_path(fleet_json)?
    );
    if let Some(file) = &event.deploy.installer {
        return Ok(format!("import {} {{ fleet = {fleet}; }}", nix_path(file)?));
    }
    let flake = flake.context(
        "no `[deploy] installer` in event.toml and no flake.nix above it: nothing says how to install the servers",
    )?;
    // One kexec tarball serves the fleet: its hosts must share one platform
    // (x86_64-linux, or aarch64-linux for an all-`cax` fleet).
    Ok(format!(
        "let f = builtins.getFlake {}; hosts = f.lib.mkFleet {{ fleet = {fleet}; eventFile = {}; }}; \
         platforms = builtins.attrNames (builtins.listToAttrs (map (s: {{ name = s.config.nixpkgs.hostPlatform.system; value = null; }}) (builtins.attrValues hosts))); in \
         {{ kexec = if builtins.length platforms == 1 then f.packages.${{builtins.head platforms}}.kexec-installer \
              else throw \"venue install: the servers mix platforms ${{builtins.concatStringsSep \", \" platforms}}: one kexec installer per run\"; \
            disko = builtins.mapAttrs (_: s: s.config.system.build.diskoScript) hosts; }}",
        nix_string(&format!("path:{}", flake.canonicalize()?.display())),
        nix_path(&event.file)?,
    ))
}

/// Builds the kexec tarball and the disko scripts of `hosts`.
pub fn build(
    event: &Event,
    fleet_json: &Path,
    flake: Option<&Path>,
    hosts: &[String],
) -> Result<Artifacts> {
    let expr = expr(event, fleet_json, flake)?;
    let mut cmd = Command::new("nix-build");
    cmd.args(["--extra-experimental-features", "nix-command flakes"])
        .args(["--no-out-link", "--expr", &expr])
        .args(["-A", "kexec"]);
    for h in hosts {
        cmd.arg("-A").arg(format!("disko.{}", nix_attr(h)));
    }
    let out = cmd.output().context("run nix-build (is Nix installed?)")?;
    if !out.status.success() {
        bail!(
            "building the installer (kexec tarball, disko scripts of {}) failed:\n{}",
            hosts.join(", "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let paths: Vec<PathBuf> = String::from_utf8(out.stdout)?
        .lines()
        .map(|l| PathBuf::from(l.trim()))
        .collect();
    if paths.len() != hosts.len() + 1 {
        bail!(
            "nix-build gave {} store paths for the kexec tarball and {} disko scripts",
            paths.len(),
            hosts.len()
        );
    }
    Ok(Artifacts {
        kexec: tarball(&paths[0])?,
        disko: hosts.iter().cloned().zip(paths[1..].to_vec()).collect(),
    })
}

/// The tarball itself, or the one `.tar.gz` in a directory (as nixos-images'
/// kexecInstallerTarball builds it).
pub fn tarball(out: &Path) -> Result<PathBuf> {
    if out.is_file() {
        return Ok(out.to_path_buf());
    }
    let found: Vec<PathBuf> = std::fs::read_dir(out)
        .with_context(|| format!("read {}", out.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".tar.gz"))
        .collect();
    match found.as_slice() {
        [one] => Ok(one.clone()),
        _ => bail!(
            "{} holds {} .tar.gz files: expected the one kexec tarball",
            out.display(),
            found.len()
        ),
    }
}

/// A host name as a Nix attribute (names may hold '-', which is fine; quote
/// anything else).
fn nix_attr(name: &str) -> String {
    if name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        name.to_owned()
    } else {
        nix_string(name)
    }
}

/// Artifacts built on first need: a re-run whose servers all run NixOS
/// already builds no installer.
pub struct Lazy<'a> {
    build: Box<dyn Fn() -> Result<Artifacts> + Sync + 'a>,
    cell: std::sync::Mutex<Option<Result<Artifacts, String>>>,
}

impl<'a> Lazy<'a> {
    pub fn new(build: impl Fn() -> Result<Artifacts> + Sync + 'a) -> Lazy<'a> {
        Lazy {
            build: Box::new(build),
            cell: std::sync::Mutex::new(None),
        }
    }

    /// Artifacts built already.
    pub fn ready(artifacts: Artifacts) -> Lazy<'a> {
        Lazy {
            build: Box::new(|| bail!("built already")),
            cell: std::sync::Mutex::new(Some(Ok(artifacts))),
        }
    }

    /// Builds once (other threads wait); a failed build fails every caller.
    pub fn get(&self) -> Result<Artifacts> {
        let mut cell = self.cell.lock().unwrap_or_else(|e| e.into_inner());
        if cell.is_none() {
            *cell = Some((self.build)().map_err(|e| format!("{e:#}")));
        }
        match cell.as_ref().expect("set above") {
            Ok(a) => Ok(a.clone()),
            Err(e) => Err(anyhow::anyhow!("{e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The flake's expression is valid Nix (nix-instantiate parses it; the
    /// flake itself needs nixpkgs, which only `nix flake check` has).
    #[test]
    fn the_flake_expression_parses() {
        let dir = std::env::temp_dir().join(format!("venue-artifacts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("flake.nix"), "{ outputs = _: { }; }\n").unwrap();
        std::fs::write(dir.join("fleet.json"), "{}").unwrap();
        std::fs::write(
            dir.join("event.toml"),
            "id = \"t\"\nname = \"t\"\ntimezone = \"Europe/Berlin\"\ndomain = \"t.example.org\"\nattendees = 10\n\
             [[day]]\ndate = \"2026-12-01\"\nopen = \"10:00\"\nclose = \"12:00\"\n\
             [[room]]\nname = \"Hallway\"\nkind = \"hack\"\nbackend = \"jitsi\"\npeak = 10\n",
        )
        .unwrap();
        let event = Event::load(&dir.join("event.toml")).unwrap();
        let text = expr(&event, &dir.join("fleet.json"), Some(&dir)).unwrap();
        assert!(text.contains("kexec-installer") && text.contains("diskoScript"));
        let out = Command::new("nix-instantiate")
            .args(["--parse", "--expr", &text])
            .output()
            .expect("nix-instantiate (scripts/install-deps installs nix-bin)");
        assert!(
            out.status.success(),
            "{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_tarball_is_the_one_archive_in_the_output() {
        let dir = std::env::temp_dir().join(format!("venue-tarball-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(tarball(&dir).is_err(), "none");
        std::fs::write(dir.join("nixos-kexec-installer-x86_64-linux.tar.gz"), b"x").unwrap();
        assert_eq!(
            tarball(&dir).unwrap(),
            dir.join("nixos-kexec-installer-x86_64-linux.tar.gz")
        );
        std::fs::write(dir.join("other.tar.gz"), b"x").unwrap();
        assert!(tarball(&dir).is_err(), "two");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
