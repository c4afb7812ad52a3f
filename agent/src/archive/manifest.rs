//! `<state>/archive/manifest.json`: every archived file with its host,
//! archive path, remote path, size, modification time and SHA-256. A file is
//! in the manifest only once its local copy was written, synced and checked
//! against the sum the host computed, so the manifest never claims more than
//! the disk holds. (The reverse can happen after a crash: a copy on disk
//! that the manifest does not list yet; the next run hashes it and adopts it
//! instead of copying it again.)

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub host: String,
    /// Below `<state>/archive/<host>/`.
    pub path: String,
    /// Where it was on the host.
    pub remote: String,
    pub size: u64,
    /// Seconds since the epoch, as the host's `stat` saw it.
    pub mtime: i64,
    pub sha256: String,
    pub archived: DateTime<Utc>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Manifest {
    pub files: Vec<Entry>,
}

impl Manifest {
    pub fn file(archive_dir: &Path) -> PathBuf {
        archive_dir.join("manifest.json")
    }

    /// Reads the manifest; none yet is an empty one. One that cannot be read
    /// is an error: writing over it would forget what was archived.
    pub fn load(archive_dir: &Path) -> Result<Manifest> {
        let path = Self::file(archive_dir);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).with_context(|| {
                format!(
                    "{} is not an archive manifest; move it away to start a new one",
                    path.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Manifest::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Writes it atomically: a temp file, synced, renamed over the old one.
    pub fn save(&mut self, archive_dir: &Path) -> Result<()> {
        self.files
            .sort_by(|a, b| (&a.host, &a.path).cmp(&(&b.host, &b.path)));
        let path = Self::file(archive_dir);
        let tmp = archive_dir.join(format!(".manifest.json.{}.tmp", std::process::id()));
        let text = serde_json::to_string_pretty(self)? + "\n";
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| {
                f.write_all(text.as_bytes())?;
                f.sync_all()
            });
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(e).with_context(|| format!("writing {}", tmp.display()));
        }
        std::fs::rename(&tmp, &path)
            .with_context(|| format!("moving {} into place", path.display()))
    }

    pub fn get(&self, host: &str, path: &str) -> Option<&Entry> {
        self.files.iter().find(|e| e.host == host && e.path == path)
    }

    /// Adds the entry, replacing an older one for the same file.
    pub fn put(&mut self, entry: Entry) {
        match self
            .files
            .iter_mut()
            .find(|e| e.host == entry.host && e.path == entry.path)
        {
            Some(old) => *old = entry,
            None => self.files.push(entry),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_manifest_reads_back_and_a_broken_one_is_refused() {
        let dir = std::env::temp_dir().join(format!("venue-manifest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(Manifest::load(&dir).unwrap().files.is_empty());
        let mut m = Manifest::default();
        let e = Entry {
            host: "h".into(),
            path: "rec/a".into(),
            remote: "/x/a".into(),
            size: 3,
            mtime: 7,
            sha256: "ab".into(),
            archived: Utc::now(),
        };
        m.put(e.clone());
        m.put(Entry {
            size: 4,
            ..e.clone()
        });
        m.save(&dir).unwrap();
        let back = Manifest::load(&dir).unwrap();
        assert_eq!(back.files.len(), 1);
        assert_eq!(back.get("h", "rec/a").unwrap().size, 4);
        std::fs::write(Manifest::file(&dir), "{not json").unwrap();
        let err = format!("{:#}", Manifest::load(&dir).unwrap_err());
        assert!(err.contains("not an archive manifest"), "{err}");
        std::fs::remove_dir_all(dir).ok();
    }
}
