//! pretalx's JSON schedule export (`/schedule/export/schedule.json`), the
//! frab JSON layout: `{"schedule": {"conference": {"days": [{"rooms": {name: [event]}}]}}}`.

use std::collections::BTreeMap;
use std::path::Path;

use chrono_tz::Tz;
use serde::Deserialize;

use super::times::{local_start, parse_datetime, parse_duration};
use super::{RawSession, Session};
use crate::error::InputError;

#[derive(Deserialize)]
struct Export {
    schedule: Schedule,
}

#[derive(Deserialize)]
struct Schedule {
    conference: Conference,
}

#[derive(Deserialize)]
struct Conference {
    time_zone_name: Option<String>,
    #[serde(default)]
    days: Vec<Day>,
}

#[derive(Deserialize)]
struct Day {
    date: String,
    #[serde(default)]
    rooms: BTreeMap<String, Vec<Talk>>,
}

#[derive(Deserialize)]
struct Talk {
    guid: Option<String>,
    id: Option<serde_json::Value>,
    date: Option<String>,
    start: Option<String>,
    duration: String,
    room: Option<String>,
    title: String,
    track: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(rename = "abstract")]
    summary: Option<String>,
    url: Option<String>,
    #[serde(default)]
    persons: Vec<Person>,
}

#[derive(Deserialize)]
struct Person {
    public_name: Option<String>,
    name: Option<String>,
}

pub(super) fn parse(
    file: &Path,
    source: &str,
    event_tz: Tz,
) -> Result<Vec<RawSession>, InputError> {
    let export: Export = serde_json::from_str(source).map_err(|e| {
        InputError::at(
            file,
            source,
            e.line(),
            e.column(),
            format!("not a pretalx schedule.json: {e}"),
        )
    })?;
    let conference = export.schedule.conference;
    let tz = conference
        .time_zone_name
        .as_deref()
        .and_then(|n| n.parse::<Tz>().ok())
        .unwrap_or(event_tz);
    let mut sessions = Vec::new();
    for day in &conference.days {
        for (room_name, talks) in &day.rooms {
            for talk in talks {
                let guid = talk
                    .guid
                    .clone()
                    .or_else(|| {
                        talk.id
                            .as_ref()
                            .map(|v| v.to_string().trim_matches('"').to_owned())
                    })
                    .unwrap_or_default();
                // serde_json has no spans: point at the talk's guid (or title) in the text.
                let offset = find(source, &guid)
                    .or_else(|| find(source, &talk.title))
                    .unwrap_or(0);
                let err = |msg: String| InputError::at_offset(file, source, offset, msg);
                if guid.is_empty() {
                    return Err(err(format!(
                        "talk `{}` has neither guid nor id",
                        talk.title
                    )));
                }
                let start = match (&talk.date, &talk.start) {
                    (Some(date), _) => parse_datetime(date, tz).ok_or_else(|| {
                        err(format!(
                            "talk `{}`: date {date:?} is not an ISO 8601 date and time",
                            talk.title
                        ))
                    })?,
                    (None, Some(start)) => local_start(&day.date, start, tz).ok_or_else(|| {
                        err(format!(
                            "talk `{}`: start {start:?} on {} is not an HH:MM time",
                            talk.title, day.date
                        ))
                    })?,
                    (None, None) => {
                        return Err(err(format!(
                            "talk `{}` has neither date nor start",
                            talk.title
                        )))
                    }
                };
                let duration = parse_duration(&talk.duration).ok_or_else(|| {
                    err(format!(
                        "talk `{}`: duration {:?} is not HH:MM",
                        talk.title, talk.duration
                    ))
                })?;
                sessions.push(RawSession {
                    offset,
                    session: Session {
                        guid,
                        title: talk.title.trim().to_owned(),
                        room: talk
                            .room
                            .clone()
                            .unwrap_or_else(|| room_name.clone())
                            .trim()
                            .to_owned(),
                        start,
                        end: start + duration,
                        track: talk.track.clone().filter(|s| !s.is_empty()),
                        kind: talk.kind.clone().filter(|s| !s.is_empty()),
                        persons: talk
                            .persons
                            .iter()
                            .filter_map(|p| p.public_name.clone().or_else(|| p.name.clone()))
                            .collect(),
                        summary: talk.summary.clone().filter(|s| !s.is_empty()),
                        url: talk.url.clone().filter(|s| !s.is_empty()),
                    },
                });
            }
        }
    }
    Ok(sessions)
}

fn find(source: &str, needle: &str) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    let quoted = serde_json::to_string(needle).ok()?;
    source.find(&quoted)
}
