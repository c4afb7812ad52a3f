//! The portal's SQLite store: tickets, login sessions and personal
//! schedule picks. One file, `portal.sqlite`, in the state directory,
//! created on first use; WAL mode so `tickets import` can run while the
//! portal serves.

use std::path::Path;
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use rusqlite::{params, Connection, OptionalExtension};
use sha2::{Digest, Sha256};

use conference::protocol::hex;

mod capture;
mod feeds;
mod votes;

pub use capture::CaptureOverride;
pub use votes::{Cast, Proposal, ProposalResult, Results, TrackResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketRole {
    Attendee,
    Staff,
}

impl TicketRole {
    pub fn as_str(self) -> &'static str {
        match self {
            TicketRole::Attendee => "attendee",
            TicketRole::Staff => "staff",
        }
    }
    fn parse(s: &str) -> Option<TicketRole> {
        match s.trim().to_ascii_lowercase().as_str() {
            "attendee" => Some(TicketRole::Attendee),
            "staff" => Some(TicketRole::Staff),
            _ => None,
        }
    }
}

/// A ticket holder.
#[derive(Debug, Clone)]
pub struct Ticket {
    pub id: i64,
    pub email: String,
    pub name: Option<String>,
    pub role: TicketRole,
    /// The attendee's chosen time zone (IANA name), if any.
    pub tz: Option<String>,
}

impl Ticket {
    pub fn is_staff(&self) -> bool {
        self.role == TicketRole::Staff
    }
    /// The name shown to others in a meeting.
    pub fn display_name(&self) -> String {
        match &self.name {
            Some(n) if !n.trim().is_empty() => n.trim().to_owned(),
            _ => self
                .email
                .split('@')
                .next()
                .unwrap_or("attendee")
                .to_owned(),
        }
    }
}

pub struct Store {
    conn: Mutex<Connection>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tickets (
    id INTEGER PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    code_hash TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('attendee', 'staff')),
    name TEXT,
    tz TEXT,
    created INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY,
    ticket_id INTEGER NOT NULL REFERENCES tickets(id) ON DELETE CASCADE,
    created INTEGER NOT NULL,
    expires INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS picks (
    ticket_id INTEGER NOT NULL REFERENCES tickets(id) ON DELETE CASCADE,
    guid TEXT NOT NULL,
    PRIMARY KEY (ticket_id, guid)
);
";

/// Ticket codes are compared after dropping spaces and dashes and folding
/// case, so `ab12-cd34` typed on a phone as `AB12 CD34` works.
pub fn normalize_code(code: &str) -> String {
    code.chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

fn code_hash(code: &str) -> String {
    hex(&Sha256::digest(format!(
        "venue-ticket:{}",
        normalize_code(code)
    )))
}

fn token_hash(token: &str) -> String {
    hex(&Sha256::digest(format!("venue-session:{token}")))
}

pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

fn valid_email(email: &str) -> bool {
    matches!(email.split_once('@'), Some((a, b)) if !a.is_empty() && b.contains('.') && !email.contains(char::is_whitespace))
}

/// A generated ticket code: 16 characters of an alphabet without look-alikes,
/// in groups of four (80 bits).
pub fn generate_code() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789"; // 31 symbols
    let bytes = crate::random_bytes::<32>();
    let mut out = String::new();
    let mut n = 0;
    for b in bytes {
        // rejection sampling: 248 = 8 * 31
        if b >= 248 {
            continue;
        }
        if n > 0 && n % 4 == 0 {
            out.push('-');
        }
        out.push(ALPHABET[(b % 31) as usize] as char);
        n += 1;
        if n == 16 {
            return out;
        }
    }
    generate_code()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

impl Store {
    /// Opens (creating if needed) `dir/portal.sqlite`.
    pub fn open(dir: &Path) -> Result<Store> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the state directory {}", dir.display()))?;
        let path = dir.join("portal.sqlite");
        let conn = Connection::open(&path)
            .with_context(|| format!("cannot open the database {}", path.display()))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        for schema in [
            SCHEMA,
            feeds::SCHEMA,
            votes::SCHEMA,
            capture::SCHEMA,
            crate::oidc::store::SCHEMA,
            crate::chat::store::SCHEMA,
        ] {
            conn.execute_batch(schema)
                .with_context(|| format!("cannot create the tables in {}", path.display()))?;
        }
        Ok(Store {
            conn: Mutex::new(conn),
        })
    }

    pub(crate) fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds or replaces the ticket of `email`; returns its id.
    pub fn put_ticket(
        &self,
        email: &str,
        code: &str,
        role: TicketRole,
        name: Option<&str>,
    ) -> Result<i64> {
        let conn = self.conn();
        put_ticket(&conn, email, code, role, name)
    }

    /// Adds a ticket with a generated code and returns the code.
    pub fn add_ticket(&self, email: &str, staff: bool, name: Option<&str>) -> Result<String> {
        let code = generate_code();
        let role = if staff {
            TicketRole::Staff
        } else {
            TicketRole::Attendee
        };
        self.put_ticket(email, &code, role, name)?;
        Ok(code)
    }

    /// Imports a CSV file with the header `email,code,role` (and an optional
    /// `name` column). All rows or none: the first bad row is an error that
    /// names its line. Returns how many tickets were written.
    pub fn import_csv(&self, path: &Path) -> Result<usize> {
        let file =
            std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .flexible(false)
            .from_reader(file);
        let headers: Vec<String> = reader
            .headers()
            .with_context(|| format!("{}: cannot read the header", path.display()))?
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect();
        let col = |name: &str| headers.iter().position(|h| h == name);
        let (Some(ce), Some(cc), Some(cr)) = (col("email"), col("code"), col("role")) else {
            bail!(
                "{}: line 1: the header must be `email,code,role` (optionally `,name`), not `{}`",
                path.display(),
                headers.join(",")
            );
        };
        let cn = col("name");
        let mut rows = Vec::new();
        for (i, rec) in reader.records().enumerate() {
            let line = i + 2;
            let rec = rec.with_context(|| format!("{}: line {line}", path.display()))?;
            let field = |c: usize| rec.get(c).unwrap_or("").to_owned();
            let email = field(ce);
            let code = field(cc);
            let role = TicketRole::parse(&field(cr)).ok_or_else(|| {
                anyhow::anyhow!(
                    "{}: line {line}: role must be `attendee` or `staff`, not `{}`",
                    path.display(),
                    field(cr)
                )
            })?;
            if !valid_email(&normalize_email(&email)) {
                bail!(
                    "{}: line {line}: `{email}` is not an email address",
                    path.display()
                );
            }
            if normalize_code(&code).len() < 6 {
                bail!(
                    "{}: line {line}: the ticket code of {email} is shorter than 6 characters",
                    path.display()
                );
            }
            let name = cn.map(field).filter(|n| !n.is_empty());
            rows.push((email, code, role, name));
        }
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for (email, code, role, name) in &rows {
            put_ticket(&tx, email, code, *role, name.as_deref())?;
        }
        tx.commit()?;
        Ok(rows.len())
    }

    /// The ticket of `email` if `code` is its code.
    pub fn check_login(&self, email: &str, code: &str) -> Result<Option<Ticket>> {
        let conn = self.conn();
        let row: Option<(String, Ticket)> = conn
            .query_row(
                "SELECT code_hash, id, email, name, role, tz FROM tickets WHERE email = ?1",
                params![normalize_email(email)],
                |r| Ok((r.get(0)?, ticket_from_row(r, 1)?)),
            )
            .optional()?;
        let given = code_hash(code);
        Ok(row.and_then(|(stored, ticket)| {
            conference::protocol::constant_time_eq(stored.as_bytes(), given.as_bytes())
                .then_some(ticket)
        }))
    }

    pub fn create_session(&self, ticket_id: i64, token: &str, ttl: chrono::Duration) -> Result<()> {
        let now = now();
        let conn = self.conn();
        conn.execute(
            "INSERT INTO sessions (token_hash, ticket_id, created, expires) VALUES (?1, ?2, ?3, ?4)",
            params![token_hash(token), ticket_id, now, now + ttl.num_seconds()],
        )?;
        // Forget expired sessions now and then.
        conn.execute("DELETE FROM sessions WHERE expires < ?1", params![now])?;
        Ok(())
    }

    /// The ticket of a live session.
    pub fn session(&self, token: &str) -> Result<Option<Ticket>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT t.id, t.email, t.name, t.role, t.tz FROM sessions s JOIN tickets t ON t.id = s.ticket_id
             WHERE s.token_hash = ?1 AND s.expires > ?2",
        )?;
        Ok(stmt
            .query_row(params![token_hash(token), now()], |r| ticket_from_row(r, 0))
            .optional()?)
    }

    pub fn delete_session(&self, token: &str) -> Result<()> {
        self.conn().execute(
            "DELETE FROM sessions WHERE token_hash = ?1",
            params![token_hash(token)],
        )?;
        Ok(())
    }

    pub fn set_tz(&self, ticket_id: i64, tz: Option<&str>) -> Result<()> {
        self.conn().execute(
            "UPDATE tickets SET tz = ?1 WHERE id = ?2",
            params![tz, ticket_id],
        )?;
        Ok(())
    }

    pub fn picks(&self, ticket_id: i64) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached("SELECT guid FROM picks WHERE ticket_id = ?1")?;
        let rows = stmt.query_map(params![ticket_id], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn set_pick(&self, ticket_id: i64, guid: &str, picked: bool) -> Result<()> {
        let conn = self.conn();
        if picked {
            conn.execute(
                "INSERT OR IGNORE INTO picks (ticket_id, guid) VALUES (?1, ?2)",
                params![ticket_id, guid],
            )?;
        } else {
            conn.execute(
                "DELETE FROM picks WHERE ticket_id = ?1 AND guid = ?2",
                params![ticket_id, guid],
            )?;
        }
        Ok(())
    }

    pub fn ticket_count(&self) -> Result<(i64, i64)> {
        let conn = self.conn();
        Ok(conn.query_row(
            "SELECT count(*), coalesce(sum(role = 'staff'), 0) FROM tickets",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?)
    }
}

fn put_ticket(
    conn: &Connection,
    email: &str,
    code: &str,
    role: TicketRole,
    name: Option<&str>,
) -> Result<i64> {
    let email = normalize_email(email);
    if !valid_email(&email) {
        bail!("`{email}` is not an email address");
    }
    if normalize_code(code).len() < 6 {
        bail!("the ticket code of {email} is shorter than 6 characters");
    }
    conn.execute(
        "INSERT INTO tickets (email, code_hash, role, name, created) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(email) DO UPDATE SET code_hash = excluded.code_hash, role = excluded.role,
           name = coalesce(excluded.name, tickets.name)",
        params![email, code_hash(code), role.as_str(), name, now()],
    )?;
    Ok(conn.query_row(
        "SELECT id FROM tickets WHERE email = ?1",
        params![email],
        |r| r.get(0),
    )?)
}

pub(crate) fn ticket_from_row(r: &rusqlite::Row, at: usize) -> rusqlite::Result<Ticket> {
    let role: String = r.get(at + 3)?;
    Ok(Ticket {
        id: r.get(at)?,
        email: r.get(at + 1)?,
        name: r.get(at + 2)?,
        role: TicketRole::parse(&role).unwrap_or(TicketRole::Attendee),
        tz: r.get(at + 4)?,
    })
}
