//! Staff overrides of the stage captures: "start now" or "stop now" for a
//! streamed room, until the room's schedule next changes its mind (see
//! `crate::capture::schedule`), or until staff put it back to the schedule.

use anyhow::Result;
use chrono::{DateTime, Utc};
use rusqlite::params;

use super::Store;

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS capture_overrides (
    room TEXT PRIMARY KEY,
    live INTEGER NOT NULL CHECK (live IN (0, 1)),
    set_at INTEGER NOT NULL,
    by_ticket INTEGER
);
";

/// A stored override: the capture of `room` is forced on (`live`) or off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureOverride {
    pub room: String,
    pub live: bool,
    pub set_at: DateTime<Utc>,
    pub by_ticket: Option<i64>,
}

impl Store {
    /// Forces the capture of `room` on or off, replacing an earlier override.
    pub fn set_capture_override(
        &self,
        room: &str,
        live: bool,
        at: DateTime<Utc>,
        by_ticket: Option<i64>,
    ) -> Result<()> {
        self.conn().execute(
            "INSERT INTO capture_overrides (room, live, set_at, by_ticket) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(room) DO UPDATE SET live = excluded.live, set_at = excluded.set_at,
               by_ticket = excluded.by_ticket",
            params![room, live, at.timestamp(), by_ticket],
        )?;
        Ok(())
    }

    /// Back to the schedule. Returns whether there was an override.
    pub fn clear_capture_override(&self, room: &str) -> Result<bool> {
        Ok(self.conn().execute(
            "DELETE FROM capture_overrides WHERE room = ?1",
            params![room],
        )? > 0)
    }

    /// Every stored override.
    pub fn capture_overrides(&self) -> Result<Vec<CaptureOverride>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare_cached("SELECT room, live, set_at, by_ticket FROM capture_overrides")?;
        let rows = stmt.query_map([], |r| {
            Ok(CaptureOverride {
                room: r.get(0)?,
                live: r.get(1)?,
                set_at: DateTime::from_timestamp(r.get(2)?, 0).unwrap_or_default(),
                by_ticket: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
