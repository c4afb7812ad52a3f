//! What a host holds that outlives the event, as its NixOS system declares
//! it (modules/archive.nix renders `/etc/venue/archive.json`): named items,
//! each a directory or file to copy, optionally produced first by a dump
//! command (the portal's SQLite online backup).

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// Where the agent reads the declaration: inside the system profile that the
/// deploy step sets (and rolls back), so it is the running system's, and a
/// test host with its own /nix has its own.
pub const PATH: &str = "/nix/var/nix/profiles/system/etc/venue/archive.json";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Declaration {
    /// Item name → item. The name is the item's place in the archive:
    /// `<state>/archive/<host>/<name>[/<file below path>]`.
    pub items: BTreeMap<String, Item>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Item {
    /// Absolute path of a directory (every regular file below it) or a file.
    pub path: String,
    /// Shell command run as root before the copy, writing `path`.
    #[serde(default)]
    pub dump: Option<String>,
}

impl Declaration {
    /// Parses and checks the declaration `host` sent: names must be plain
    /// file names (they become local paths), paths absolute.
    pub fn parse(host: &str, text: &str) -> Result<Declaration> {
        let d: Declaration = serde_json::from_str(text)
            .with_context(|| format!("{host}: {PATH} is not an archive declaration"))?;
        for (name, item) in &d.items {
            if !valid_name(name) {
                bail!("{host}: {PATH}: item name {name:?} must be a plain file name (letters, digits, '.', '_', '-')");
            }
            if !item.path.starts_with('/') || item.path.contains('\0') {
                bail!(
                    "{host}: {PATH}: item {name}: path {:?} must be absolute",
                    item.path
                );
            }
        }
        Ok(d)
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The archive-relative path of `remote`, a file found under `item.path`:
/// `<name>` for the item's own file, `<name>/<rest>` below a directory.
/// Refuses anything that could leave the host's archive directory.
pub fn local_rel(name: &str, item_path: &str, remote: &str) -> Result<String> {
    let base = item_path.trim_end_matches('/');
    if remote == base {
        return Ok(name.to_owned());
    }
    let rest = remote
        .strip_prefix(base)
        .and_then(|r| r.strip_prefix('/'))
        .with_context(|| format!("{remote} is not below {item_path}"))?;
    if rest
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        bail!("refusing the file name {remote:?}: it has an empty, `.` or `..` component");
    }
    Ok(format!("{name}/{rest}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_modules_format_and_refuses_bad_names() {
        let d = Declaration::parse(
            "h",
            r#"{"items": {"recordings": {"path": "/var/lib/venue-bbb/bigbluebutton/published"},
                          "portal.sqlite": {"path": "/var/lib/venue-portal/archive.sqlite", "dump": "venue-portal-ctl backup /var/lib/venue-portal/archive.sqlite"}}}"#,
        )
        .unwrap();
        assert_eq!(d.items.len(), 2);
        assert!(d.items["portal.sqlite"].dump.is_some());
        for bad in [
            r#"{"items": {"../x": {"path": "/a"}}}"#,
            r#"{"items": {"x": {"path": "relative"}}}"#,
            r#"{"items": {"x": {"path": "/a", "dumb": "typo"}}}"#,
        ] {
            let e = Declaration::parse("h", bad).unwrap_err();
            assert!(format!("{e:#}").contains("h: "), "{e:#}");
        }
    }

    #[test]
    fn local_paths_stay_inside_the_item() {
        assert_eq!(
            local_rel("rec", "/a/b/", "/a/b/c/d.webm").unwrap(),
            "rec/c/d.webm"
        );
        assert_eq!(local_rel("db", "/a/x.sqlite", "/a/x.sqlite").unwrap(), "db");
        assert!(local_rel("rec", "/a/b", "/a/b/../../etc/passwd").is_err());
        assert!(local_rel("rec", "/a/b", "/a/bc/d").is_err());
        assert!(local_rel("rec", "/a/b", "/a/b//d").is_err());
    }
}
