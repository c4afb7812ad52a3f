//! event.toml's [vote] and [portal] tables.

use std::path::Path;

use conference::Event;

const BASE: &str = r#"
id = "demo"
name = "Demo"
timezone = "Europe/Berlin"
domain = "demo.example.org"
attendees = 100

[[day]]
date = "2024-05-01"
open = "09:00"
close = "17:00"

[[room]]
name = "Main"
kind = "session"
peak = 80
"#;

fn parse(extra: &str) -> Result<Event, String> {
    Event::parse(Path::new("event.toml"), &format!("{BASE}{extra}")).map_err(|e| e.to_string())
}

#[test]
fn defaults_without_the_tables() {
    let e = parse("").unwrap();
    assert_eq!(e.vote.votes_per_ticket, 10);
    assert!(e.vote.opens.is_none() && e.vote.closes.is_none());
    assert!(!e.portal.public_schedule);
}

#[test]
fn vote_times_and_limits() {
    let e = parse(
        "[vote]\nopens = 2024-04-01T10:00:00+02:00\ncloses = 2024-04-15T00:00:00Z\nvotes_per_ticket = 3\n[portal]\npublic_schedule = true\n",
    )
    .unwrap();
    assert_eq!(
        e.vote.opens.unwrap().to_rfc3339(),
        "2024-04-01T08:00:00+00:00"
    );
    assert_eq!(e.vote.votes_per_ticket, 3);
    assert!(e.portal.public_schedule);
    let err = parse("[vote]\nopens = 2024-04-01T10:00:00\n").unwrap_err();
    assert!(
        err.contains("with its offset") && err.contains("event.toml:18:9"),
        "{err}"
    );
    let err =
        parse("[vote]\nopens = 2024-04-02T00:00:00Z\ncloses = 2024-04-01T00:00:00Z\n").unwrap_err();
    assert!(err.contains("closes must be after opens"), "{err}");
    let err = parse("[vote]\nvotes_per_ticket = 0\n").unwrap_err();
    assert!(err.contains("between 1 and 1000"), "{err}");
    let err = parse("[vote]\nvotes = 3\n").unwrap_err();
    assert!(err.contains("votes_per_ticket"), "{err}");
    let err = parse("[portal]\npublic = true\n").unwrap_err();
    assert!(err.contains("public_schedule"), "{err}");
}
