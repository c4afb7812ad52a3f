//! The pool file and how the portal notices that it changed.
//!
//! ```json
//! {"bbb": [{"name": "lpc-2020-bbb-3",
//!           "url": "https://lpc-2020-bbb-3.example.org/bigbluebutton/api/",
//!           "secret_file": "/var/lib/venue/secrets/bbb-secret",
//!           "checksum": "sha256", "draining": false}],
//!  "updated": "2026-12-01T08:00:00Z"}
//! ```
//!
//! A file is taken whole or not at all: any error refuses it and the pool
//! stays as it was.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use chrono::{DateTime, Utc};
use conference::protocol::bbb::Checksum;
use serde::Deserialize;

use crate::config::BbbServer;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPool {
    bbb: Vec<RawEntry>,
    updated: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    name: String,
    url: String,
    secret_file: PathBuf,
    checksum: Option<String>,
    #[serde(default)]
    draining: bool,
}

/// One server of the pool file.
#[derive(Debug, Clone)]
pub struct Entry {
    pub server: BbbServer,
    pub draining: bool,
}

/// A pool file as read.
#[derive(Debug, Clone, Default)]
pub struct Pool {
    pub entries: Vec<Entry>,
    /// The writer's time stamp (`updated`), echoed by the API so the agent
    /// can see that the portal took its latest write.
    pub updated: Option<DateTime<Utc>>,
}

/// Where the pool file is and how to read the secret files it names.
#[derive(Debug, Clone)]
pub struct PoolSource {
    pub path: PathBuf,
    /// A secret file named in the pool is read from the file mapped to it,
    /// if any: under systemd the portal's own user cannot read the root-only
    /// original, only the credential systemd copied from it.
    pub secret_files: BTreeMap<PathBuf, PathBuf>,
}

/// The 1-based line of the `nth` (from 0) occurrence of `needle` in `text`.
fn line_of(text: &str, needle: &str, nth: usize) -> Option<usize> {
    text.match_indices(needle)
        .nth(nth)
        .map(|(i, _)| text[..i].bytes().filter(|&b| b == b'\n').count() + 1)
}

impl PoolSource {
    /// Parses and checks `text`, the content of the pool file, reading the
    /// secret files it names. Errors name the file, the line and the entry.
    pub fn parse(&self, text: &str) -> Result<Pool, String> {
        let file = self.path.display();
        let raw: RawPool = serde_json::from_str(text).map_err(|e| {
            format!(
                "{file}: line {}, column {}: {}",
                e.line(),
                e.column(),
                // serde_json appends " at line L column C" itself.
                e.to_string().split(" at line ").next().unwrap_or_default()
            )
        })?;
        let mut entries: Vec<Entry> = Vec::new();
        for (i, e) in raw.bbb.into_iter().enumerate() {
            // serde gives no positions for values: find the entry by its name.
            let quoted = serde_json::to_string(&e.name).unwrap_or_default();
            let before = entries.iter().filter(|o| o.server.name == e.name).count();
            let at = match line_of(text, &quoted, before) {
                Some(l) => format!("{file}: line {l}: bbb[{i}] ({})", e.name),
                None => format!("{file}: bbb[{i}] ({})", e.name),
            };
            if e.name.trim().is_empty() {
                return Err(format!("{at}: `name` is empty"));
            }
            if entries.iter().any(|o| o.server.name == e.name) {
                return Err(format!("{at}: the name is listed twice"));
            }
            if !(e.url.starts_with("http://") || e.url.starts_with("https://")) {
                return Err(format!(
                    "{at}: url `{}` must start with https:// (or http://)",
                    e.url
                ));
            }
            let checksum = match &e.checksum {
                None => Checksum::Sha256,
                Some(c) => c.parse().map_err(|err: String| format!("{at}: {err}"))?,
            };
            let read_from = self
                .secret_files
                .get(&e.secret_file)
                .unwrap_or(&e.secret_file);
            let secret = read_secret(read_from).map_err(|err| {
                if read_from == &e.secret_file {
                    format!("{at}: secret_file {}: {err}", e.secret_file.display())
                } else {
                    format!(
                        "{at}: secret_file {} (read as {}): {err}",
                        e.secret_file.display(),
                        read_from.display()
                    )
                }
            })?;
            entries.push(Entry {
                server: BbbServer {
                    name: e.name,
                    url: e.url.trim_end_matches('/').to_owned(),
                    secret,
                    checksum,
                },
                draining: e.draining,
            });
        }
        Ok(Pool {
            entries,
            updated: raw.updated,
        })
    }
}

fn read_secret(path: &Path) -> Result<String, String> {
    let s = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let s = s.trim();
    if s.is_empty() {
        return Err("the file is empty".into());
    }
    Ok(s.to_owned())
}

/// What identifies one version of the file: a rename into place gives a new
/// inode, a rewrite in place a new modification time or size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Signature {
    modified: Option<SystemTime>,
    size: u64,
    inode: u64,
}

fn signature(path: &Path) -> std::io::Result<Option<Signature>> {
    match std::fs::metadata(path) {
        Ok(m) => {
            #[cfg(unix)]
            let inode = std::os::unix::fs::MetadataExt::ino(&m);
            #[cfg(not(unix))]
            let inode = 0;
            Ok(Some(Signature {
                modified: m.modified().ok(),
                size: m.len(),
                inode,
            }))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// What a check of the file found.
#[derive(Debug)]
pub enum Change {
    /// The file is new or changed and reads well (a missing file is an
    /// empty pool: no servers beyond the static ones).
    Load(Pool),
    /// The file changed and is refused; the pool stays as it was.
    Refused(String),
}

/// Notices changes of the pool file.
#[derive(Debug)]
pub struct Watcher {
    pub source: PoolSource,
    /// The version last looked at (`None` before the first look; `Some(None)`
    /// for a missing file).
    seen: Option<Option<Signature>>,
}

impl Watcher {
    pub fn new(source: PoolSource) -> Watcher {
        Watcher { source, seen: None }
    }

    /// Looks at the file's metadata and reads it only when it changed since
    /// the last look; `None` when nothing changed.
    pub fn check(&mut self) -> Option<Change> {
        let path = &self.source.path;
        let sig = match signature(path) {
            Ok(s) => s,
            Err(e) => {
                // Unreadable metadata cannot be compared: report once.
                let msg = format!("{}: {e}", path.display());
                return if self.seen == Some(None) {
                    None
                } else {
                    self.seen = Some(None);
                    Some(Change::Refused(msg))
                };
            }
        };
        if self.seen == Some(sig) {
            return None;
        }
        self.seen = Some(sig);
        if sig.is_none() {
            return Some(Change::Load(Pool::default()));
        }
        match std::fs::read_to_string(path) {
            Ok(text) => Some(match self.source.parse(&text) {
                Ok(p) => Change::Load(p),
                Err(e) => Change::Refused(e),
            }),
            Err(e) => Some(Change::Refused(format!("{}: {e}", path.display()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(dir: &Path) -> PoolSource {
        PoolSource {
            path: dir.join("pool.json"),
            secret_files: BTreeMap::new(),
        }
    }

    fn tmp(name: &str) -> PathBuf {
        let n = u64::from_le_bytes(crate::random_bytes::<8>());
        let p = std::env::temp_dir().join(format!("venue-pool-unit-{name}-{n:x}"));
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    #[test]
    fn reads_the_contract_and_names_where_it_is_wrong() {
        let dir = tmp("parse");
        std::fs::write(dir.join("s"), "the-secret\n").unwrap();
        let src = source(&dir);
        let s = dir.join("s").display().to_string();
        let good = format!(
            r#"{{"bbb": [{{"name": "three", "url": "https://three.example.org/bigbluebutton/api/",
  "secret_file": "{s}", "checksum": "sha1", "draining": true}},
  {{"name": "four", "url": "https://four.example.org/bigbluebutton/api", "secret_file": "{s}"}}],
 "updated": "2026-12-01T08:00:00Z"}}"#
        );
        let p = src.parse(&good).unwrap();
        assert_eq!(p.entries.len(), 2);
        assert_eq!(
            p.entries[0].server.url,
            "https://three.example.org/bigbluebutton/api"
        );
        assert_eq!(p.entries[0].server.secret, "the-secret");
        assert_eq!(p.entries[0].server.checksum, Checksum::Sha1);
        assert!(p.entries[0].draining && !p.entries[1].draining);
        assert_eq!(p.entries[1].server.checksum, Checksum::Sha256);
        assert_eq!(p.updated.unwrap().to_rfc3339(), "2026-12-01T08:00:00+00:00");

        let err = src
            .parse("{\"bbb\": [\n  {\"name\": \"three\",,}\n]}")
            .unwrap_err();
        assert!(err.contains("pool.json: line 2, column"), "{err}");
        let err = src
            .parse(&good.replace("\"draining\": true", "\"drainig\": true"))
            .unwrap_err();
        assert!(err.contains("unknown field `drainig`"), "{err}");
        let err = src
            .parse(&good.replace("\"name\": \"four\"", "\"name\": \"three\""))
            .unwrap_err();
        assert!(
            err.contains("line 3: bbb[1] (three): the name is listed twice"),
            "{err}"
        );
        let err = src
            .parse(&good.replace("https://four", "ftp://four"))
            .unwrap_err();
        assert!(err.contains("bbb[1] (four): url `ftp://"), "{err}");
        let err = src.parse(&good.replace("sha1", "md5")).unwrap_err();
        assert!(
            err.contains("bbb[0] (three): unknown checksum algorithm `md5`"),
            "{err}"
        );
        let missing = dir.join("missing").display().to_string();
        let err = src.parse(&good.replacen(&s, &missing, 1)).unwrap_err();
        assert!(
            err.contains("line 1: bbb[0] (three): secret_file") && err.contains(&missing),
            "{err}"
        );
        // A mapped secret file is read from where the map says.
        let mut mapped = source(&dir);
        mapped
            .secret_files
            .insert(PathBuf::from(&missing), dir.join("s"));
        assert!(mapped.parse(&good.replacen(&s, &missing, 1)).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_watcher_reads_only_changes() {
        let dir = tmp("watch");
        std::fs::write(dir.join("s"), "x").unwrap();
        let mut w = Watcher::new(source(&dir));
        // No file yet: an empty pool, once.
        assert!(matches!(w.check(), Some(Change::Load(p)) if p.entries.is_empty()));
        assert!(w.check().is_none());
        let one = format!(
            r#"{{"bbb": [{{"name": "b3", "url": "https://b3/", "secret_file": "{}"}}]}}"#,
            dir.join("s").display()
        );
        std::fs::write(dir.join("next"), &one).unwrap();
        std::fs::rename(dir.join("next"), dir.join("pool.json")).unwrap();
        assert!(matches!(w.check(), Some(Change::Load(p)) if p.entries.len() == 1));
        assert!(w.check().is_none());
        // Same size, same second, new inode: still seen.
        std::fs::write(
            dir.join("next"),
            one.replace("\"name\": \"b3\"", "\"name\": \"b4\""),
        )
        .unwrap();
        std::fs::rename(dir.join("next"), dir.join("pool.json")).unwrap();
        assert!(matches!(w.check(), Some(Change::Load(p)) if p.entries[0].server.name == "b4"));
        std::fs::write(dir.join("pool.json"), "{").unwrap();
        assert!(matches!(w.check(), Some(Change::Refused(_))));
        assert!(w.check().is_none(), "a refused file is reported once");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
