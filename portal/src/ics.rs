//! iCalendar (RFC 5545) export of sessions.

use chrono::{DateTime, Utc};
use conference::{Event, Session};

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// Folds a content line at 75 octets (RFC 5545 3.1), never inside a character.
fn push_line(out: &mut String, line: &str) {
    let mut width = 0;
    for c in line.chars() {
        if width + c.len_utf8() > 75 {
            out.push_str("\r\n ");
            width = 1;
        }
        out.push(c);
        width += c.len_utf8();
    }
    out.push_str("\r\n");
}

fn stamp(t: DateTime<Utc>) -> String {
    t.format("%Y%m%dT%H%M%SZ").to_string()
}

/// A calendar of `sessions`; `portal_url` links each event back to the portal.
pub fn calendar<'a>(
    event: &Event,
    name: &str,
    sessions: impl Iterator<Item = &'a Session>,
    portal_url: &str,
) -> String {
    let mut out = String::new();
    let now = stamp(Utc::now());
    for l in [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//venue//venue-portal//EN",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
    ] {
        push_line(&mut out, l);
    }
    push_line(&mut out, &format!("X-WR-CALNAME:{}", escape(name)));
    for s in sessions {
        push_line(&mut out, "BEGIN:VEVENT");
        push_line(
            &mut out,
            &format!("UID:{}@{}", escape(&s.guid), event.domain),
        );
        push_line(&mut out, &format!("DTSTAMP:{now}"));
        push_line(&mut out, &format!("DTSTART:{}", stamp(s.start)));
        push_line(&mut out, &format!("DTEND:{}", stamp(s.end)));
        push_line(&mut out, &format!("SUMMARY:{}", escape(&s.title)));
        push_line(&mut out, &format!("LOCATION:{}", escape(&s.room)));
        let mut desc = String::new();
        if !s.persons.is_empty() {
            desc.push_str(&s.persons.join(", "));
            desc.push('\n');
        }
        if let Some(sum) = &s.summary {
            desc.push_str(sum);
            desc.push('\n');
        }
        desc.push_str(&format!("Join: {portal_url}/timetable"));
        push_line(&mut out, &format!("DESCRIPTION:{}", escape(&desc)));
        if let Some(u) = &s.url {
            push_line(&mut out, &format!("URL:{}", escape(u)));
        }
        push_line(&mut out, "END:VEVENT");
    }
    push_line(&mut out, "END:VCALENDAR");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_folds() {
        assert_eq!(escape("a,b;c\\d\ne"), "a\\,b\\;c\\\\d\\ne");
        let mut out = String::new();
        push_line(&mut out, &"é".repeat(60));
        for l in out.split("\r\n") {
            assert!(l.len() <= 75, "{l}");
        }
    }
}
