//! Room on the organiser's disk. Before a host's files are copied, the
//! bytes they need (rounded up to whole blocks) are reserved against the
//! free space of the archive's file system, shared by the hosts archived at
//! the same time: a disk too small fails that host at once, with the numbers,
//! instead of half-way through a recording. A disk that fills up anyway
//! (something else writing) fails the copy with ENOSPC and leaves no partial
//! file behind.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Mutex;

use anyhow::{bail, Result};

use crate::deploy::human_bytes;

/// Kept free for the manifest and the file system's own needs.
const MARGIN: u64 = 64 * 1024;

static RESERVED: Mutex<u64> = Mutex::new(0);

/// Bytes an unprivileged writer may still use on `dir`'s file system, and its block size.
pub fn available(dir: &Path) -> Result<(u64, u64)> {
    let c = CString::new(dir.as_os_str().as_bytes())?;
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is a valid NUL-terminated path and s a properly sized out-parameter.
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    let block = (s.f_frsize as u64).max(1);
    Ok((s.f_bavail as u64 * block, block))
}

/// Held while a host's files are copied; gives the room back when dropped.
pub struct Reservation(u64);

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut r = RESERVED.lock().unwrap_or_else(|e| e.into_inner());
        *r = r.saturating_sub(self.0);
    }
}

/// Reserves room for files of `sizes` bytes in `dir`, or says how much is missing.
pub fn reserve(dir: &Path, sizes: &[u64]) -> Result<Reservation> {
    let mut reserved = RESERVED.lock().unwrap_or_else(|e| e.into_inner());
    let (free, block) = available(dir)?;
    let need: u64 = sizes.iter().map(|s| s.div_ceil(block) * block).sum();
    let usable = free.saturating_sub(*reserved).saturating_sub(MARGIN);
    if need > usable {
        bail!(
            "not enough space in {}: the files to copy need {}, {} is free; free some space there (or use another --state directory) and run again",
            dir.display(),
            human_bytes(need),
            human_bytes(usable)
        );
    }
    *reserved += need;
    Ok(Reservation(need))
}
