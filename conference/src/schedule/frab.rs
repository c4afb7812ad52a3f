//! frab/pentabarf `schedule.xml`, the format frab, pretalx and the c3voc
//! tools exchange: `<schedule><conference/><day date=…><room name=…><event guid=…>`.

use std::path::Path;

use chrono_tz::Tz;
use roxmltree::{Document, Node};

use super::times::{local_start, parse_datetime, parse_duration};
use super::{RawSession, Session};
use crate::error::InputError;

pub(super) fn parse(
    file: &Path,
    source: &str,
    event_tz: Tz,
) -> Result<Vec<RawSession>, InputError> {
    let doc = Document::parse(source).map_err(|e| {
        let pos = e.pos();
        InputError::at(
            file,
            source,
            pos.row as usize,
            pos.col as usize,
            format!("not well-formed XML: {e}"),
        )
    })?;
    let err =
        |node: Node, msg: String| InputError::at_offset(file, source, node.range().start, msg);
    let root = doc.root_element();
    if root.tag_name().name() != "schedule" {
        return Err(err(
            root,
            format!(
                "expected a frab <schedule> document, found <{}>",
                root.tag_name().name()
            ),
        ));
    }
    // The schedule's own zone, for `start` times without a full `date`.
    let tz = child(root, "conference")
        .and_then(|c| text(c, "time_zone_name"))
        .and_then(|name| name.parse::<Tz>().ok())
        .unwrap_or(event_tz);

    let mut sessions = Vec::new();
    for day in root.children().filter(|n| n.has_tag_name("day")) {
        let day_date = day.attribute("date").unwrap_or_default();
        for room in day.children().filter(|n| n.has_tag_name("room")) {
            let room_name = room.attribute("name").unwrap_or_default();
            for ev in room.children().filter(|n| n.has_tag_name("event")) {
                sessions.push(session(ev, day_date, room_name, tz).map_err(|msg| err(ev, msg))?);
            }
        }
    }
    Ok(sessions)
}

fn session(ev: Node, day_date: &str, room_name: &str, tz: Tz) -> Result<RawSession, String> {
    let title = text(ev, "title")
        .ok_or("an <event> without <title>")?
        .trim()
        .to_owned();
    let guid = ev
        .attribute("guid")
        .or_else(|| ev.attribute("id"))
        .map(str::to_owned)
        .ok_or_else(|| format!("event `{title}` has neither a guid nor an id attribute"))?;
    let start_text = text(ev, "start");
    let start = match text(ev, "date") {
        Some(date) => parse_datetime(date, tz).ok_or_else(|| {
            format!("event `{title}`: <date>{date}</date> is not an ISO 8601 date and time")
        })?,
        None => {
            let start_text = start_text
                .ok_or_else(|| format!("event `{title}` has neither <date> nor <start>"))?;
            local_start(day_date, start_text, tz)
                .ok_or_else(|| format!("event `{title}`: day {day_date:?} and start {start_text:?} are not a date and an HH:MM time"))?
        }
    };
    let duration_text =
        text(ev, "duration").ok_or_else(|| format!("event `{title}` has no <duration>"))?;
    let duration = parse_duration(duration_text)
        .ok_or_else(|| format!("event `{title}`: duration {duration_text:?} is not HH:MM"))?;
    // The event's own <room> wins over the enclosing one, as in frab's exporter.
    let room = text(ev, "room")
        .filter(|r| !r.trim().is_empty())
        .unwrap_or(room_name)
        .trim()
        .to_owned();
    let persons = child(ev, "persons")
        .map(|p| {
            p.children()
                .filter(|n| n.has_tag_name("person"))
                .filter_map(|n| n.text())
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    Ok(RawSession {
        offset: 0,
        session: Session {
            guid,
            title,
            room,
            start,
            end: start + duration,
            track: non_empty(text(ev, "track")),
            kind: non_empty(text(ev, "type")),
            persons,
            summary: non_empty(text(ev, "abstract")),
            url: non_empty(text(ev, "url")),
        },
    })
    .map(|mut s| {
        s.offset = ev.range().start;
        s
    })
}

fn child<'a, 'i>(node: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    node.children().find(|n| n.has_tag_name(name))
}

fn text<'a>(node: Node<'a, '_>, name: &str) -> Option<&'a str> {
    child(node, name).map(|n| n.text().unwrap_or(""))
}

fn non_empty(s: Option<&str>) -> Option<String> {
    s.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}
