use std::path::Path;

use chrono::{TimeZone, Utc};

use super::parse;
use crate::event::Event;

fn event() -> Event {
    let toml = r#"
id = "t"
name = "Test"
timezone = "Europe/Berlin"
domain = "t.example.org"
attendees = 10

[[day]]
date = "2021-03-27"
open = "10:00"
close = "23:00"

[[day]]
date = "2021-03-28"
open = "10:00"
close = "18:00"

[[room]]
name = "Main Hall"
kind = "session"
peak = 50

[[room]]
name = "Hack"
kind = "hack"
backend = "jitsi"
peak = 10
"#;
    Event::parse(Path::new("event.toml"), toml).expect("test event is valid")
}

fn frab(events: &str) -> String {
    format!(
        r#"<?xml version="1.0"?>
<schedule>
  <conference><title>T</title><time_zone_name>Europe/Berlin</time_zone_name></conference>
  <day index="1" date="2021-03-27">
    <room name="Main Hall">
{events}
    </room>
  </day>
</schedule>"#
    )
}

fn frab_event(guid: &str, date: &str, start: &str, duration: &str, title: &str) -> String {
    format!(
        r#"      <event guid="{guid}" id="1">
        <date>{date}</date><start>{start}</start><duration>{duration}</duration>
        <room>Main Hall</room><title>{title}</title><track>Core</track><type>Talk</type>
        <persons><person id="1">Ada</person><person id="2">Grace</person></persons>
      </event>"#
    )
}

#[test]
fn frab_dates_with_offsets_become_utc() {
    let xml = frab(&frab_event(
        "a",
        "2021-03-27T10:00:00+01:00",
        "10:00",
        "00:45",
        "Opening",
    ));
    let s = parse(Path::new("schedule.xml"), &xml, &event()).unwrap();
    assert_eq!(s.len(), 1);
    assert_eq!(
        s[0].start,
        Utc.with_ymd_and_hms(2021, 3, 27, 9, 0, 0).unwrap()
    );
    assert_eq!(
        s[0].end,
        Utc.with_ymd_and_hms(2021, 3, 27, 9, 45, 0).unwrap()
    );
    assert_eq!(s[0].persons, vec!["Ada", "Grace"]);
    assert_eq!(s[0].track.as_deref(), Some("Core"));
}

#[test]
fn frab_offset_in_the_file_wins_over_the_event_zone() {
    // Written in UTC-4 although the event is in Berlin: 14:00 UTC.
    let xml = frab(&frab_event(
        "a",
        "2021-03-27T10:00:00-04:00",
        "10:00",
        "01:00",
        "Remote keynote",
    ));
    let s = parse(Path::new("schedule.xml"), &xml, &event()).unwrap();
    assert_eq!(
        s[0].start,
        Utc.with_ymd_and_hms(2021, 3, 27, 14, 0, 0).unwrap()
    );
}

#[test]
fn frab_without_date_uses_day_and_zone_across_a_dst_change() {
    // 28 March 2021: Berlin moves from +01:00 to +02:00 at 02:00.
    let xml = r#"<schedule><conference><time_zone_name>Europe/Berlin</time_zone_name></conference>
      <day date="2021-03-28"><room name="Main Hall">
        <event id="7"><start>11:00</start><duration>00:30</duration><title>After the change</title></event>
      </room></day></schedule>"#;
    let s = parse(Path::new("schedule.xml"), xml, &event()).unwrap();
    assert_eq!(s[0].guid, "7");
    assert_eq!(s[0].room, "Main Hall");
    assert_eq!(
        s[0].start,
        Utc.with_ymd_and_hms(2021, 3, 28, 9, 0, 0).unwrap()
    );
}

#[test]
fn frab_session_crossing_midnight_ends_the_next_day() {
    let xml = frab(&frab_event(
        "late",
        "2021-03-27T23:30:00+01:00",
        "23:30",
        "01:15",
        "Night owls",
    ));
    let s = parse(Path::new("schedule.xml"), &xml, &event()).unwrap();
    assert_eq!(
        s[0].start,
        Utc.with_ymd_and_hms(2021, 3, 27, 22, 30, 0).unwrap()
    );
    assert_eq!(
        s[0].end,
        Utc.with_ymd_and_hms(2021, 3, 27, 23, 45, 0).unwrap()
    );
}

#[test]
fn frab_session_after_midnight_belongs_to_the_evening_before() {
    // 01:00 on the 29th is still the 28th's evening (day change at 06:00).
    let xml = frab(&frab_event(
        "party",
        "2021-03-29T01:00:00+02:00",
        "01:00",
        "01:00",
        "Party",
    ));
    let s = parse(Path::new("schedule.xml"), &xml, &event()).unwrap();
    assert_eq!(s.len(), 1);
    // But 07:00 on the 29th is a day the event does not have.
    let xml = frab(&frab_event(
        "x",
        "2021-03-29T07:00:00+02:00",
        "07:00",
        "01:00",
        "Too late",
    ));
    let e = parse(Path::new("schedule.xml"), &xml, &event()).unwrap_err();
    assert!(e.message.contains("outside the event days"), "{e}");
    assert!(e.message.contains("Too late"), "{e}");
}

#[test]
fn frab_unknown_room_is_named_with_its_position() {
    let xml = frab(
        &frab_event("a", "2021-03-27T10:00:00+01:00", "10:00", "00:45", "Lost")
            .replace("<room>Main Hall</room>", "<room>Main Hal</room>"),
    );
    let e = parse(Path::new("schedule.xml"), &xml, &event()).unwrap_err();
    assert!(e.message.contains("room `Main Hal`"), "{e}");
    assert!(e.message.contains("did you mean `Main Hall`"), "{e}");
    assert_eq!(e.line, 6, "{e}");
    assert_eq!(e.column, 7, "{e}");
}

#[test]
fn frab_room_names_match_ignoring_case_and_punctuation() {
    let xml = frab(
        &frab_event("a", "2021-03-27T10:00:00+01:00", "10:00", "00:45", "T")
            .replace("<room>Main Hall</room>", "<room>main-hall</room>"),
    );
    let s = parse(Path::new("schedule.xml"), &xml, &event()).unwrap();
    assert_eq!(s[0].room, "Main Hall");
}

#[test]
fn frab_malformed_xml_has_line_and_column() {
    let xml = "<schedule>\n  <day date=\"2021-03-27\">\n  </dya>\n</schedule>";
    let e = parse(Path::new("schedule.xml"), xml, &event()).unwrap_err();
    assert_eq!(e.line, 3, "{e}");
    assert!(e.message.contains("XML"), "{e}");
}

#[test]
fn frab_bad_duration_is_an_error() {
    let xml = frab(&frab_event(
        "a",
        "2021-03-27T10:00:00+01:00",
        "10:00",
        "0:75",
        "Odd",
    ));
    let e = parse(Path::new("schedule.xml"), &xml, &event()).unwrap_err();
    assert!(e.message.contains("duration"), "{e}");
}

#[test]
fn duplicate_guids_are_refused() {
    let two = format!(
        "{}\n{}",
        frab_event("same", "2021-03-27T10:00:00+01:00", "10:00", "00:45", "One"),
        frab_event("same", "2021-03-27T11:00:00+01:00", "11:00", "00:45", "Two")
    );
    let e = parse(Path::new("schedule.xml"), &frab(&two), &event()).unwrap_err();
    assert!(e.message.contains("appears twice"), "{e}");
}

fn pretalx(talks: &str) -> String {
    format!(
        r#"{{"$schema": "https://c3voc.de/schedule/schema.json",
 "schedule": {{"version": "1", "conference": {{"acronym": "t", "title": "T",
  "time_zone_name": "Europe/Berlin",
  "days": [{{"index": 1, "date": "2021-03-27", "rooms": {{"Main Hall": [{talks}]}}}}]}}}}}}"#
    )
}

fn pretalx_talk(guid: &str, date: &str, duration: &str, room: &str) -> String {
    format!(
        r#"{{"guid": "{guid}", "id": 12, "date": "{date}", "start": "x", "duration": "{duration}",
          "room": "{room}", "title": "Talk {guid}", "track": null, "type": "Talk",
          "abstract": "", "persons": [{{"code": "ABC", "public_name": "Ada L."}}, {{"name": "Grace"}}]}}"#
    )
}

#[test]
fn pretalx_json_export_is_read() {
    let json = pretalx(&format!(
        "{}, {}",
        pretalx_talk("p1", "2021-03-27T10:00:00+01:00", "00:30", "Main Hall"),
        pretalx_talk("p2", "2021-03-27T23:45:00+01:00", "00:30", "Hack")
    ));
    let s = parse(Path::new("schedule.json"), &json, &event()).unwrap();
    assert_eq!(s.len(), 2);
    assert_eq!(s[0].guid, "p1");
    assert_eq!(
        s[0].start,
        Utc.with_ymd_and_hms(2021, 3, 27, 9, 0, 0).unwrap()
    );
    assert_eq!(s[0].persons, vec!["Ada L.", "Grace"]);
    assert_eq!(s[0].summary, None);
    // Crosses midnight: 23:45 + 30 min ends at 00:15 local on the 28th.
    assert_eq!(s[1].room, "Hack");
    assert_eq!(
        s[1].end,
        Utc.with_ymd_and_hms(2021, 3, 27, 23, 15, 0).unwrap()
    );
}

#[test]
fn pretalx_unknown_room_points_at_the_talk() {
    let json = pretalx(&pretalx_talk(
        "p9",
        "2021-03-27T10:00:00+01:00",
        "00:30",
        "Ballroom",
    ));
    let e = parse(Path::new("schedule.json"), &json, &event()).unwrap_err();
    assert!(e.message.contains("room `Ballroom`"), "{e}");
    assert_eq!(e.line, 4, "{e}");
}

#[test]
fn pretalx_syntax_error_has_line_and_column() {
    let json = "{\"schedule\": {\"conference\": {\"days\": [\n  {\"date\": \"2021-03-27\" \"rooms\": {}}]}}}";
    let e = parse(Path::new("schedule.json"), json, &event()).unwrap_err();
    assert_eq!((e.line, e.column), (2, 25), "{e}");
}

#[test]
fn pretalx_session_outside_the_days_is_an_error() {
    let json = pretalx(&pretalx_talk(
        "p1",
        "2021-04-01T10:00:00+02:00",
        "00:30",
        "Main Hall",
    ));
    let e = parse(Path::new("schedule.json"), &json, &event()).unwrap_err();
    assert!(e.message.contains("outside the event days"), "{e}");
    assert!(e.message.contains("2021-04-01 10:00 CEST"), "{e}");
}

#[test]
fn neither_format_is_refused() {
    let e = parse(Path::new("schedule.txt"), "hello", &event()).unwrap_err();
    assert!(e.message.contains("not a schedule"), "{e}");
}
