//! System closures: building them, finding what a host lacks, and copying
//! that with `nix copy` over the same pinned SSH identity.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::ssh::Ssh;

/// Builds one system per host. `systems` is a Nix file holding a function
/// `{ fleet }: { <host name> = <system derivation>; … }`; `fleet` is
/// fleet.json as a Nix value. Returns host name → store path.
pub fn build(
    systems: &Path,
    fleet_json: &Path,
    hosts: &[String],
) -> Result<BTreeMap<String, PathBuf>> {
    if hosts.is_empty() {
        return Ok(BTreeMap::new());
    }
    // One evaluation for all hosts: evaluating the fleet (nixpkgs and all)
    // is the slow part, and nix-build prints the outputs in `-A` order.
    let expr = format!(
        "import {systems} {{ fleet = builtins.fromJSON (builtins.readFile {fleet}); }}",
        systems = nix_path(systems)?,
        fleet = nix_path(fleet_json)?,
    );
    let mut cmd = Command::new("nix-build");
    // getFlake needs flakes, which a stock Nix keeps experimental.
    cmd.args(["--extra-experimental-features", "nix-command flakes"])
        .args(["--no-out-link", "--expr", &expr]);
    for host in hosts {
        cmd.arg("-A").arg(host);
    }
    let out = cmd.output().context("run nix-build (is Nix installed?)")?;
    if !out.status.success() {
        bail!(
            "building the system of {} failed:\n{}",
            hosts.join(", "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let paths: Vec<PathBuf> = String::from_utf8(out.stdout)?
        .lines()
        .map(|l| PathBuf::from(l.trim()))
        .collect();
    if paths.len() != hosts.len() {
        bail!(
            "nix-build gave {} store paths for {} hosts: each host's system must have one output",
            paths.len(),
            hosts.len()
        );
    }
    Ok(hosts.iter().cloned().zip(paths).collect())
}

/// The Nix expression for the flake's systems: this repository's
/// `lib.mkFleet` builds one NixOS system per host of fleet.json, and gives
/// the portal the event file.
pub fn flake_systems_expr(flake: &Path, event_file: &Path) -> Result<String> {
    Ok(format!(
        "{{ fleet }}: builtins.mapAttrs (_: s: s.config.system.build.toplevel) ((builtins.getFlake {}).lib.mkFleet {{ inherit fleet; eventFile = {}; }})",
        nix_string(&format!("path:{}", flake.canonicalize()?.display())),
        nix_path(event_file)?,
    ))
}

/// Every store path `system` needs, itself included.
pub fn closure(system: &Path) -> Result<Vec<String>> {
    let out = Command::new("nix-store")
        .arg("-qR")
        .arg(system)
        .output()
        .context("run nix-store -qR")?;
    if !out.status.success() {
        bail!(
            "nix-store -qR {}: {}",
            system.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8(out.stdout)?
        .lines()
        .map(str::to_owned)
        .collect())
}

/// NAR sizes of local store paths, for progress and the bytes we send.
pub fn nar_sizes(paths: &[String]) -> Result<BTreeMap<String, u64>> {
    let mut sizes = BTreeMap::new();
    for chunk in paths.chunks(500) {
        let out = Command::new("nix")
            .args(["--extra-experimental-features", "nix-command"])
            .args(["path-info", "--json"])
            .args(chunk)
            .output()
            .context("run nix path-info")?;
        if !out.status.success() {
            bail!(
                "nix path-info: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let infos: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        // Nix 2.8 prints a list of objects with "path"; newer Nix an object keyed by path.
        let entries: Vec<(String, u64)> = match &infos {
            serde_json::Value::Array(list) => list
                .iter()
                .filter_map(|i| Some((i["path"].as_str()?.to_owned(), i["narSize"].as_u64()?)))
                .collect(),
            serde_json::Value::Object(map) => map
                .iter()
                .filter_map(|(p, i)| Some((p.clone(), i["narSize"].as_u64()?)))
                .collect(),
            _ => Vec::new(),
        };
        sizes.extend(entries);
    }
    Ok(sizes)
}

/// The paths of `closure` that the host's store does not have.
pub fn missing_on(ssh: &Ssh, closure: &[String]) -> Result<Vec<String>> {
    let mut missing = Vec::new();
    for chunk in closure.chunks(400) {
        let command = format!(
            "nix-store --check-validity --print-invalid {}",
            chunk.join(" ")
        );
        let out = ssh.run(&command)?;
        if out.status != 0 {
            bail!(
                "{}: cannot query its Nix store: {}",
                ssh.host,
                out.stderr.trim()
            );
        }
        missing.extend(out.stdout.lines().map(str::to_owned));
    }
    Ok(missing)
}

/// How `nix copy` reaches a host: the pinned key in a known_hosts file of
/// its own, and the deploy identity.
pub struct CopyTarget<'a> {
    pub address: &'a str,
    pub port: u16,
    pub user: &'a str,
    pub known_hosts: &'a Path,
    pub identity: &'a Path,
}

/// Copies `paths` (with their references) to the target. With
/// `substitute`, the target first tries its own binary caches, so an
/// organiser's slow uplink only carries what no cache has; what it does carry
/// is compressed by ssh (NARs of a NixOS system shrink to about a third).
pub fn copy(target: &CopyTarget, paths: &[String], substitute: bool, compress: bool) -> Result<()> {
    copy_to_store(target, "", paths, substitute, compress)
}

/// [`copy`] into the store that `query` names on the target (`?remote-store=…`,
/// url-encoded: the install phase copies into the store at /mnt).
pub fn copy_to_store(
    target: &CopyTarget,
    query: &str,
    paths: &[String],
    substitute: bool,
    compress: bool,
) -> Result<()> {
    for p in [target.known_hosts, target.identity] {
        if p.to_string_lossy().contains(char::is_whitespace) {
            bail!(
                "{} contains white space, which NIX_SSHOPTS cannot carry",
                p.display()
            );
        }
    }
    let sshopts = format!(
        "-o UserKnownHostsFile={} -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes -o BatchMode=yes -o Compression={} -i {} -p {}",
        target.known_hosts.display(),
        if compress { "yes" } else { "no" },
        target.identity.display(),
        target.port
    );
    let mut cmd = Command::new("nix");
    cmd.args(["--extra-experimental-features", "nix-command"])
        .arg("copy")
        .arg("--to")
        .arg(format!("ssh://{}@{}{query}", target.user, target.address));
    if substitute {
        cmd.arg("--substitute-on-destination");
    }
    let out = cmd
        .args(paths)
        .env("NIX_SSHOPTS", sshopts)
        .output()
        .context("run nix copy")?;
    if !out.status.success() {
        bail!(
            "nix copy to {}: {}",
            target.address,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

pub(crate) fn nix_path(p: &Path) -> Result<String> {
    let abs = p
        .canonicalize()
        .with_context(|| format!("{} does not exist", p.display()))?;
    Ok(nix_string(&abs.to_string_lossy()))
}

/// A Nix string literal.
pub(crate) fn nix_string(s: &str) -> String {
    let escaped = s
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace("${", "\\${");
    format!("\"{escaped}\"")
}
