//! What a host is now, from its /etc/os-release: another OS (kexec it), the
//! NixOS installer (nixos-images sets `VARIANT_ID=installer`), or NixOS
//! (with the system /run/current-system names).

use anyhow::{bail, Result};

use crate::deploy::ssh::Ssh;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// Not NixOS: `ID` of os-release (`ubuntu`, `debian`, …).
    Other { id: String },
    /// The kexec installer.
    Installer,
    /// Installed NixOS, running this system (None: no /run/current-system).
    Nixos { system: Option<String> },
    /// The connection broke while asking (the host is going down).
    Gone,
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
        ("nixos", Some("installer")) => Found::Installer,
        ("nixos", _) => {
            let current = ssh.run("readlink /run/current-system")?;
            let path = current.stdout.trim();
            Found::Nixos {
                system: (current.status == 0 && path.starts_with("/nix/store/"))
                    .then(|| path.to_owned()),
            }
        }
        ("", _) => bail!("{}: /etc/os-release has no ID", ssh.host),
        _ => Found::Other { id },
    })
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
    use super::parse;

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
}
