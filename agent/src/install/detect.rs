//! What a host is now, from its /etc/os-release: another OS (kexec it), the
//! NixOS installer (nixos-images sets `VARIANT_ID=installer`), or NixOS
//! (with the system /run/current-system names); and, for the first two,
//! how far an earlier run got with it (the marks the install leaves, see
//! [`Marks`]), so that a run killed at any moment is resumed, not redone
//! over a host that is about to go away.

use anyhow::{bail, Result};

use crate::deploy::ssh::Ssh;

/// The marks the install phase leaves on a host as it goes. Each is
/// written in the same remote command as the step it marks, so that no
/// agent crash can separate the two; the ones in /run live as long as the
/// boot they describe (tmpfs).
pub mod mark {
    /// On the old system: when (the host's `date +%s`) kexec/run was
    /// started. The installer's /root is new, so it never carries this.
    pub const KEXEC: &str = "/root/.venue-kexec-started";
    /// In the installer: when the reboot into the installed system was asked for.
    pub const REBOOT: &str = "/run/venue-reboot-started";
    /// In the installer: the disko script that ran to its end in this boot.
    pub const DISKO: &str = "/run/venue-disko-done";
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// Not NixOS: `ID` of os-release (`ubuntu`, `debian`, …).
    Other {
        id: String,
        /// Seconds since an earlier run started kexec/run here, if one did.
        kexec_started: Option<u64>,
    },
    /// The kexec installer.
    Installer(Marks),
    /// Installed NixOS, running this system (None: no /run/current-system).
    Nixos { system: Option<String> },
    /// The connection broke while asking (the host is going down).
    Gone,
}

/// How far the installer got in this boot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Marks {
    /// Seconds since a reboot into the installed system was asked for.
    pub reboot_started: Option<u64>,
    /// The disko script that ran to its end in this boot, when the disk is
    /// still mounted at /mnt: its layout is there, not to be wiped again.
    pub partitioned: Option<String>,
}

/// Reads what the host behind `ssh` is.
pub fn found(ssh: &Ssh) -> Result<Found> {
    let out = ssh.run("cat /etc/os-release")?;
    if out.status != 0 {
        bail!(
            "{}: cannot read /etc/os-release: {}",
            ssh.host,
            out.stderr.trim()
        );
    }
    let (id, variant) = parse(&out.stdout);
    Ok(match (id.as_str(), variant.as_deref()) {
        ("nixos", Some("installer")) => {
            let m = marks(ssh, &[mark::REBOOT, mark::DISKO])?;
            Found::Installer(Marks {
                reboot_started: m.age(mark::REBOOT),
                partitioned: m.mounted.then(|| m.value(mark::DISKO)).flatten(),
            })
        }
        ("nixos", _) => {
            let current = ssh.run("readlink /run/current-system")?;
            let path = current.stdout.trim();
            Found::Nixos {
                system: (current.status == 0 && path.starts_with("/nix/store/"))
                    .then(|| path.to_owned()),
            }
        }
        ("", _) => bail!("{}: /etc/os-release has no ID", ssh.host),
        _ => Found::Other {
            kexec_started: marks(ssh, &[mark::KEXEC])?.age(mark::KEXEC),
            id,
        },
    })
}

/// The marks' contents, the host's clock, and whether /mnt is mounted.
struct Read {
    now: Option<u64>,
    values: Vec<(String, String)>,
    mounted: bool,
}

impl Read {
    fn value(&self, path: &str) -> Option<String> {
        self.values
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, v)| v.clone())
    }

    /// Seconds since the time `path` holds, on the host's own clock (a
    /// mark from the future counts as just now).
    fn age(&self, path: &str) -> Option<u64> {
        let then: u64 = self.value(path)?.parse().ok()?;
        Some(self.now?.saturating_sub(then))
    }
}

fn marks(ssh: &Ssh, paths: &[&str]) -> Result<Read> {
    let mut script = String::from(
        "date +%s; if mountpoint -q /mnt 2>/dev/null; then echo mounted; else echo not-mounted; fi",
    );
    for p in paths {
        script.push_str(&format!(
            "; printf '%s=' {p}; head -c 4096 {p} 2>/dev/null | head -n 1; echo"
        ));
    }
    let out = ssh.run(&script)?;
    Ok(parse_marks(&out.stdout, paths))
}

fn parse_marks(text: &str, paths: &[&str]) -> Read {
    let mut lines = text.lines();
    let now = lines.next().and_then(|l| l.trim().parse().ok());
    let mounted = lines.next().map(str::trim) == Some("mounted");
    let values = lines
        .filter_map(|l| {
            let (p, v) = l.split_once('=')?;
            let v = v.trim();
            (paths.contains(&p) && !v.is_empty()).then(|| (p.to_owned(), v.to_owned()))
        })
        .collect();
    Read {
        now,
        values,
        mounted,
    }
}

/// `ID` and `VARIANT_ID` of an os-release file (values may be quoted).
pub fn parse(text: &str) -> (String, Option<String>) {
    let value = |key: &str| {
        text.lines().find_map(|l| {
            let v = l.trim().strip_prefix(key)?.strip_prefix('=')?;
            Some(v.trim().trim_matches('"').trim_matches('\'').to_owned())
        })
    };
    (value("ID").unwrap_or_default(), value("VARIANT_ID"))
}

#[cfg(test)]
mod tests {
    use super::{mark, parse, parse_marks};

    #[test]
    fn os_release_names_the_system_and_the_installer() {
        let ubuntu = "PRETTY_NAME=\"Ubuntu 24.04.1 LTS\"\nNAME=\"Ubuntu\"\nVERSION_ID=\"24.04\"\nID=ubuntu\nID_LIKE=debian\n";
        assert_eq!(parse(ubuntu), ("ubuntu".into(), None));
        let installer = "NAME=NixOS\nID=nixos\nVARIANT_ID=installer\nVERSION_ID=\"25.11\"\n";
        assert_eq!(parse(installer), ("nixos".into(), Some("installer".into())));
        // ID_LIKE and VERSION_ID must not be taken for ID.
        let nixos = "ID_LIKE=\"\"\nVERSION_ID=\"26.05\"\nID=\"nixos\"\n";
        assert_eq!(parse(nixos), ("nixos".into(), None));
        assert_eq!(parse("NAME=x\n"), (String::new(), None));
    }

    #[test]
    fn marks_are_read_with_their_age_on_the_hosts_clock() {
        let paths = [mark::REBOOT, mark::DISKO];
        let text = format!(
            "1000\nmounted\n{}=990\n{}=/nix/store/abc-disko\n",
            mark::REBOOT,
            mark::DISKO
        );
        let r = parse_marks(&text, &paths);
        assert_eq!(r.age(mark::REBOOT), Some(10));
        assert_eq!(
            r.value(mark::DISKO).as_deref(),
            Some("/nix/store/abc-disko")
        );
        assert!(r.mounted);
        // Missing marks, /mnt not mounted, a mark from the future.
        let text = format!(
            "1000\nnot-mounted\n{}=\n{}=2000\n",
            mark::DISKO,
            mark::REBOOT
        );
        let r = parse_marks(&text, &paths);
        assert_eq!(r.value(mark::DISKO), None);
        assert_eq!(r.age(mark::REBOOT), Some(0));
        assert!(!r.mounted);
        // A garbled mark is no mark; a host without `date` has no ages.
        let r = parse_marks(&format!("x\nmounted\n{}=soon\n", mark::REBOOT), &paths);
        assert_eq!(r.age(mark::REBOOT), None);
    }
}
