//! `venue-portal backup FILE`: a consistent copy of the live database,
//! taken with SQLite's online backup API while the portal keeps serving.
//! `venue down` runs it (through the module's `venue-portal-ctl`) before a
//! portal server is deleted.
//!
//! All pages are copied in one backup step, that is inside one read
//! transaction: in WAL mode writers go on meanwhile, and the copy is the
//! database as of one instant (a step-by-step backup would restart whenever
//! the portal writes). The copy is written beside FILE and renamed into
//! place, so FILE is either the previous copy or a complete new one.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rusqlite::backup::{Backup, StepResult};
use rusqlite::Connection;

/// Copies `<state>/portal.sqlite` to `dest`; returns the pages copied.
pub fn backup(state: &Path, dest: &Path) -> Result<i32> {
    let source = state.join("portal.sqlite");
    if !source.is_file() {
        bail!(
            "no portal database at {} (is --state right?)",
            source.display()
        );
    }
    let src = Connection::open(&source)
        .with_context(|| format!("cannot open the database {}", source.display()))?;
    src.busy_timeout(Duration::from_secs(10))?;
    let tmp = temp_beside(dest)?;
    // A backup into an existing file would keep its change counter; start fresh.
    let _ = std::fs::remove_file(&tmp);
    let result = (|| -> Result<i32> {
        let mut dst =
            Connection::open(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        let pages = {
            let b = Backup::new(&src, &mut dst)?;
            let mut waited = 0;
            // -1: every page in one step, one read transaction.
            while b
                .step(-1)
                .with_context(|| format!("backing up {}", source.display()))?
                != StepResult::Done
            {
                // Busy or locked: a writer holds an exclusive lock for a moment.
                waited += 1;
                if waited > 200 {
                    bail!("{} stayed locked for 10 s", source.display());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            b.progress().pagecount
        };
        // One self-contained file: no -wal beside it.
        dst.pragma_update(None, "journal_mode", "DELETE")?;
        let check: String = dst.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
        if check != "ok" {
            bail!("the copy fails SQLite's integrity check: {check}");
        }
        drop(dst);
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .with_context(|| format!("syncing {}", tmp.display()))?;
        Ok(pages)
    })();
    match result {
        Ok(pages) => {
            std::fs::rename(&tmp, dest)
                .with_context(|| format!("moving the copy to {}", dest.display()))?;
            Ok(pages)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

fn temp_beside(dest: &Path) -> Result<PathBuf> {
    let name = dest
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{} is not a file name", dest.display()))?;
    Ok(dest.with_file_name(format!(".{name}.{}.tmp", std::process::id())))
}
