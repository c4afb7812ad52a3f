//! Who may enter which room, and how many people are in it.

use chrono::{DateTime, Utc};
use conference::{Backend, Room, RoomKind, Session};

use crate::state::AppState;
use crate::store::Ticket;

fn normalize_name(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// Whether the ticket holder is one of the session's speakers: the ticket's
/// name or email equals one of the schedule's persons (case and spacing
/// folded). Schedules name people, not addresses, so a ticket needs its
/// `name` for this to match.
pub fn is_speaker(ticket: &Ticket, session: &Session) -> bool {
    let mut mine = vec![normalize_name(&ticket.email)];
    if let Some(n) = &ticket.name {
        mine.push(normalize_name(n));
    }
    session
        .persons
        .iter()
        .any(|p| mine.contains(&normalize_name(p)))
}

/// Sessions of `room` that run at `now` or start within the join window.
pub fn joinable_sessions<'a>(
    state: &'a AppState,
    room: &'a Room,
    now: DateTime<Utc>,
) -> impl Iterator<Item = &'a Session> + 'a {
    let early = state.config.join_early;
    state
        .event
        .sessions
        .iter()
        .filter(move |s| s.room == room.name && s.start - early <= now && now < s.end)
}

/// May `ticket` enter `room` now, and as moderator?
pub fn access(state: &AppState, ticket: &Ticket, room: &Room, now: DateTime<Utc>) -> Option<bool> {
    let staff = ticket.is_staff();
    let speaker_now = || joinable_sessions(state, room, now).any(|s| is_speaker(ticket, s));
    let speaker_anywhere = || state.event.sessions.iter().any(|s| is_speaker(ticket, s));
    let allowed = match room.kind {
        RoomKind::Staff => staff,
        RoomKind::Private => staff || speaker_anywhere(),
        RoomKind::Hack => true,
        RoomKind::Session => staff || joinable_sessions(state, room, now).next().is_some(),
    };
    allowed.then(|| staff || speaker_now())
}

/// People in `room` as the last poll of its backend saw them.
pub fn people(state: &AppState, room: &Room) -> Option<u64> {
    let id = state.meeting_id(room);
    match room.backend {
        Backend::Bbb => state.cluster.people(&id),
        Backend::Jitsi => state.jitsi.room_people(&id),
    }
}

pub fn kind_name(k: RoomKind) -> &'static str {
    match k {
        RoomKind::Session => "sessions",
        RoomKind::Hack => "hack room",
        RoomKind::Private => "private",
        RoomKind::Staff => "staff only",
    }
}
