//! When the talk vote is open, and the order each ticket sees proposals in.
//!
//! The vote opens and closes at `[vote] opens`/`closes` of event.toml and
//! when staff press Open or Close; the latest of these that has happened
//! decides. Before any of them the vote is closed.

use chrono::{DateTime, TimeZone, Utc};
use conference::event::Vote;

use crate::auth::sign;
use crate::state::AppState;
use crate::store::Proposal;

/// Whether the vote is open at `now`, given event.toml's `[vote]` and the
/// staff's last switch (open or not, seconds since the epoch).
pub fn is_open(vote: &Vote, switch: Option<(bool, i64)>, now: DateTime<Utc>) -> bool {
    let mut events: Vec<(DateTime<Utc>, bool)> = Vec::new();
    events.extend(vote.opens.map(|t| (t, true)));
    events.extend(vote.closes.map(|t| (t, false)));
    if let Some((open, at)) = switch {
        if let Some(t) = Utc.timestamp_opt(at, 0).single() {
            events.push((t, open));
        }
    }
    // On a tie the staff's switch (pushed last) wins.
    events
        .iter()
        .enumerate()
        .filter(|(_, (t, _))| *t <= now)
        .max_by_key(|(i, (t, _))| (*t, *i))
        .is_some_and(|(_, (_, open))| *open)
}

/// The vote's state now (reads the staff's switch).
pub fn open_now(state: &AppState) -> anyhow::Result<bool> {
    Ok(is_open(
        &state.event.vote,
        state.store.vote_switch()?,
        Utc::now(),
    ))
}

/// Sorts `proposals` in this ticket's own order: a keyed hash of ticket and
/// proposal, so every ticket sees another order (no position bias) that
/// stays the same between page views.
pub fn order_for(state: &AppState, ticket_id: i64, proposals: &mut [Proposal]) {
    let key = &state.config.session_key;
    proposals.sort_by_cached_key(|p| sign(key, "vote-order", &format!("{ticket_id}:{}", p.id)));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(h: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + h * 3600, 0).unwrap()
    }

    #[test]
    fn the_latest_event_decides() {
        let none = Vote {
            opens: None,
            closes: None,
            votes_per_ticket: 10,
        };
        assert!(!is_open(&none, None, at(0)));
        assert!(is_open(&none, Some((true, at(-1).timestamp())), at(0)));
        let timed = Vote {
            opens: Some(at(1)),
            closes: Some(at(5)),
            ..none
        };
        assert!(!is_open(&timed, None, at(0)));
        assert!(is_open(&timed, None, at(1)));
        assert!(!is_open(&timed, None, at(5)));
        // Staff close early; the closing time passes; staff reopen after it.
        assert!(!is_open(&timed, Some((false, at(2).timestamp())), at(3)));
        assert!(!is_open(&timed, Some((true, at(2).timestamp())), at(6)));
        assert!(is_open(&timed, Some((true, at(6).timestamp())), at(7)));
        // Opening early, before `opens`.
        assert!(is_open(&timed, Some((true, at(0).timestamp())), at(0)));
    }
}
