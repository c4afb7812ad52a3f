//! Rendered schedule fragments, shared by every page view.
//!
//! A session card's text (title, times in UTC, the event's and the viewer's
//! zone, room, track, speakers) is the same for everyone who sees it in the
//! same time zone, and formatting it was most of a timetable view's work.
//! It is rendered once per session and viewer zone; only the parts that
//! depend on the viewer and the clock (Live, Join, ☆, the CSRF token) are
//! rendered per request.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use chrono_tz::Tz;
use conference::{Event, Session};
use maud::html;

use crate::views::{times, Chrome};

/// A timetable heading's minute (since the epoch), viewer zone and whether
/// it is a preview.
pub type HeadingKey = (i64, Option<Tz>, bool);

pub struct Fragments {
    /// The event's parts of every page.
    pub chrome: Chrome,
    /// Each session's guid, HTML-escaped for attributes.
    pub guids: Vec<String>,
    /// Card texts per viewer zone (None: no zone of their own), indexed like
    /// `event.sessions`.
    heads: RwLock<HashMap<Option<Tz>, Arc<Vec<String>>>>,
    /// The timetable's heading per (minute, viewer zone, preview or not):
    /// its times are to the minute, and strftime was a tenth of a view.
    timetable_headings: RwLock<HashMap<HeadingKey, Arc<str>>>,
}

/// The viewer's zone as far as the times shown differ: a zone equal to UTC
/// or to the event's zone shows nothing extra.
fn effective(event: &Event, tz: Option<Tz>) -> Option<Tz> {
    tz.filter(|tz| *tz != event.timezone && *tz != chrono_tz::UTC)
}

fn head(event: &Event, s: &Session, tz: Option<Tz>) -> String {
    html! {
        strong { (s.title) }
        div.muted {
            (times(s.start, s.end, event.timezone, tz))
            " · " (s.room)
            @if let Some(k) = &s.kind { " · " (k) }
            @if let Some(t) = &s.track { @if t != &s.room { " · " (t) } }
        }
        @if !s.persons.is_empty() { div.muted { (s.persons.join(", ")) } }
    }
    .into_string()
}

impl Fragments {
    pub fn new(event: &Event) -> Fragments {
        let plain = event
            .sessions
            .iter()
            .map(|s| head(event, s, None))
            .collect();
        Fragments {
            chrome: Chrome::new(event),
            guids: event
                .sessions
                .iter()
                .map(|s| html! { (s.guid) }.into_string())
                .collect(),
            heads: RwLock::new(HashMap::from([(None, Arc::new(plain))])),
            timetable_headings: RwLock::new(HashMap::new()),
        }
    }

    /// The timetable's heading for `key`, rendered by `render` when new.
    pub fn timetable_heading(&self, key: HeadingKey, render: impl FnOnce() -> String) -> Arc<str> {
        if let Some(h) = self
            .timetable_headings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Arc::clone(h);
        }
        let h: Arc<str> = render().into();
        let mut map = self
            .timetable_headings
            .write()
            .unwrap_or_else(|e| e.into_inner());
        // Previews can ask for any minute: keep the map small.
        if map.len() > 4096 {
            map.clear();
        }
        map.insert(key, Arc::clone(&h));
        h
    }

    /// The card texts of every session for a viewer in `tz`.
    pub fn heads(&self, event: &Event, tz: Option<Tz>) -> Arc<Vec<String>> {
        let tz = effective(event, tz);
        if let Some(h) = self
            .heads
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&tz)
        {
            return Arc::clone(h);
        }
        // At most one entry per time zone there is (about 600).
        let rendered: Arc<Vec<String>> =
            Arc::new(event.sessions.iter().map(|s| head(event, s, tz)).collect());
        self.heads
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(tz)
            .or_insert(rendered)
            .clone()
    }
}
