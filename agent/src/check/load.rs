//! Load: the people on each BigBlueButton server (getMeetings'
//! participantCount) against what the plan gives a server, and the people
//! in each room's meeting (the portal names them `<event>-<room slug>`)
//! against the room's planned peak and what one meeting holds.

use conference::Event;

use super::bbb::{self, Meeting};
use super::{probe, Check, Outcome, Probe, Target};
use crate::plan::cost_model::BBB_USERS_PER_SERVER;

pub async fn probes(check: &Check, target: &Target) -> Vec<Probe> {
    let what = format!("HTTPS {}", target.ports.https);
    vec![
        probe(check, target, "load", &what, async {
            match bbb::call(check, target, "getMeetings", &[]).await {
                Ok(body) => judge(&check.event, &bbb::meetings(&body)),
                Err(e) => Outcome::Fail(format!("cannot read the load: {e}")),
            }
        })
        .await,
    ]
}

/// The server's people against its capacity, each room against its plan.
pub fn judge(event: &Event, meetings: &[Meeting]) -> Outcome {
    let people: u64 = meetings.iter().map(|m| m.participants).sum();
    let capacity = BBB_USERS_PER_SERVER as u64;
    let mut rooms = Vec::new();
    let mut over_limit = Vec::new();
    let mut over_plan = Vec::new();
    for m in meetings {
        let Some(room) = event
            .rooms
            .iter()
            .find(|r| m.id == format!("{}-{}", event.id, r.slug))
        else {
            continue;
        };
        rooms.push(format!("{} {}/{}", room.slug, m.participants, room.peak));
        let limit = room.backend.meeting_limit() as u64;
        if m.participants > limit {
            over_limit.push(format!(
                "{} has {} people, more than one meeting holds ({limit})",
                room.name, m.participants
            ));
        } else if m.participants > room.peak as u64 {
            over_plan.push(format!(
                "{} has {} people, planned for {}",
                room.name, m.participants, room.peak
            ));
        }
    }
    let rooms = if rooms.is_empty() {
        String::new()
    } else {
        format!("; rooms {}", rooms.join(", "))
    };
    let line = format!("{people} of {capacity} people{rooms}");
    if people > capacity {
        Outcome::Fail(format!(
            "{people} people, more than the {capacity} a server is planned for{rooms}"
        ))
    } else if !over_limit.is_empty() {
        Outcome::Fail(over_limit.join("; "))
    } else if !over_plan.is_empty() {
        Outcome::Warn(format!("{line}; {}", over_plan.join("; ")))
    } else {
        Outcome::Ok(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_above_its_planned_people_fails() {
        let event = Event::parse(
            std::path::Path::new("event.toml"),
            "id = \"ev\"\nname = \"Ev\"\ntimezone = \"UTC\"\ndomain = \"ev.example.org\"\nattendees = 10\n\
             [cloud]\nlocation = \"fsn1\"\nimage = \"ubuntu-24.04\"\n\
             [[day]]\ndate = \"2026-05-01\"\nopen = \"09:00\"\nclose = \"17:00\"\n\
             [[room]]\nname = \"Main\"\nkind = \"session\"\npeak = 10\n",
        )
        .unwrap();
        let m = |id: &str, n| Meeting {
            id: id.into(),
            participants: n,
            ..Meeting::default()
        };
        assert_eq!(
            judge(&event, &[m("ev-main", 5), m("other", 3)]),
            Outcome::Ok("8 of 150 people; rooms main 5/10".into())
        );
        assert!(matches!(
            judge(&event, &[m("ev-main", 60), m("other", 91)]),
            Outcome::Fail(msg) if msg.starts_with("151 people, more than the 150")
        ));
    }
}
