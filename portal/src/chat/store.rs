//! The chat's rows in the portal's database: which Matrix user each
//! ticket's subject became, who was invited where, the Q&A, the backstage
//! "Top questions" messages, and who is listed in the directory.
//!
//! Revocations wait in `chat_revoked`: a trigger writes a subject there
//! when it leaves `oidc_subjects` (with its ticket, ON DELETE CASCADE), in
//! the same transaction, whoever deletes the ticket (the staff page or
//! `tickets revoke` in another process) and whether or not the sync ever
//! saw the subject's Matrix user. The sync finds that user (in
//! `chat_users`, else through the admin API), deactivates it, and only
//! then drops the row, so neither a restart nor an unreachable homeserver
//! loses one. `chat_users` does not hang off the ticket either (subjects
//! are random and never reused; ticket IDs can be).

use anyhow::Result;
use rusqlite::{params, OptionalExtension};

use crate::store::{Store, Ticket};

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS chat_users (
    sub TEXT PRIMARY KEY,
    ticket_id INTEGER NOT NULL,
    user_id TEXT NOT NULL,
    in_space INTEGER NOT NULL DEFAULT 0,
    deactivated INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS chat_revoked (
    sub TEXT PRIMARY KEY,
    ticket_id INTEGER NOT NULL,
    revoked INTEGER NOT NULL
);
CREATE TRIGGER IF NOT EXISTS chat_revoke_subject AFTER DELETE ON oidc_subjects
BEGIN
    INSERT OR IGNORE INTO chat_revoked (sub, ticket_id, revoked)
    VALUES (OLD.sub, OLD.ticket_id, CAST(strftime('%s', 'now') AS INTEGER));
END;
-- Databases from before the trigger: known users whose subject is gone.
INSERT OR IGNORE INTO chat_revoked (sub, ticket_id, revoked)
SELECT sub, ticket_id, 0 FROM chat_users
WHERE deactivated = 0 AND sub NOT IN (SELECT sub FROM oidc_subjects);
CREATE TABLE IF NOT EXISTS chat_invites (
    alias TEXT NOT NULL,
    user_id TEXT NOT NULL,
    PRIMARY KEY (alias, user_id)
);
CREATE TABLE IF NOT EXISTS chat_questions (
    id INTEGER PRIMARY KEY,
    session_guid TEXT NOT NULL,
    ticket_id INTEGER REFERENCES tickets(id) ON DELETE SET NULL,
    name TEXT NOT NULL,
    text TEXT NOT NULL,
    created INTEGER NOT NULL,
    posted INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS chat_questions_session ON chat_questions (session_guid);
CREATE TABLE IF NOT EXISTS chat_question_votes (
    question_id INTEGER NOT NULL REFERENCES chat_questions(id) ON DELETE CASCADE,
    ticket_id INTEGER NOT NULL REFERENCES tickets(id) ON DELETE CASCADE,
    PRIMARY KEY (question_id, ticket_id)
);
CREATE TABLE IF NOT EXISTS chat_top_messages (
    session_guid TEXT PRIMARY KEY,
    event_id TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS chat_directory (
    ticket_id INTEGER PRIMARY KEY REFERENCES tickets(id) ON DELETE CASCADE,
    listed INTEGER NOT NULL
);
";

/// A ticket holder known on the homeserver.
#[derive(Debug, Clone)]
pub struct ChatUser {
    pub sub: String,
    pub ticket: Ticket,
    pub user_id: String,
    pub in_space: bool,
}

/// A revoked ticket's subject whose Matrix user may still be active.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoked {
    pub sub: String,
    pub ticket_id: i64,
    /// When (Unix time; 0 for revocations from before the queue).
    pub revoked: i64,
    /// Its Matrix user, if the sync had recorded it.
    pub user_id: Option<String>,
}

/// A question and its votes.
#[derive(Debug, Clone)]
pub struct Question {
    pub id: i64,
    pub session_guid: String,
    pub name: String,
    pub text: String,
    pub votes: i64,
    /// Whether the viewer voted for it.
    pub mine: bool,
}

/// An attendee listed in the directory.
#[derive(Debug, Clone)]
pub struct Listed {
    pub name: String,
    pub user_id: Option<String>,
}

impl Store {
    /// Live tickets that have an OIDC subject (they logged in to the chat,
    /// or tried) but no known Matrix user yet: (ticket ID, subject).
    pub fn chat_unmapped(&self) -> Result<Vec<(i64, String)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT o.ticket_id, o.sub FROM oidc_subjects o
             WHERE NOT EXISTS (SELECT 1 FROM chat_users c WHERE c.sub = o.sub)",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn chat_map_user(&self, ticket_id: i64, sub: &str, user_id: &str) -> Result<()> {
        self.conn().execute(
            "INSERT OR IGNORE INTO chat_users (sub, ticket_id, user_id) VALUES (?1, ?2, ?3)",
            params![sub, ticket_id, user_id],
        )?;
        Ok(())
    }

    /// Ticket holders with a live ticket and a Matrix user.
    pub fn chat_users(&self) -> Result<Vec<ChatUser>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT t.id, t.email, t.name, t.role, t.tz, c.sub, c.user_id, c.in_space
             FROM chat_users c JOIN oidc_subjects o ON o.sub = c.sub
             JOIN tickets t ON t.id = o.ticket_id WHERE c.deactivated = 0",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(ChatUser {
                ticket: crate::store::ticket_from_row(r, 0)?,
                sub: r.get(5)?,
                user_id: r.get(6)?,
                in_space: r.get::<_, i64>(7)? != 0,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The Matrix user of a live ticket.
    pub fn chat_user_of(&self, ticket_id: i64) -> Result<Option<String>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT c.user_id FROM chat_users c JOIN oidc_subjects o ON o.sub = c.sub
                 WHERE o.ticket_id = ?1 AND c.deactivated = 0",
                params![ticket_id],
                |r| r.get(0),
            )
            .optional()?)
    }

    pub fn chat_set_in_space(&self, sub: &str) -> Result<()> {
        self.conn().execute(
            "UPDATE chat_users SET in_space = 1 WHERE sub = ?1",
            params![sub],
        )?;
        Ok(())
    }

    /// Revocations not yet carried out on the homeserver, oldest first.
    pub fn chat_revocations(&self) -> Result<Vec<Revoked>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT r.sub, r.ticket_id, r.revoked, c.user_id
             FROM chat_revoked r LEFT JOIN chat_users c ON c.sub = r.sub
             ORDER BY r.revoked, r.sub",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(Revoked {
                sub: r.get(0)?,
                ticket_id: r.get(1)?,
                revoked: r.get(2)?,
                user_id: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The revocation of `sub` is carried out: its Matrix user (if it had
    /// one) is deactivated.
    pub fn chat_revocation_done(&self, sub: &str) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "UPDATE chat_users SET deactivated = 1 WHERE sub = ?1",
            params![sub],
        )?;
        tx.execute("DELETE FROM chat_revoked WHERE sub = ?1", params![sub])?;
        tx.commit()?;
        Ok(())
    }

    pub fn chat_invited(&self, alias: &str, user_id: &str) -> Result<bool> {
        Ok(self
            .conn()
            .query_row(
                "SELECT 1 FROM chat_invites WHERE alias = ?1 AND user_id = ?2",
                params![alias, user_id],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    pub fn chat_set_invited(&self, alias: &str, user_id: &str) -> Result<()> {
        self.conn().execute(
            "INSERT OR IGNORE INTO chat_invites (alias, user_id) VALUES (?1, ?2)",
            params![alias, user_id],
        )?;
        Ok(())
    }

    /// Forgets what was done in a room the sync makes again: its invites,
    /// everyone's place in it if it is the space, and the "Top questions"
    /// messages of `sessions` (a backstage's).
    pub fn chat_forget_room(&self, alias: &str, space: bool, sessions: &[&str]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute("DELETE FROM chat_invites WHERE alias = ?1", params![alias])?;
        if space {
            tx.execute("UPDATE chat_users SET in_space = 0", [])?;
        }
        for guid in sessions {
            tx.execute(
                "DELETE FROM chat_top_messages WHERE session_guid = ?1",
                params![guid],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Stores a question with the asker's own vote; returns its ID.
    pub fn ask(&self, session_guid: &str, ticket: &Ticket, text: &str) -> Result<i64> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO chat_questions (session_guid, ticket_id, name, text, created)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                session_guid,
                ticket.id,
                ticket.display_name(),
                text,
                chrono::Utc::now().timestamp()
            ],
        )?;
        let id = tx.last_insert_rowid();
        tx.execute(
            "INSERT INTO chat_question_votes (question_id, ticket_id) VALUES (?1, ?2)",
            params![id, ticket.id],
        )?;
        tx.commit()?;
        Ok(id)
    }

    /// One vote per ticket per question: a second one changes nothing.
    /// Returns the question's session, or None when there is no such question.
    pub fn upvote(&self, question_id: i64, ticket_id: i64) -> Result<Option<String>> {
        let conn = self.conn();
        let guid: Option<String> = conn
            .query_row(
                "SELECT session_guid FROM chat_questions WHERE id = ?1",
                params![question_id],
                |r| r.get(0),
            )
            .optional()?;
        if guid.is_some() {
            conn.execute(
                "INSERT OR IGNORE INTO chat_question_votes (question_id, ticket_id) VALUES (?1, ?2)",
                params![question_id, ticket_id],
            )?;
        }
        Ok(guid)
    }

    /// A session's questions, most votes first (then oldest first).
    pub fn questions(&self, session_guid: &str, viewer: Option<i64>) -> Result<Vec<Question>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT q.id, q.session_guid, q.name, q.text,
               (SELECT count(*) FROM chat_question_votes v WHERE v.question_id = q.id),
               EXISTS (SELECT 1 FROM chat_question_votes v WHERE v.question_id = q.id AND v.ticket_id = ?2)
             FROM chat_questions q WHERE q.session_guid = ?1
             ORDER BY 5 DESC, q.id ASC",
        )?;
        let rows = stmt.query_map(params![session_guid, viewer.unwrap_or(-1)], |r| {
            Ok(Question {
                id: r.get(0)?,
                session_guid: r.get(1)?,
                name: r.get(2)?,
                text: r.get(3)?,
                votes: r.get(4)?,
                mine: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The session of a question.
    pub fn questions_session(&self, question_id: i64) -> Result<Option<String>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT session_guid FROM chat_questions WHERE id = ?1",
                params![question_id],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Questions not yet posted to their room: (id, session, name, text).
    pub fn unposted_questions(&self) -> Result<Vec<(i64, String, String, String)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id, session_guid, name, text FROM chat_questions WHERE posted = 0 ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn set_question_posted(&self, id: i64) -> Result<()> {
        self.conn().execute(
            "UPDATE chat_questions SET posted = 1 WHERE id = ?1",
            params![id],
        )?;
        Ok(())
    }

    /// Sessions that have questions.
    pub fn sessions_with_questions(&self) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached("SELECT DISTINCT session_guid FROM chat_questions")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The backstage's "Top questions" message of a session: (event ID, body).
    pub fn top_message(&self, session_guid: &str) -> Result<Option<(String, String)>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT event_id, body FROM chat_top_messages WHERE session_guid = ?1",
                params![session_guid],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    pub fn set_top_message(&self, session_guid: &str, event_id: &str, body: &str) -> Result<()> {
        self.conn().execute(
            "INSERT INTO chat_top_messages (session_guid, event_id, body) VALUES (?1, ?2, ?3)
             ON CONFLICT(session_guid) DO UPDATE SET body = excluded.body",
            params![session_guid, event_id, body],
        )?;
        Ok(())
    }

    /// Whether the ticket holder chose to be listed (default: not).
    pub fn listed(&self, ticket_id: i64) -> Result<bool> {
        Ok(self
            .conn()
            .query_row(
                "SELECT listed FROM chat_directory WHERE ticket_id = ?1",
                params![ticket_id],
                |r| r.get::<_, i64>(0),
            )
            .optional()?
            .is_some_and(|l| l != 0))
    }

    pub fn set_listed(&self, ticket_id: i64, listed: bool) -> Result<()> {
        self.conn().execute(
            "INSERT INTO chat_directory (ticket_id, listed) VALUES (?1, ?2)
             ON CONFLICT(ticket_id) DO UPDATE SET listed = excluded.listed",
            params![ticket_id, listed as i64],
        )?;
        Ok(())
    }

    /// The directory: listed ticket holders by name, with their Matrix user.
    pub fn directory(&self) -> Result<Vec<Listed>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT t.id, t.email, t.name, t.role, t.tz,
               (SELECT c.user_id FROM chat_users c JOIN oidc_subjects o ON o.sub = c.sub
                WHERE o.ticket_id = t.id AND c.deactivated = 0)
             FROM chat_directory d JOIN tickets t ON t.id = d.ticket_id WHERE d.listed = 1",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(Listed {
                name: crate::store::ticket_from_row(r, 0)?.display_name(),
                user_id: r.get(5)?,
            })
        })?;
        let mut out: Vec<Listed> = rows.collect::<Result<_, _>>()?;
        out.sort_by_key(|l| l.name.to_lowercase());
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::TicketRole;

    /// A database in a fresh directory, removed on drop.
    struct Db(std::path::PathBuf);
    impl Db {
        fn new() -> Db {
            let dir = std::env::temp_dir().join(format!(
                "venue-chat-store-{}",
                conference::protocol::hex(&crate::random_bytes::<8>())
            ));
            Db(dir)
        }
        fn open(&self) -> Store {
            Store::open(&self.0).unwrap()
        }
    }
    impl Drop for Db {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn ticket(s: &Store, email: &str) -> i64 {
        s.put_ticket(email, "code-123456", TicketRole::Attendee, None)
            .unwrap()
    }

    #[test]
    fn a_room_made_again_forgets_only_its_own_invites_places_and_messages() {
        let db = Db::new();
        let s = db.open();
        let a = ticket(&s, "a@example.org");
        let sa = s.oidc_subject(a).unwrap();
        s.chat_map_user(a, &sa, "@a:s").unwrap();
        s.chat_set_in_space(&sa).unwrap();
        for alias in ["r-backstage", "other"] {
            s.chat_set_invited(alias, "@a:s").unwrap();
        }
        for guid in ["g1", "g2"] {
            s.set_top_message(guid, "$e", "body").unwrap();
        }
        let in_space = |s: &Store| s.chat_users().unwrap()[0].in_space;

        // A backstage: its invites and its sessions' messages go.
        s.chat_forget_room("r-backstage", false, &["g1"]).unwrap();
        assert!(!s.chat_invited("r-backstage", "@a:s").unwrap());
        assert!(s.chat_invited("other", "@a:s").unwrap());
        assert_eq!(s.top_message("g1").unwrap(), None);
        assert!(s.top_message("g2").unwrap().is_some());
        assert!(in_space(&s));
        // The space: everyone is joined to the new one.
        s.chat_forget_room("ev", true, &[]).unwrap();
        assert!(!in_space(&s));
        assert!(s.chat_invited("other", "@a:s").unwrap());
    }

    #[test]
    fn revoking_a_ticket_queues_its_subject_until_done_across_reopens() {
        let db = Db::new();
        let s = db.open();
        let (a, b, c) = (
            ticket(&s, "a@example.org"),
            ticket(&s, "b@example.org"),
            ticket(&s, "c@example.org"),
        );
        let (sa, sb) = (s.oidc_subject(a).unwrap(), s.oidc_subject(b).unwrap());
        s.oidc_subject(c).unwrap();
        // The sync saw A's account, not B's; C is not revoked.
        s.chat_map_user(a, &sa, "@a:s").unwrap();
        assert_eq!(s.chat_revocations().unwrap(), []);
        let before = chrono::Utc::now().timestamp();
        s.revoke_ticket("a@example.org").unwrap().unwrap();
        s.revoke_ticket("b@example.org").unwrap().unwrap();
        drop(s);

        let s = db.open();
        let mut got = s.chat_revocations().unwrap();
        got.sort_by_key(|r| r.ticket_id);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(
            (
                got[0].sub.as_str(),
                got[0].ticket_id,
                got[0].user_id.as_deref()
            ),
            (sa.as_str(), a, Some("@a:s"))
        );
        assert_eq!(
            (
                got[1].sub.as_str(),
                got[1].ticket_id,
                got[1].user_id.as_deref()
            ),
            (sb.as_str(), b, None)
        );
        assert!(got.iter().all(|r| r.revoked >= before), "{got:?}");

        s.chat_revocation_done(&sa).unwrap();
        drop(s);
        let s = db.open();
        let left: Vec<String> = s
            .chat_revocations()
            .unwrap()
            .into_iter()
            .map(|r| r.sub)
            .collect();
        assert_eq!(left, std::slice::from_ref(&sb));
        // A's user is marked deactivated: reopening does not queue it again.
        let deactivated: i64 = s
            .conn()
            .query_row(
                "SELECT deactivated FROM chat_users WHERE sub = ?1",
                params![sa],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(deactivated, 1);
        s.chat_revocation_done(&sb).unwrap();
        assert_eq!(s.chat_revocations().unwrap(), []);
    }

    #[test]
    fn known_users_revoked_before_the_queue_existed_are_queued_on_open() {
        let db = Db::new();
        let s = db.open();
        let a = ticket(&s, "a@example.org");
        let sa = s.oidc_subject(a).unwrap();
        s.chat_map_user(a, &sa, "@a:s").unwrap();
        // A database of the version before: no trigger, the subject gone.
        s.conn()
            .execute_batch("DROP TRIGGER chat_revoke_subject")
            .unwrap();
        s.revoke_ticket("a@example.org").unwrap().unwrap();
        assert_eq!(s.chat_revocations().unwrap(), []);
        drop(s);

        let got = db.open().chat_revocations().unwrap();
        assert_eq!(
            got,
            [Revoked {
                sub: sa,
                ticket_id: a,
                revoked: 0,
                user_id: Some("@a:s".into()),
            }]
        );
    }
}
