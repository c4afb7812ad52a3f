//! What the homeserver should hold for the event, computed from the event
//! alone: the space, one room per venue room, one backstage per session
//! room, their names, topics (the session on now) and who moderates them.
//! Pure, so that the sync only compares and applies.

use chrono::{DateTime, Utc};
use conference::{Event, Room, RoomKind, Session};

use crate::rooms::is_speaker;
use crate::store::Ticket;

/// How a room is entered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The event's space: every ticket holder is joined to it.
    Space,
    /// Any ticket holder may join (listed in the space).
    Public,
    /// Invite only: the bot invites who may be there.
    Private,
}

/// A room of the plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    /// The alias's localpart: `#<alias>:<server_name>`.
    pub alias: String,
    pub name: String,
    pub kind: Kind,
    /// The venue room it belongs to (None: the space).
    pub room: Option<String>,
    /// A session room's backstage.
    pub backstage: bool,
}

pub const BACKSTAGE: &str = "-backstage";

pub fn backstage_alias(slug: &str) -> String {
    format!("{slug}{BACKSTAGE}")
}

/// The space's alias: the event's ID.
pub fn space_alias(ev: &Event) -> String {
    ev.id.to_ascii_lowercase()
}

/// The event's rooms on the homeserver, the space first. Errors when two
/// would share an alias (a room slug that is the event ID, or ends in
/// `-backstage` like another room's backstage).
pub fn rooms(ev: &Event) -> anyhow::Result<Vec<Planned>> {
    let mut out = vec![Planned {
        alias: space_alias(ev),
        name: ev.name.clone(),
        kind: Kind::Space,
        room: None,
        backstage: false,
    }];
    for r in &ev.rooms {
        let kind = match r.kind {
            RoomKind::Session | RoomKind::Hack => Kind::Public,
            RoomKind::Private | RoomKind::Staff => Kind::Private,
        };
        out.push(Planned {
            alias: r.slug.clone(),
            name: r.name.clone(),
            kind,
            room: Some(r.name.clone()),
            backstage: false,
        });
        if r.kind == RoomKind::Session {
            out.push(Planned {
                alias: backstage_alias(&r.slug),
                name: format!("{} backstage", r.name),
                kind: Kind::Private,
                room: Some(r.name.clone()),
                backstage: true,
            });
        }
    }
    for (i, p) in out.iter().enumerate() {
        if !super::config::valid_localpart(&p.alias) {
            anyhow::bail!("chat: `{}` cannot be a room alias on the homeserver (lower-case letters, digits and ._=-/ only)", p.alias);
        }
        if let Some(q) = out[..i].iter().find(|q| q.alias == p.alias) {
            anyhow::bail!(
                "chat: `{}` and `{}` would both be #{}: rename a room",
                q.name,
                p.name,
                p.alias
            );
        }
    }
    Ok(out)
}

/// The session running in `room` at `now`.
pub fn running<'a>(ev: &'a Event, room: &str, now: DateTime<Utc>) -> Option<&'a Session> {
    ev.sessions
        .iter()
        .find(|s| s.room == room && s.is_running(now))
}

fn about(s: &Session) -> String {
    if s.persons.is_empty() {
        s.title.clone()
    } else {
        format!("{} — {}", s.title, s.persons.join(", "))
    }
}

/// The topic of a planned room at `now`: the session on now (and until
/// when), else the next one, else what kind of room it is.
pub fn topic(ev: &Event, p: &Planned, now: DateTime<Utc>) -> String {
    let Some(room) = p.room.as_deref().and_then(|n| ev.room(n)) else {
        return format!("{}: every room of the event is in this space.", ev.name);
    };
    let prefix = if p.backstage {
        format!("Backstage of {} (speakers and staff). ", room.name)
    } else {
        String::new()
    };
    let rest = match room.kind {
        RoomKind::Hack => "Hack room, open all day.".to_owned(),
        RoomKind::Staff => "Staff only.".to_owned(),
        RoomKind::Private => "Staff and speakers.".to_owned(),
        RoomKind::Session => {
            if let Some(s) = running(ev, &room.name, now) {
                format!("Now: {} (until {} UTC)", about(s), s.end.format("%H:%M"))
            } else if let Some(s) = ev
                .sessions
                .iter()
                .filter(|s| s.room == room.name && s.start > now)
                .min_by_key(|s| s.start)
            {
                format!(
                    "Next: {} ({} UTC)",
                    about(s),
                    s.start.format("%a %-d %b %H:%M")
                )
            } else {
                "Nothing more is scheduled here.".to_owned()
            }
        }
    };
    format!("{prefix}{rest}")
}

/// Whether the ticket holder speaks in `room` (any session of it).
pub fn speaks_in(ev: &Event, ticket: &Ticket, room: &Room) -> bool {
    ev.sessions
        .iter()
        .any(|s| s.room == room.name && is_speaker(ticket, s))
}

/// Whether the ticket holder belongs in a private room: staff everywhere;
/// a backstage's speakers; the private room's speakers of the whole event.
pub fn invited(ev: &Event, ticket: &Ticket, p: &Planned) -> bool {
    if ticket.is_staff() {
        return true;
    }
    let Some(room) = p.room.as_deref().and_then(|n| ev.room(n)) else {
        return false;
    };
    match (room.kind, p.backstage) {
        (RoomKind::Session, true) => speaks_in(ev, ticket, room),
        (RoomKind::Private, _) => ev.sessions.iter().any(|s| is_speaker(ticket, s)),
        _ => false,
    }
}

/// The power level of a ticket holder in a planned room: 50 (moderator)
/// for staff everywhere and for a session room's speakers in it and its
/// backstage; else none (the room's default).
pub fn power(ev: &Event, ticket: &Ticket, p: &Planned) -> Option<i64> {
    if ticket.is_staff() {
        return Some(50);
    }
    let room = p.room.as_deref().and_then(|n| ev.room(n))?;
    (room.kind == RoomKind::Session && speaks_in(ev, ticket, room)).then_some(50)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::TicketRole;

    fn event() -> Event {
        let dir = std::env::temp_dir().join(format!(
            "venue-chat-plan-{}",
            conference::protocol::hex(&crate::random_bytes::<6>())
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("schedule.xml"),
            r#"<?xml version="1.0"?><schedule><conference><title>T</title><time_zone_name>UTC</time_zone_name></conference>
<day index="1" date="2030-05-02"><room name="Main Track">
<event guid="a" id="1"><date>2030-05-02T10:00:00+00:00</date><start>10:00</start><duration>01:00</duration><room>Main Track</room><title>First</title><type>Talk</type><persons><person id="1">Ada Lovelace</person></persons></event>
<event guid="b" id="2"><date>2030-05-02T11:00:00+00:00</date><start>11:00</start><duration>01:00</duration><room>Main Track</room><title>Second</title><type>Talk</type><persons><person id="2">Bob</person></persons></event>
</room></day></schedule>"#,
        )
        .unwrap();
        let p = dir.join("event.toml");
        std::fs::write(
            &p,
            r#"id = "conf"
name = "Conf"
timezone = "UTC"
domain = "conf.example.org"
attendees = 10
schedule = "schedule.xml"
[[day]]
date = "2030-05-02"
open = "08:00"
close = "20:00"
[[room]]
name = "Main Track"
kind = "session"
backend = "bbb"
peak = 10
[[room]]
name = "Hallway"
kind = "hack"
backend = "bbb"
peak = 10
[[room]]
name = "Staff"
kind = "staff"
backend = "bbb"
peak = 5
"#,
        )
        .unwrap();
        let ev = Event::load(&p).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        ev
    }

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        use chrono::TimeZone;
        Utc.with_ymd_and_hms(2030, 5, 2, h, m, 0).unwrap()
    }

    fn ticket(name: &str, role: TicketRole) -> Ticket {
        Ticket {
            id: 1,
            email: "x@example.org".into(),
            name: Some(name.into()),
            role,
            tz: None,
        }
    }

    #[test]
    fn a_space_a_room_per_room_and_a_backstage_per_session_room() {
        let ev = event();
        let plan = rooms(&ev).unwrap();
        let aliases: Vec<(&str, Kind)> = plan.iter().map(|p| (p.alias.as_str(), p.kind)).collect();
        assert_eq!(
            aliases,
            [
                ("conf", Kind::Space),
                ("main-track", Kind::Public),
                ("main-track-backstage", Kind::Private),
                ("hallway", Kind::Public),
                ("staff", Kind::Private),
            ]
        );
    }

    #[test]
    fn the_topic_follows_the_session_on_now() {
        let ev = event();
        let plan = rooms(&ev).unwrap();
        let main = &plan[1];
        assert_eq!(
            topic(&ev, main, at(9, 0)),
            "Next: First — Ada Lovelace (Thu 2 May 10:00 UTC)"
        );
        assert_eq!(
            topic(&ev, main, at(10, 30)),
            "Now: First — Ada Lovelace (until 11:00 UTC)"
        );
        assert_eq!(
            topic(&ev, main, at(11, 0)),
            "Now: Second — Bob (until 12:00 UTC)"
        );
        assert_eq!(
            topic(&ev, main, at(12, 0)),
            "Nothing more is scheduled here."
        );
        assert!(topic(&ev, &plan[2], at(10, 30)).starts_with("Backstage of Main Track"));
        assert_eq!(topic(&ev, &plan[3], at(10, 30)), "Hack room, open all day.");
    }

    #[test]
    fn speakers_and_staff_in_the_backstage_and_moderating() {
        let ev = event();
        let plan = rooms(&ev).unwrap();
        let (main, back, hall, staff) = (&plan[1], &plan[2], &plan[3], &plan[4]);
        let ada = ticket("Ada Lovelace", TicketRole::Attendee);
        let eve = ticket("Eve", TicketRole::Attendee);
        let carol = ticket("Carol", TicketRole::Staff);
        assert!(invited(&ev, &ada, back) && !invited(&ev, &eve, back));
        assert!(!invited(&ev, &ada, staff) && invited(&ev, &carol, staff));
        assert!(invited(&ev, &carol, back));
        assert_eq!(power(&ev, &ada, main), Some(50));
        assert_eq!(power(&ev, &ada, hall), None);
        assert_eq!(power(&ev, &eve, main), None);
        assert_eq!(power(&ev, &carol, hall), Some(50));
    }
}
