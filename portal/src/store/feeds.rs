//! Calendar feed secrets: one random nonce per ticket that has asked for a
//! feed URL. The URL's token is an HMAC of it (see `crate::feeds`), so a
//! copy of the database alone does not give working URLs; a new nonce
//! makes the old URL answer 404.

use anyhow::Result;
use rusqlite::{params, OptionalExtension};

use super::{ticket_from_row, Store, Ticket};
use conference::protocol::hex;

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS feeds (
    ticket_id INTEGER PRIMARY KEY REFERENCES tickets(id) ON DELETE CASCADE,
    nonce TEXT NOT NULL
);
";

impl Store {
    /// The ticket's feed nonce, created on first use.
    pub fn feed_nonce(&self, ticket_id: i64) -> Result<String> {
        let conn = self.conn();
        let fresh = hex(&crate::random_bytes::<16>());
        conn.execute(
            "INSERT OR IGNORE INTO feeds (ticket_id, nonce) VALUES (?1, ?2)",
            params![ticket_id, fresh],
        )?;
        Ok(conn.query_row(
            "SELECT nonce FROM feeds WHERE ticket_id = ?1",
            params![ticket_id],
            |r| r.get(0),
        )?)
    }

    /// A new nonce: the old feed URL stops working.
    pub fn regenerate_feed(&self, ticket_id: i64) -> Result<String> {
        let fresh = hex(&crate::random_bytes::<16>());
        self.conn().execute(
            "INSERT INTO feeds (ticket_id, nonce) VALUES (?1, ?2)
             ON CONFLICT(ticket_id) DO UPDATE SET nonce = excluded.nonce",
            params![ticket_id, fresh],
        )?;
        Ok(fresh)
    }

    /// The ticket and its feed nonce, if it has one.
    pub fn feed_owner(&self, ticket_id: i64) -> Result<Option<(Ticket, String)>> {
        let conn = self.conn();
        Ok(conn
            .query_row(
                "SELECT t.id, t.email, t.name, t.role, t.tz, f.nonce FROM feeds f JOIN tickets t ON t.id = f.ticket_id
                 WHERE f.ticket_id = ?1",
                params![ticket_id],
                |r| Ok((ticket_from_row(r, 0)?, r.get(5)?)),
            )
            .optional()?)
    }
}
