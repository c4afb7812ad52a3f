//! What the agent asks a host over the pinned SSH session: its archive
//! declaration, the files of an item with sizes, times and (when asked)
//! SHA-256 sums computed on the host, dumps, and one file's bytes.
//! Only POSIX sh, find, stat, sha256sum and cat: a NixOS host has them, and so
//! has a test host.

use std::io::Write;

use anyhow::{bail, Context, Result};

use super::declaration::{self, Declaration};
use crate::deploy::ssh::Ssh;

/// What a host says about its archive declaration.
pub enum Declared {
    /// No system profile: the host was never deployed, so it ran nothing
    /// that could hold data.
    NeverDeployed,
    /// A system without a declaration: we cannot know what it holds.
    Missing,
    Items(Declaration),
}

pub fn read_declaration(ssh: &Ssh) -> Result<Declared> {
    let profile = crate::deploy::activate::PROFILE;
    let out = ssh.run(&format!(
        "if [ ! -e {profile} ]; then echo never-deployed; elif [ -f {p} ]; then echo declared; cat {p}; else echo missing; fi",
        p = declaration::PATH
    ))?;
    if out.status != 0 {
        bail!(
            "{}: reading {} failed: {}",
            ssh.host,
            declaration::PATH,
            out.stderr.trim()
        );
    }
    let (first, rest) = out.stdout.split_once('\n').unwrap_or((&out.stdout, ""));
    Ok(match first.trim() {
        "never-deployed" => Declared::NeverDeployed,
        "missing" => Declared::Missing,
        "declared" => Declared::Items(Declaration::parse(&ssh.host, rest)?),
        other => bail!("{}: unexpected answer {other:?}", ssh.host),
    })
}

/// A regular file on the host.
#[derive(Debug, Clone)]
pub struct RemoteFile {
    pub remote: String,
    pub size: u64,
    pub mtime: i64,
    /// Computed on the host when the listing was asked with sums.
    pub sha256: Option<String>,
}

/// Every regular file at or below `path` (none if it does not exist yet:
/// a BigBlueButton server that recorded nothing has no published/ folder).
/// Symbolic links are not followed. With `hash`, the host computes each
/// file's SHA-256, so only missing files need to cross the network.
pub fn list(ssh: &Ssh, path: &str, hash: bool) -> Result<Vec<RemoteFile>> {
    // One record per file: "SIZE MTIME SHA\tPATH\0" (SHA is "-" without hash).
    let each = r#"for f do m=$(stat -c "%s %Y" -- "$f") || exit 1; h=-; if [ "$H" = 1 ]; then h=$(sha256sum < "$f") || exit 1; h=${h%% *}; fi; printf "%s %s\t%s\0" "$m" "$h" "$f"; done"#;
    let script = format!(
        "H={h}; export H; p={p}; each={each}; \
         if [ -d \"$p\" ]; then find \"$p\" -type f -exec sh -c \"$each\" sh {{}} +; \
         elif [ -f \"$p\" ]; then sh -c \"$each\" sh \"$p\"; \
         elif [ -e \"$p\" ] || [ -L \"$p\" ]; then echo \"$p is neither a file nor a directory\" >&2; exit 1; fi",
        h = if hash { 1 } else { 0 },
        p = quote(path),
        each = quote(each),
    );
    let out = ssh.run(&script)?;
    if out.status != 0 {
        bail!("{}: listing {path} failed: {}", ssh.host, out.stderr.trim());
    }
    let mut files = Vec::new();
    for record in out.stdout.split('\0').filter(|r| !r.is_empty()) {
        let parsed = (|| {
            let (meta, remote) = record.split_once('\t')?;
            let mut m = meta.split(' ');
            let size = m.next()?.parse().ok()?;
            let mtime = m.next()?.parse().ok()?;
            let sha = m.next()?;
            let sha256 = match sha {
                "-" => None,
                s if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) => {
                    Some(s.to_ascii_lowercase())
                }
                _ => return None,
            };
            Some(RemoteFile {
                remote: remote.to_owned(),
                size,
                mtime,
                sha256,
            })
        })();
        match parsed {
            Some(f) => files.push(f),
            None => bail!(
                "{}: listing {path}: cannot read the record {record:?}",
                ssh.host
            ),
        }
    }
    files.sort_by(|a, b| a.remote.cmp(&b.remote));
    Ok(files)
}

/// Runs an item's dump command as root on the host.
pub fn dump(ssh: &Ssh, name: &str, command: &str) -> Result<()> {
    let out = ssh.run(command)?;
    if out.status != 0 {
        bail!(
            "{}: the dump of {name} (`{command}`) exited with {}: {}",
            ssh.host,
            out.status,
            out.stderr.trim()
        );
    }
    Ok(())
}

/// Streams the bytes of `remote` into `out`.
pub fn fetch(ssh: &Ssh, remote: &str, out: &mut dyn Write) -> Result<()> {
    let (status, stderr) = ssh
        .run_to_writer(&format!("cat -- {}", quote(remote)), out)
        .with_context(|| format!("copying {}:{remote}", ssh.host))?;
    if status != 0 {
        bail!("{}: reading {remote} failed: {}", ssh.host, stderr.trim());
    }
    Ok(())
}

/// `s` as one word for sh.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `s` as typed on a command line: quoted only when it needs to be.
pub fn quote_if_needed(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+=:,@".contains(&b))
    {
        s.to_owned()
    } else {
        quote(s)
    }
}
