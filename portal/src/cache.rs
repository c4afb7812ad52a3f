//! Logins and picks kept in memory for a moment, so that a page view does
//! not go to SQLite (whose every read takes file locks with fcntl: a fifth
//! of a timetable view's time before this cache).
//!
//! Changes made through this portal forget the entries they touch at once
//! (logout, time zone, picks). Changes from outside (`tickets revoke` or
//! `import` run from the command line) show after at most [`TTL`].

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::store::{Store, Ticket};

pub const TTL: Duration = Duration::from_secs(2);
/// Past this many entries, stale ones are dropped on insert.
const PRUNE_ABOVE: usize = 10_000;

/// Entries with the time they were read.
type Timed<K, V> = RwLock<HashMap<K, (Instant, V)>>;

#[derive(Default)]
pub struct RequestCache {
    sessions: Timed<String, Option<Ticket>>,
    picks: Timed<i64, Arc<Vec<String>>>,
}

fn insert<K: std::hash::Hash + Eq, V>(map: &Timed<K, V>, k: K, v: V) {
    let mut m = map.write().unwrap_or_else(|e| e.into_inner());
    if m.len() > PRUNE_ABOVE {
        m.retain(|_, (t, _)| t.elapsed() < TTL);
    }
    m.insert(k, (Instant::now(), v));
}

impl RequestCache {
    /// The ticket of a live session (see `Store::session`).
    pub fn session(&self, store: &Store, token: &str) -> Result<Option<Ticket>> {
        if let Some((t, ticket)) = self
            .sessions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(token)
        {
            if t.elapsed() < TTL {
                return Ok(ticket.clone());
            }
        }
        let ticket = store.session(token)?;
        insert(&self.sessions, token.to_owned(), ticket.clone());
        Ok(ticket)
    }

    /// The ticket's picks (see `Store::picks`).
    pub fn picks(&self, store: &Store, ticket_id: i64) -> Result<Arc<Vec<String>>> {
        if let Some((t, picks)) = self
            .picks
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&ticket_id)
        {
            if t.elapsed() < TTL {
                return Ok(Arc::clone(picks));
            }
        }
        let picks = Arc::new(store.picks(ticket_id)?);
        insert(&self.picks, ticket_id, Arc::clone(&picks));
        Ok(picks)
    }

    /// Forgets a session (logout).
    pub fn forget_session(&self, token: &str) {
        self.sessions
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(token);
    }

    /// Forgets what is kept about a ticket (its settings or picks changed).
    pub fn forget_ticket(&self, ticket_id: i64) {
        self.sessions
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, (_, t)| t.as_ref().is_none_or(|t| t.id != ticket_id));
        self.picks
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&ticket_id);
    }
}
