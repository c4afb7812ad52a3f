//! Schedules: frab/pentabarf `schedule.xml` and pretalx's JSON export, both
//! turned into [`Session`]s attached to the rooms of event.toml.

mod frab;
mod pretalx;
mod times;

use std::path::Path;

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use crate::error::{did_you_mean, InputError};
use crate::event::{room_names, slugify, Event};

/// One scheduled session in a room of the event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Session {
    /// Stable id from the schedule (frab/pretalx `guid`), or `id` when absent.
    pub guid: String,
    pub title: String,
    /// The event.toml name of the room.
    pub room: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub track: Option<String>,
    /// frab `type` (Talk, Workshop, BoF, ...).
    pub kind: Option<String>,
    pub persons: Vec<String>,
    pub summary: Option<String>,
    pub url: Option<String>,
}

impl Session {
    pub fn is_running(&self, now: DateTime<Utc>) -> bool {
        self.start <= now && now < self.end
    }
}

/// A session as read from a file, before it is attached to the event; `offset`
/// is where it stands in the file, for errors.
pub(crate) struct RawSession {
    pub session: Session,
    pub offset: usize,
}

/// Sessions starting before this local time belong to the previous day, as in
/// frab's `day_change`: a party from 23:00 to 01:00 is part of the evening.
const DAY_CHANGE: NaiveTime = match NaiveTime::from_hms_opt(6, 0, 0) {
    Some(t) => t,
    None => panic!("valid time"),
};

/// The event day a session starting at `start` belongs to, in zone `tz`.
pub fn event_day(start: DateTime<Utc>, tz: Tz) -> NaiveDate {
    let local = start.with_timezone(&tz);
    let date = local.date_naive();
    if local.time() < DAY_CHANGE {
        date.pred_opt().unwrap_or(date)
    } else {
        date
    }
}

/// Reads `file` (format by its content: `<` for frab XML, `{` for pretalx
/// JSON) and attaches its sessions to `event`'s rooms and days.
pub fn load(file: &Path, event: &Event) -> Result<Vec<Session>, InputError> {
    let source = std::fs::read_to_string(file)
        .map_err(|e| InputError::whole_file(file, format!("cannot read the schedule: {e}")))?;
    parse(file, &source, event)
}

pub fn parse(file: &Path, source: &str, event: &Event) -> Result<Vec<Session>, InputError> {
    let raw = match source.trim_start().chars().next() {
        Some('<') => frab::parse(file, source, event.timezone)?,
        Some('{') => pretalx::parse(file, source, event.timezone)?,
        _ => {
            return Err(InputError::whole_file(
                file,
                "not a schedule: expected frab schedule.xml (starting with `<`) or pretalx schedule.json (starting with `{`)",
            ))
        }
    };
    attach(file, source, event, raw)
}

fn attach(
    file: &Path,
    source: &str,
    event: &Event,
    raw: Vec<RawSession>,
) -> Result<Vec<Session>, InputError> {
    let names = room_names(event);
    let mut seen = std::collections::HashSet::new();
    let mut sessions = Vec::with_capacity(raw.len());
    for RawSession {
        mut session,
        offset,
    } in raw
    {
        let err = |msg: String| InputError::at_offset(file, source, offset, msg);
        let room = event
            .room(&session.room)
            .or_else(|| event.rooms.iter().find(|r| r.slug == slugify(&session.room)))
            .ok_or_else(|| {
                let hint = did_you_mean(&session.room, names.iter().copied())
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default();
                let mut known: Vec<&str> = names.iter().copied().collect();
                known.sort_unstable();
                err(format!(
                    "session `{}` is in room `{}`, which event.toml does not have (rooms: {}){hint}",
                    session.title,
                    session.room,
                    known.join(", ")
                ))
            })?;
        session.room = room.name.clone();
        let local = session.start.with_timezone(&event.timezone);
        let date = event_day(session.start, event.timezone);
        if !event.days.iter().any(|d| d.date == date) {
            let days: Vec<String> = event.days.iter().map(|d| d.date.to_string()).collect();
            return Err(err(format!(
                "session `{}` starts {} ({}), outside the event days ({})",
                session.title,
                local.format("%Y-%m-%d %H:%M %Z"),
                session.start.format("%Y-%m-%d %H:%M UTC"),
                days.join(", ")
            )));
        }
        if session.end <= session.start {
            return Err(err(format!("session `{}` has no duration", session.title)));
        }
        if session.end - session.start > Duration::hours(24) {
            return Err(err(format!(
                "session `{}` lasts more than a day",
                session.title
            )));
        }
        if !seen.insert(session.guid.clone()) {
            return Err(err(format!(
                "session `{}`: guid {} appears twice",
                session.title, session.guid
            )));
        }
        sessions.push(session);
    }
    sessions.sort_by(|a, b| (a.start, &a.room).cmp(&(b.start, &b.room)));
    Ok(sessions)
}

#[cfg(test)]
mod tests;
