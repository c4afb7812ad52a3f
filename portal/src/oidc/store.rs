//! The provider's rows in the portal's database: each ticket's subject,
//! authorization codes and access tokens. Codes and tokens are stored as
//! hashes; all three hang off the ticket (ON DELETE CASCADE), so
//! `tickets revoke` ends them with it.

use anyhow::Result;
use rusqlite::{params, OptionalExtension};
use sha2::{Digest, Sha256};

use crate::store::{Store, Ticket};
use conference::protocol::hex;

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS oidc_subjects (
    ticket_id INTEGER PRIMARY KEY REFERENCES tickets(id) ON DELETE CASCADE,
    sub TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS oidc_codes (
    code_hash TEXT PRIMARY KEY,
    ticket_id INTEGER NOT NULL REFERENCES tickets(id) ON DELETE CASCADE,
    client_id TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    nonce TEXT,
    scope TEXT NOT NULL,
    issued INTEGER NOT NULL,
    expires INTEGER NOT NULL,
    used INTEGER NOT NULL DEFAULT 0,
    token_hash TEXT
);
CREATE TABLE IF NOT EXISTS oidc_tokens (
    token_hash TEXT PRIMARY KEY,
    ticket_id INTEGER NOT NULL REFERENCES tickets(id) ON DELETE CASCADE,
    client_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    expires INTEGER NOT NULL
);
";

/// A code as issued by the authorization endpoint.
pub struct NewCode<'a> {
    pub ticket_id: i64,
    pub client_id: &'a str,
    pub redirect_uri: &'a str,
    pub code_challenge: &'a str,
    pub nonce: Option<&'a str>,
    pub scope: &'a str,
    pub issued: i64,
    pub expires: i64,
}

/// A redeemed code, with its ticket.
pub struct Grant {
    pub ticket: Ticket,
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub nonce: Option<String>,
    pub scope: String,
    pub issued: i64,
}

/// What redeeming a code gives.
pub enum Redeem {
    Granted(Box<Grant>),
    /// Unknown, expired, or its ticket is gone.
    Invalid,
    /// Redeemed before: the tokens it gave are revoked.
    Reused,
}

fn hash(purpose: &str, secret: &str) -> String {
    hex(&Sha256::digest(format!("venue-oidc-{purpose}:{secret}")))
}

impl Store {
    /// The ticket's subject: random, made on first use, kept as long as the
    /// ticket. Not derived from the ticket code or the email.
    pub fn oidc_subject(&self, ticket_id: i64) -> Result<String> {
        let conn = self.conn();
        let candidate = hex(&crate::random_bytes::<16>());
        conn.execute(
            "INSERT OR IGNORE INTO oidc_subjects (ticket_id, sub) VALUES (?1, ?2)",
            params![ticket_id, candidate],
        )?;
        Ok(conn.query_row(
            "SELECT sub FROM oidc_subjects WHERE ticket_id = ?1",
            params![ticket_id],
            |r| r.get(0),
        )?)
    }

    pub fn oidc_insert_code(&self, code: &str, c: &NewCode) -> Result<()> {
        let conn = self.conn();
        // Old codes are of no use: forget them now and then.
        conn.execute(
            "DELETE FROM oidc_codes WHERE expires < ?1",
            params![c.issued - 3600],
        )?;
        conn.execute(
            "INSERT INTO oidc_codes (code_hash, ticket_id, client_id, redirect_uri, code_challenge,
               nonce, scope, issued, expires) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                hash("code", code),
                c.ticket_id,
                c.client_id,
                c.redirect_uri,
                c.code_challenge,
                c.nonce,
                c.scope,
                c.issued,
                c.expires
            ],
        )?;
        Ok(())
    }

    /// Marks the code used and returns what it grants. A second redemption
    /// revokes the access token the first one gave (RFC 6749, 4.1.2).
    pub fn oidc_redeem_code(&self, code: &str, now: i64) -> Result<Redeem> {
        let conn = self.conn();
        let h = hash("code", code);
        let row = conn
            .query_row(
                "UPDATE oidc_codes SET used = 1 WHERE code_hash = ?1 AND used = 0
                 RETURNING ticket_id, client_id, redirect_uri, code_challenge, nonce, scope,
                   issued, expires",
                params![h],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(7)?,
                        (
                            r.get(1)?,
                            r.get(2)?,
                            r.get(3)?,
                            r.get(4)?,
                            r.get(5)?,
                            r.get(6)?,
                        ),
                    ))
                },
            )
            .optional()?;
        let Some((ticket_id, expires, fields)) = row else {
            let used: Option<Option<String>> = conn
                .query_row(
                    "SELECT token_hash FROM oidc_codes WHERE code_hash = ?1",
                    params![h],
                    |r| r.get(0),
                )
                .optional()?;
            return Ok(match used {
                Some(token) => {
                    if let Some(t) = token {
                        conn.execute("DELETE FROM oidc_tokens WHERE token_hash = ?1", params![t])?;
                    }
                    Redeem::Reused
                }
                None => Redeem::Invalid,
            });
        };
        if expires <= now {
            return Ok(Redeem::Invalid);
        }
        let ticket = conn
            .query_row(
                "SELECT id, email, name, role, tz FROM tickets WHERE id = ?1",
                params![ticket_id],
                |r| crate::store::ticket_from_row(r, 0),
            )
            .optional()?;
        let (client_id, redirect_uri, code_challenge, nonce, scope, issued) = fields;
        Ok(match ticket {
            Some(ticket) => Redeem::Granted(Box::new(Grant {
                ticket,
                client_id,
                redirect_uri,
                code_challenge,
                nonce,
                scope,
                issued,
            })),
            None => Redeem::Invalid,
        })
    }

    /// Stores an access token for the ticket, and which code gave it.
    pub fn oidc_insert_token(
        &self,
        token: &str,
        code: &str,
        ticket_id: i64,
        client_id: &str,
        scope: &str,
        expires: i64,
    ) -> Result<()> {
        let conn = self.conn();
        let th = hash("token", token);
        conn.execute(
            "DELETE FROM oidc_tokens WHERE expires < ?1",
            params![expires - 86400 * 2],
        )?;
        conn.execute(
            "INSERT INTO oidc_tokens (token_hash, ticket_id, client_id, scope, expires)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![th, ticket_id, client_id, scope, expires],
        )?;
        conn.execute(
            "UPDATE oidc_codes SET token_hash = ?1 WHERE code_hash = ?2",
            params![th, hash("code", code)],
        )?;
        Ok(())
    }

    /// The ticket and scope of a live access token.
    pub fn oidc_token(&self, token: &str, now: i64) -> Result<Option<(Ticket, String)>> {
        let conn = self.conn();
        Ok(conn
            .query_row(
                "SELECT t.id, t.email, t.name, t.role, t.tz, o.scope FROM oidc_tokens o
                 JOIN tickets t ON t.id = o.ticket_id WHERE o.token_hash = ?1 AND o.expires > ?2",
                params![hash("token", token), now],
                |r| Ok((crate::store::ticket_from_row(r, 0)?, r.get(5)?)),
            )
            .optional()?)
    }
}
