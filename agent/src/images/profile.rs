//! The base system a venue snapshot carries, and its profile hash: the
//! store hash of that system's toplevel, which names the snapshot in its
//! `venue/image` label. A snapshot built from another base (an older
//! nixpkgs, another hetzner profile) has another hash and is never booted.
//!
//! The base is a host of the Hetzner profile with no roles, from this
//! repository's flake; with `[deploy] systems = FILE` (the testbed's toy
//! systems) it is that file's `base` attribute.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use conference::Event;

/// A server type's CPU architecture, as the API names it (`x86`, `arm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum Arch {
    X86,
    Arm,
}

impl Arch {
    /// Hetzner's Ampere types are `cax*`; every other type is x86.
    pub fn of_server_type(name: &str) -> Arch {
        if name.starts_with("cax") {
            Arch::Arm
        } else {
            Arch::X86
        }
    }
    pub fn label(self) -> &'static str {
        match self {
            Arch::X86 => "x86",
            Arch::Arm => "arm",
        }
    }
    pub fn nix_system(self) -> &'static str {
        match self {
            Arch::X86 => "x86_64-linux",
            Arch::Arm => "aarch64-linux",
        }
    }
    pub fn parse(label: &str) -> Option<Arch> {
        match label {
            "x86" => Some(Arch::X86),
            "arm" => Some(Arch::Arm),
            _ => None,
        }
    }
}

/// The flake at or above `start` (a directory or a file in one).
pub fn find_flake(start: &Path) -> Option<PathBuf> {
    let start = start.canonicalize().ok()?;
    start
        .ancestors()
        .find(|d| d.join("flake.nix").is_file())
        .map(Path::to_path_buf)
}

/// Where the base comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// `[deploy] systems`: the file's `base` attribute.
    /// (`[deploy] installer`: what installs it, the testbed's toys.)
    Systems {
        file: PathBuf,
        installer: Option<PathBuf>,
        event: String,
        domain: String,
    },
    /// The flake: nixosModules.default with the Hetzner profile, no roles.
    Flake(PathBuf),
}

impl Source {
    /// The event's base; without an event, the flake above the current directory.
    pub fn of(event: Option<&Event>) -> Result<Source> {
        if let Some(e) = event {
            if let Some(file) = &e.deploy.systems {
                return Ok(Source::Systems {
                    file: file.clone(),
                    installer: e.deploy.installer.clone(),
                    event: e.id.clone(),
                    domain: e.domain.clone(),
                });
            }
            let flake = find_flake(&e.file).with_context(|| {
                format!(
                    "{}: no `[deploy] systems` and no flake.nix above it: nothing says what the base system is",
                    e.file.display()
                )
            })?;
            return Ok(Source::Flake(flake));
        }
        let flake = find_flake(Path::new("."))
            .context("no flake.nix in or above the current directory: name an event file")?;
        Ok(Source::Flake(flake))
    }

    /// The Nix expression of the base system's toplevel for `arch`.
    pub fn expr(&self, arch: Arch) -> Result<String> {
        Ok(match self {
            Source::Systems {
                file,
                event,
                domain,
                ..
            } => {
                let f = nix_string(&abs(file)?.display().to_string());
                // An empty fleet: the base belongs to no host of any event.
                format!(
                    "let s = import (/. + {f}) {{ fleet = {{ event = {}; domain = {}; servers = [ ]; }}; }}; in \
                     s.base or (throw \"{}: no `base` attribute (the system that venue images carry)\")",
                    nix_string(event),
                    nix_string(domain),
                    file.display().to_string().replace('"', "'"),
                )
            }
            Source::Flake(dir) => {
                format!("({}).config.system.build.toplevel", flake_base(dir, arch)?)
            }
        })
    }

    /// The Nix expression `{ kexec; disko.<name>; }` that installs the base
    /// on the build server `name` (`fleet_json`: a fleet of that one server).
    pub fn installer_expr(&self, arch: Arch, name: &str, fleet_json: &Path) -> Result<String> {
        Ok(match self {
            Source::Systems {
                installer: Some(installer),
                ..
            } => format!(
                "import (/. + {}) {{ fleet = builtins.fromJSON (builtins.readFile (/. + {})); }}",
                nix_string(&abs(installer)?.display().to_string()),
                nix_string(&abs(fleet_json)?.display().to_string()),
            ),
            Source::Systems { file, .. } => bail!(
                "the event names `[deploy] systems = {}` but no `[deploy] installer`: nothing says how to install its base",
                file.display()
            ),
            Source::Flake(dir) => format!(
                "let f = builtins.getFlake {}; in {{ kexec = f.packages.{}.kexec-installer; \
                 disko.{} = ({}).config.system.build.diskoScript; }}",
                nix_string(&format!("path:{}", abs(dir)?.display())),
                arch.nix_system(),
                nix_string(name),
                flake_base(dir, arch)?,
            ),
        })
    }

    /// Builds the installer: (the kexec tarball's output, `name`'s disko script).
    pub fn build_installer(
        &self,
        arch: Arch,
        name: &str,
        fleet_json: &Path,
    ) -> Result<(PathBuf, PathBuf)> {
        let out = Command::new("nix-build")
            .args(["--extra-experimental-features", "nix-command flakes"])
            .args([
                "--no-out-link",
                "--expr",
                &self.installer_expr(arch, name, fleet_json)?,
            ])
            // Server names are letters, digits and '-': a plain attribute.
            .args(["-A", "kexec", "-A", &format!("disko.{name}")])
            .output()
            .context("run nix-build (is Nix installed?)")?;
        if !out.status.success() {
            bail!(
                "building the installer for {name} ({}): {}",
                self.describe(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let text = String::from_utf8(out.stdout)?;
        match text.lines().collect::<Vec<_>>().as_slice() {
            [kexec, disko] => Ok((PathBuf::from(kexec.trim()), PathBuf::from(disko.trim()))),
            other => bail!(
                "nix-build gave {} paths for the kexec tarball and one disko script",
                other.len()
            ),
        }
    }

    /// The profile hash for `arch`, by evaluation only (nothing is built).
    pub fn hash(&self, arch: Arch) -> Result<String> {
        let expr = format!("({}).outPath", self.expr(arch)?);
        let out = Command::new("nix-instantiate")
            .args(["--extra-experimental-features", "nix-command flakes"])
            .args(["--eval", "--json", "--expr", &expr])
            .output()
            .context("run nix-instantiate (is Nix installed?)")?;
        if !out.status.success() {
            bail!(
                "evaluating the base system ({}): {}",
                self.describe(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let path: String =
            serde_json::from_slice(&out.stdout).context("nix-instantiate printed no store path")?;
        hash_of(&path)
    }

    /// Builds the base system; returns its toplevel and profile hash.
    pub fn build(&self, arch: Arch) -> Result<(PathBuf, String)> {
        let out = Command::new("nix-build")
            .args(["--extra-experimental-features", "nix-command flakes"])
            .args(["--no-out-link", "--expr", &self.expr(arch)?])
            .output()
            .context("run nix-build (is Nix installed?)")?;
        if !out.status.success() {
            bail!(
                "building the base system ({}): {}",
                self.describe(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let path = String::from_utf8(out.stdout)?.trim().to_owned();
        let hash = hash_of(&path)?;
        Ok((PathBuf::from(path), hash))
    }

    pub fn describe(&self) -> String {
        match self {
            Source::Systems { file, .. } => format!("`base` of {}", file.display()),
            Source::Flake(dir) => format!("the Hetzner profile of the flake at {}", dir.display()),
        }
    }
}

/// The base host of the flake: nixosModules.default (every role off) with
/// the Hetzner profile on, for `arch`.
fn flake_base(dir: &Path, arch: Arch) -> Result<String> {
    Ok(format!(
        "let f = builtins.getFlake {}; in f.inputs.nixpkgs.lib.nixosSystem {{ modules = [ \
         f.nixosModules.default \
         {{ nixpkgs.hostPlatform = {}; nixpkgs.config = f.lib.nixpkgsConfig; \
         services.venue.hetzner.enable = true; networking.hostName = \"venue-base\"; }} \
         ]; }}",
        nix_string(&format!("path:{}", abs(dir)?.display())),
        nix_string(arch.nix_system()),
    ))
}

/// `/nix/store/<32 chars>-name` → the 32 chars: a valid label value.
pub fn hash_of(store_path: &str) -> Result<String> {
    let base = Path::new(store_path)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("");
    match base.split_once('-') {
        Some((h, _)) if h.len() == 32 && h.chars().all(|c| c.is_ascii_alphanumeric()) => {
            Ok(h.to_owned())
        }
        _ => bail!("{store_path:?} is not a store path"),
    }
}

fn abs(p: &Path) -> Result<PathBuf> {
    p.canonicalize()
        .with_context(|| format!("{} does not exist", p.display()))
}

fn nix_string(s: &str) -> String {
    format!(
        "\"{}\"",
        s.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace("${", "\\${")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_hash_is_a_label_value() {
        let h = hash_of("/nix/store/0123456789abcdfghijklmnpqrsvwxyz-toy-base").unwrap();
        assert_eq!(h, "0123456789abcdfghijklmnpqrsvwxyz");
        assert!(crate::cloud::labels::check_value(&h).is_ok());
        assert!(hash_of("/tmp/x").is_err());
        assert!(hash_of("/nix/store/short-x").is_err());
        assert_eq!(Arch::of_server_type("cax21"), Arch::Arm);
        assert_eq!(Arch::of_server_type("ccx33"), Arch::X86);
    }
}
