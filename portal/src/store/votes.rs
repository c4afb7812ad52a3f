//! Talk proposals and the attendees' votes. Votes are rows per ticket, so a
//! revoked (deleted) ticket takes its votes with it (ON DELETE CASCADE).

use anyhow::Result;
use rusqlite::{params, OptionalExtension};

use super::Store;

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS proposals (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    abstract TEXT NOT NULL DEFAULT '',
    track TEXT,
    speakers TEXT NOT NULL DEFAULT '',
    imported INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS votes (
    ticket_id INTEGER NOT NULL REFERENCES tickets(id) ON DELETE CASCADE,
    proposal_id TEXT NOT NULL REFERENCES proposals(id) ON DELETE CASCADE,
    cast_at INTEGER NOT NULL,
    PRIMARY KEY (ticket_id, proposal_id)
);
CREATE TABLE IF NOT EXISTS vote_switch (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    open INTEGER NOT NULL,
    at INTEGER NOT NULL
);
";

/// A talk proposal (from pretalx or a CSV file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    pub id: String,
    pub title: String,
    pub abstract_: String,
    pub track: Option<String>,
    pub speakers: Vec<String>,
}

/// What became of a vote.
#[derive(Debug, PartialEq, Eq)]
pub enum Cast {
    Done,
    /// The ticket has used all its votes.
    NoVotesLeft,
    UnknownProposal,
}

/// One proposal's result.
#[derive(Debug, Clone)]
pub struct ProposalResult {
    pub proposal: Proposal,
    pub votes: u64,
}

/// One track's result: votes, and how many tickets voted in it.
#[derive(Debug, Clone)]
pub struct TrackResult {
    pub track: Option<String>,
    pub votes: u64,
    pub voters: u64,
}

#[derive(Debug, Clone)]
pub struct Results {
    /// Most votes first.
    pub proposals: Vec<ProposalResult>,
    pub tracks: Vec<TrackResult>,
    /// Tickets that cast at least one vote.
    pub voters: u64,
}

fn proposal_from_row(r: &rusqlite::Row) -> rusqlite::Result<Proposal> {
    let speakers: String = r.get(4)?;
    Ok(Proposal {
        id: r.get(0)?,
        title: r.get(1)?,
        abstract_: r.get(2)?,
        track: r.get(3)?,
        speakers: speakers
            .split('\n')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

impl Store {
    /// Adds or updates proposals, all or none; votes for an updated one stay.
    pub fn import_proposals(&self, proposals: &[Proposal]) -> Result<usize> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for p in proposals {
            tx.execute(
                "INSERT INTO proposals (id, title, abstract, track, speakers, imported) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT(id) DO UPDATE SET title = excluded.title, abstract = excluded.abstract,
                   track = excluded.track, speakers = excluded.speakers, imported = excluded.imported",
                params![p.id, p.title, p.abstract_, p.track, p.speakers.join("\n"), super::now()],
            )?;
        }
        tx.commit()?;
        Ok(proposals.len())
    }

    /// Every proposal, by id.
    pub fn proposals(&self) -> Result<Vec<Proposal>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id, title, abstract, track, speakers FROM proposals ORDER BY id",
        )?;
        let rows = stmt.query_map([], proposal_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn proposal_count(&self) -> Result<i64> {
        Ok(self
            .conn()
            .query_row("SELECT count(*) FROM proposals", [], |r| r.get(0))?)
    }

    /// The proposals this ticket voted for.
    pub fn my_votes(&self, ticket_id: i64) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached("SELECT proposal_id FROM votes WHERE ticket_id = ?1")?;
        let rows = stmt.query_map(params![ticket_id], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Casts (`on`) or takes back a vote; a ticket has at most `limit`.
    pub fn cast_vote(&self, ticket_id: i64, proposal: &str, on: bool, limit: u32) -> Result<Cast> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let known: Option<i64> = tx
            .query_row(
                "SELECT 1 FROM proposals WHERE id = ?1",
                params![proposal],
                |r| r.get(0),
            )
            .optional()?;
        if known.is_none() {
            return Ok(Cast::UnknownProposal);
        }
        if on {
            let (used, already): (i64, i64) = tx.query_row(
                "SELECT count(*), coalesce(sum(proposal_id = ?2), 0) FROM votes WHERE ticket_id = ?1",
                params![ticket_id, proposal],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            if already == 0 && used >= i64::from(limit) {
                return Ok(Cast::NoVotesLeft);
            }
            tx.execute(
                "INSERT OR IGNORE INTO votes (ticket_id, proposal_id, cast_at) VALUES (?1, ?2, ?3)",
                params![ticket_id, proposal, super::now()],
            )?;
        } else {
            tx.execute(
                "DELETE FROM votes WHERE ticket_id = ?1 AND proposal_id = ?2",
                params![ticket_id, proposal],
            )?;
        }
        tx.commit()?;
        Ok(Cast::Done)
    }

    /// The staff's last open/close: (open, when, seconds since the epoch).
    pub fn vote_switch(&self) -> Result<Option<(bool, i64)>> {
        Ok(self
            .conn()
            .query_row("SELECT open, at FROM vote_switch WHERE id = 1", [], |r| {
                Ok((r.get::<_, i64>(0)? != 0, r.get(1)?))
            })
            .optional()?)
    }

    pub fn set_vote_switch(&self, open: bool) -> Result<()> {
        self.conn().execute(
            "INSERT INTO vote_switch (id, open, at) VALUES (1, ?1, ?2)
             ON CONFLICT(id) DO UPDATE SET open = excluded.open, at = excluded.at",
            params![open, super::now()],
        )?;
        Ok(())
    }

    /// Votes per proposal and per track.
    pub fn vote_results(&self) -> Result<Results> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT p.id, p.title, p.abstract, p.track, p.speakers, count(v.ticket_id)
             FROM proposals p LEFT JOIN votes v ON v.proposal_id = p.id
             GROUP BY p.id ORDER BY count(v.ticket_id) DESC, p.id",
        )?;
        let proposals = stmt
            .query_map([], |r| {
                Ok(ProposalResult {
                    proposal: proposal_from_row(r)?,
                    votes: r.get::<_, i64>(5)? as u64,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let mut stmt = conn.prepare(
            "SELECT p.track, count(v.ticket_id), count(DISTINCT v.ticket_id)
             FROM proposals p LEFT JOIN votes v ON v.proposal_id = p.id
             GROUP BY p.track ORDER BY count(v.ticket_id) DESC, p.track",
        )?;
        let tracks = stmt
            .query_map([], |r| {
                Ok(TrackResult {
                    track: r.get(0)?,
                    votes: r.get::<_, i64>(1)? as u64,
                    voters: r.get::<_, i64>(2)? as u64,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let voters: i64 =
            conn.query_row("SELECT count(DISTINCT ticket_id) FROM votes", [], |r| {
                r.get(0)
            })?;
        Ok(Results {
            proposals,
            tracks,
            voters: voters as u64,
        })
    }

    /// Deletes the ticket of `email` with its sessions, picks, feed and
    /// votes. Returns its id, if there was one.
    pub fn revoke_ticket(&self, email: &str) -> Result<Option<i64>> {
        Ok(self
            .conn()
            .query_row(
                "DELETE FROM tickets WHERE email = ?1 RETURNING id",
                params![super::normalize_email(email)],
                |r| r.get(0),
            )
            .optional()?)
    }
}
