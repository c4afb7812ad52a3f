//! event.toml: the examples load, and every kind of bad input gets one
//! message with file, line and column.

use std::path::{Path, PathBuf};

use conference::{Backend, Event, InputError, RoomKind};

const GOOD: &str = r#"
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

[[room]]
name = "Hallway"
kind = "hack"
backend = "jitsi"
peak = 20
"#;

fn parse(src: &str) -> Result<Event, InputError> {
    Event::parse(Path::new("event.toml"), src)
}

fn error(src: &str) -> InputError {
    parse(src).expect_err("the file should be refused")
}

/// Line and column of the first occurrence of `needle` in `src`.
fn position_of(src: &str, needle: &str) -> (usize, usize) {
    let offset = src.find(needle).expect("needle in source");
    conference::error::line_column(src, offset)
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[test]
fn lpc_2020_example_loads_with_its_schedule() {
    let e = Event::load(&repo().join("hosts/lpc-2020/event.toml")).unwrap();
    assert_eq!(e.days.len(), 5);
    assert_eq!(
        e.rooms
            .iter()
            .filter(|r| r.kind == RoomKind::Session)
            .count(),
        7
    );
    assert_eq!(
        e.rooms.iter().filter(|r| r.kind == RoomKind::Hack).count(),
        5
    );
    assert_eq!(e.attendees, 950);
    assert_eq!(e.sessions.len(), 21);
    // 07:00 PDT is 14:00 UTC.
    assert_eq!(
        e.sessions[0].start.to_rfc3339(),
        "2020-08-24T14:00:00+00:00"
    );
    assert!(e.rooms.iter().all(|r| r.backend == Backend::Bbb));
}

#[test]
fn nixcon_2020_example_loads_its_pretalx_schedule() {
    let e = Event::load(&repo().join("hosts/nixcon-2020/event.toml")).unwrap();
    assert_eq!(e.sessions.len(), 12);
    assert!(e.sessions.iter().all(|s| s.room == "Main Track"));
    assert!(e.rooms.iter().all(|r| r.backend == Backend::Jitsi));
}

#[test]
fn defaults_fill_what_is_left_out() {
    let e = parse(GOOD).unwrap();
    assert_eq!(e.cloud.location, "fsn1");
    assert_eq!(e.rooms[0].backend, Backend::Bbb);
    assert!(!e.rooms[0].webcams, "talks default to listen-only");
    assert!(e.rooms[1].webcams, "hack rooms default to webcams");
    assert_eq!(e.days[0].open.to_rfc3339(), "2024-05-01T07:00:00+00:00");
}

#[test]
fn toml_syntax_error_has_file_line_column() {
    let src = GOOD.replace("attendees = 100", "attendees = = 100");
    let e = error(&src);
    assert_eq!(e.file, Path::new("event.toml"));
    assert_eq!(e.line, position_of(&src, "attendees").0);
    assert!(
        e.to_string()
            .starts_with(&format!("event.toml:{}:", e.line)),
        "{e}"
    );
}

#[test]
fn unknown_key_suggests_the_close_one() {
    let src = GOOD.replace("peak = 80", "paek = 80");
    let e = error(&src);
    assert!(e.message.contains("unknown field `paek`"), "{e}");
    assert!(e.message.contains("did you mean `peak`?"), "{e}");
    assert_eq!((e.line, e.column), position_of(&src, "paek"));
}

#[test]
fn unknown_top_level_key_without_a_close_one_has_no_guess() {
    let src = GOOD.replace("attendees = 100", "attendees = 100\nsponsors = 3");
    let e = error(&src);
    assert!(e.message.contains("unknown field `sponsors`"), "{e}");
    assert!(!e.message.contains("did you mean"), "{e}");
    assert_eq!((e.line, e.column), position_of(&src, "sponsors"));
}

#[test]
fn wrong_type_is_named_at_the_value() {
    let src = GOOD.replace("peak = 80", "peak = \"eighty\"");
    let e = error(&src);
    assert!(e.message.contains("invalid type"), "{e}");
    assert_eq!((e.line, e.column), position_of(&src, "\"eighty\""));
}

#[test]
fn unknown_room_kind_lists_the_kinds() {
    let src = GOOD.replace("kind = \"hack\"", "kind = \"hackroom\"");
    let e = error(&src);
    assert!(
        e.message.contains("session") && e.message.contains("staff"),
        "{e}"
    );
    assert_eq!(e.line, position_of(&src, "\"hackroom\"").0);
}

#[test]
fn day_that_closes_before_it_opens() {
    let src = GOOD.replace("close = \"17:00\"", "close = \"08:00\"");
    let e = error(&src);
    assert!(e.message.contains("must close after it opens"), "{e}");
    assert_eq!((e.line, e.column), position_of(&src, "\"08:00\""));
}

#[test]
fn negative_attendance() {
    let src = GOOD.replace("attendees = 100", "attendees = -5");
    let e = error(&src);
    assert!(
        e.message.contains("attendees must be a whole number"),
        "{e}"
    );
    assert_eq!((e.line, e.column), position_of(&src, "-5"));
    let src = GOOD.replace("peak = 20", "peak = -1");
    let e = error(&src);
    assert_eq!((e.line, e.column), position_of(&src, "-1"));
}

#[test]
fn duplicate_room_names_even_in_other_case() {
    let src = GOOD.replace("name = \"Hallway\"", "name = \"main\"");
    let e = error(&src);
    assert!(e.message.contains("same name as room `Main`"), "{e}");
    assert_eq!((e.line, e.column), position_of(&src, "\"main\""));
}

#[test]
fn duplicate_days() {
    let src =
        format!("{GOOD}\n[[day]]\ndate = \"2024-05-01\"\nopen = \"10:00\"\nclose = \"12:00\"\n");
    let e = error(&src);
    assert!(e.message.contains("listed twice"), "{e}");
    assert_eq!(e.line, src.lines().count() - 2);
}

#[test]
fn bad_dates_times_zones_and_ids() {
    for (from, to, expect) in [
        (
            "date = \"2024-05-01\"",
            "date = \"2024-13-01\"",
            "is not a date",
        ),
        ("open = \"09:00\"", "open = \"9 am\"", "is not a time"),
        (
            "timezone = \"Europe/Berlin\"",
            "timezone = \"Europe/Berln\"",
            "did you mean `Europe/Berlin`",
        ),
        (
            "id = \"demo\"",
            "id = \"Demo Conf\"",
            "event id `Demo Conf`",
        ),
        (
            "domain = \"demo.example.org\"",
            "domain = \"demo example\"",
            "is not a domain name",
        ),
    ] {
        let src = GOOD.replace(from, to);
        let e = error(&src);
        assert!(e.message.contains(expect), "{to}: {e}");
        let value = to.split_once(" = ").unwrap().1;
        assert_eq!((e.line, e.column), position_of(&src, value), "{to}: {e}");
    }
}

#[test]
fn unknown_cloud_location_suggests_one() {
    let src = format!("{GOOD}\n[cloud]\nlocation = \"fsn\"\n");
    let e = error(&src);
    assert!(e.message.contains("did you mean `fsn1`"), "{e}");
}

#[test]
fn time_that_does_not_exist_in_the_zone() {
    // Clocks in Berlin jump from 02:00 to 03:00 on 2024-03-31.
    let src = GOOD
        .replace("2024-05-01", "2024-03-31")
        .replace("open = \"09:00\"", "open = \"02:30\"");
    let e = error(&src);
    assert!(e.message.contains("does not exist"), "{e}");
}

#[test]
fn static_host_with_a_bad_key() {
    let src = format!(
        "{GOOD}\n[[static_host]]\nname = \"coop\"\naddress = \"192.0.2.10\"\nhost_key = \"not a key\"\nroles = [\"jitsi\"]\ncores = 8\n"
    );
    let e = error(&src);
    assert!(
        e.message.contains("host_key must be an SSH public key"),
        "{e}"
    );
    assert_eq!((e.line, e.column), position_of(&src, "\"not a key\""));
}

#[test]
fn static_host_is_read() {
    let src = format!(
        "{GOOD}\n[[static_host]]\nname = \"coop\"\naddress = \"192.0.2.10\"\nhost_key = \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHxyz0123456789\"\nroles = [\"jitsi\", \"coturn\"]\ncores = 8\n"
    );
    let e = parse(&src).unwrap();
    assert_eq!(
        e.static_hosts[0].roles,
        vec![conference::Role::Jitsi, conference::Role::Coturn]
    );
    assert_eq!(e.static_hosts[0].ssh_port, 22);
}

#[test]
fn missing_schedule_file_is_named() {
    let src = GOOD.replace(
        "attendees = 100",
        "attendees = 100\nschedule = \"nope.xml\"",
    );
    let e = error(&src);
    assert!(e.message.contains("nope.xml does not exist"), "{e}");
}

#[test]
fn schedule_session_in_an_unknown_room_fails_the_event() {
    let dir = std::env::temp_dir().join(format!("venue-event-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("schedule.xml"),
        r#"<schedule><day date="2024-05-01"><room name="Ballroom"><event guid="g1"><date>2024-05-01T10:00:00+02:00</date><duration>00:30</duration><title>T</title></event></room></day></schedule>"#,
    )
    .unwrap();
    let src = GOOD.replace(
        "attendees = 100",
        "attendees = 100\nschedule = \"schedule.xml\"",
    );
    std::fs::write(dir.join("event.toml"), &src).unwrap();
    let e = Event::load(&dir.join("event.toml")).unwrap_err();
    assert!(e.file.ends_with("schedule.xml"), "{e}");
    assert!(e.message.contains("room `Ballroom`"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn no_days_or_no_rooms() {
    let src = GOOD.replace(
        "[[day]]\ndate = \"2024-05-01\"\nopen = \"09:00\"\nclose = \"17:00\"\n",
        "",
    );
    assert!(error(&src).message.contains("no days"));
}

#[test]
fn static_host_configuration_must_exist() {
    let src = format!(
        "{GOOD}\n[[static_host]]\nname = \"coop\"\naddress = \"192.0.2.10\"\nhost_key = \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHxyz0123456789\"\nroles = [\"portal\"]\ncores = 4\nconfiguration = \"coop.nix\"\n"
    );
    let e = error(&src);
    assert!(e.message.contains("coop.nix does not exist"), "{e}");
    assert_eq!((e.line, e.column), position_of(&src, "\"coop.nix\""));
    let dir = std::env::temp_dir().join(format!("venue-static-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("coop.nix"), "{ }\n").unwrap();
    let e = Event::parse(&dir.join("event.toml"), &src).unwrap();
    assert_eq!(
        e.static_hosts[0].configuration.as_deref(),
        Some(dir.join("coop.nix").canonicalize().unwrap().as_path())
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn acme_email_from_tls_or_a_mailto_contact() {
    assert_eq!(parse(GOOD).unwrap().tls.email, None, "no address given");
    let with_contact = GOOD.replace(
        "attendees = 100",
        "attendees = 100\ncontact = \"mailto:orga@demo.example.org\"",
    );
    assert_eq!(
        parse(&with_contact).unwrap().tls.email.as_deref(),
        Some("orga@demo.example.org")
    );
    let web_contact = GOOD.replace(
        "attendees = 100",
        "attendees = 100\ncontact = \"https://demo.example.org/help\"",
    );
    assert_eq!(parse(&web_contact).unwrap().tls.email, None);
    let explicit = format!("{with_contact}\n[tls]\nemail = \"noc@demo.example.org\"\n");
    assert_eq!(
        parse(&explicit).unwrap().tls.email.as_deref(),
        Some("noc@demo.example.org"),
        "[tls] email wins over the contact"
    );
}

#[test]
fn acme_email_that_is_not_an_address_is_named() {
    let src = format!("{GOOD}\n[tls]\nemail = \"noc at example\"\n");
    let e = error(&src);
    assert!(e.message.contains("not an e-mail address"), "{e}");
    assert_eq!((e.line, e.column), position_of(&src, "\"noc at example\""));
}

#[test]
fn dns_zone_and_tls_settings_are_read() {
    let e = parse(GOOD).unwrap();
    assert!(e.dns.is_none(), "no [dns]: venue writes no records");
    assert_eq!(e.tls.acme_directory, conference::event::LETS_ENCRYPT);
    assert!(e.tls.certificate.is_none());
    let src = format!(
        "{GOOD}\n[dns]\nzone = \"Example.org.\"\ntoken_env = \"HCLOUD_DNS_TOKEN\"\n[tls]\nacme_directory = \"{}\"\n",
        conference::event::LETS_ENCRYPT_STAGING
    );
    let e = parse(&src).unwrap();
    let dns = e.dns.unwrap();
    assert_eq!(dns.zone, "example.org", "lower case, no final dot");
    assert_eq!(dns.token_env.as_deref(), Some("HCLOUD_DNS_TOKEN"));
    assert_eq!(
        e.tls.acme_directory,
        "https://acme-staging-v02.api.letsencrypt.org/directory"
    );
    // The domain itself may be the zone.
    let apex = format!("{GOOD}\n[dns]\nzone = \"demo.example.org\"\n");
    assert_eq!(parse(&apex).unwrap().dns.unwrap().zone, "demo.example.org");
}

#[test]
fn a_domain_outside_the_dns_zone_is_named_at_the_zone() {
    let src = format!("{GOOD}\n[dns]\nzone = \"example.net\"\n");
    let e = error(&src);
    assert!(
        e.message
            .contains("domain `demo.example.org` is not in the zone `example.net`"),
        "{e}"
    );
    assert_eq!((e.line, e.column), position_of(&src, "\"example.net\""));
    // Not a suffix match on text: ample.org does not hold demo.example.org.
    let e = error(&format!("{GOOD}\n[dns]\nzone = \"ample.org\"\n"));
    assert!(e.message.contains("not in the zone"), "{e}");
    let e = error(&format!("{GOOD}\n[dns]\nzone = \"org\"\n"));
    assert!(e.message.contains("not a domain name"), "{e}");
    let e = error(&format!(
        "{GOOD}\n[dns]\nzone = \"example.org\"\ntoken_env = \"MY TOKEN\"\n"
    ));
    assert!(
        e.message.contains("not an environment variable name"),
        "{e}"
    );
    let e = error(&format!("{GOOD}\n[dns]\nzon = \"example.org\"\n"));
    assert!(e.message.contains("did you mean `zone`"), "{e}");
}

#[test]
fn own_certificate_needs_both_files_and_they_must_exist() {
    let dir = std::env::temp_dir().join(format!("venue-tls-files-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("event.toml");
    let write = |extra: &str| {
        std::fs::write(&file, format!("{GOOD}\n[tls]\n{extra}")).unwrap();
        Event::load(&file)
    };
    let e = write("certificate = \"chain.pem\"\n").unwrap_err();
    assert!(e.message.contains("needs its `key`"), "{e}");
    let e = write("certificate = \"chain.pem\"\nkey = \"key.pem\"\n").unwrap_err();
    assert!(e.message.contains("certificate file"), "{e}");
    assert!(e.message.contains("does not exist"), "{e}");
    std::fs::write(dir.join("chain.pem"), "x").unwrap();
    std::fs::write(dir.join("key.pem"), "x").unwrap();
    let ev = write("certificate = \"chain.pem\"\nkey = \"key.pem\"\n").unwrap();
    assert_eq!(ev.tls.certificate, Some(dir.join("chain.pem")));
    assert_eq!(ev.tls.key, Some(dir.join("key.pem")));
    let e = write("acme_directory = \"acme.example.org\"\n").unwrap_err();
    assert!(e.message.contains("is not a URL"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_streamed_room_reads_its_audience_and_stage() {
    let src = GOOD.replace("peak = 80", "peak = 80\naudience = \"stream\"\nstage = 6");
    let e = parse(&src).unwrap();
    assert_eq!(e.rooms[0].audience, Some(conference::Audience::Stream));
    assert_eq!(e.rooms[0].stage, Some(6));
    assert_eq!(e.rooms[1].audience, None, "left to the plan");
}

#[test]
fn a_stage_larger_than_the_room_or_on_an_interactive_room_is_refused() {
    let src = GOOD.replace("peak = 80", "peak = 80\naudience = \"stream\"\nstage = 81");
    let e = error(&src);
    assert!(e.message.contains("at most the room's peak (80)"), "{e}");
    assert_eq!((e.line, e.column), position_of(&src, "81"));

    let src = GOOD.replace(
        "peak = 80",
        "peak = 80\naudience = \"interactive\"\nstage = 5",
    );
    let e = error(&src);
    assert!(e.message.contains("audience = \"stream\""), "{e}");

    let src = GOOD.replace("peak = 80", "peak = 80\naudience = \"broadcast\"");
    let e = error(&src);
    assert!(
        e.message.contains("interactive") && e.message.contains("stream"),
        "{e}"
    );
}

#[test]
fn autopilot_defaults_leave_lead_and_gap_to_the_autopilot() {
    let a = parse(GOOD).unwrap().autopilot;
    assert_eq!(a.bbb, conference::event::Limits { min: 0, max: None });
    assert_eq!(a.jvb, conference::event::Limits { min: 0, max: None });
    assert_eq!(
        a.headroom_percent,
        conference::event::AUTOPILOT_HEADROOM_PERCENT
    );
    assert_eq!((a.lead, a.gap), (None, None));
}

#[test]
fn autopilot_table_is_read() {
    let src = GOOD.replace(
        "attendees = 100",
        "attendees = 100\n[autopilot]\nheadroom_percent = 35\nlead_minutes = 90\ngap_minutes = 30\nbbb = { min = 1, max = 6 }\n[autopilot.jvb]\nmax = 2",
    );
    let a = parse(&src).unwrap().autopilot;
    assert_eq!(a.headroom_percent, 35);
    assert_eq!(a.lead.map(|d| d.num_minutes()), Some(90));
    assert_eq!(a.gap.map(|d| d.num_minutes()), Some(30));
    assert_eq!(
        a.bbb,
        conference::event::Limits {
            min: 1,
            max: Some(6)
        }
    );
    assert_eq!(
        a.jvb,
        conference::event::Limits {
            min: 0,
            max: Some(2)
        }
    );
}

#[test]
fn autopilot_errors_are_named_where_they_are() {
    let with = |table: &str| {
        GOOD.replace(
            "attendees = 100",
            &format!("attendees = 100\n[autopilot]\n{table}"),
        )
    };

    let src = with("bbb = { min = 4, max = 3 }");
    let e = error(&src);
    assert!(
        e.message
            .contains("[autopilot] bbb.max is 3, below its min (4)"),
        "{e}"
    );
    assert_eq!((e.line, e.column), position_of(&src, "3 }"));

    let src = with("jvb = { min = -1 }");
    let e = error(&src);
    assert!(
        e.message
            .contains("[autopilot] jvb.min must be a whole number"),
        "{e}"
    );
    assert_eq!((e.line, e.column), position_of(&src, "-1"));

    let src = with("headroom_percent = 900");
    let e = error(&src);
    assert!(
        e.message
            .contains("headroom_percent must be from 0 to 400, not 900"),
        "{e}"
    );
    assert_eq!((e.line, e.column), position_of(&src, "900"));

    let src = with("lead_minutes = -5");
    let e = error(&src);
    assert!(e.message.contains("[autopilot] lead_minutes"), "{e}");
    assert_eq!((e.line, e.column), position_of(&src, "-5"));

    // Only the media servers are scaled; a typo gets a guess.
    let src = with("coturn = { min = 1 }");
    let e = error(&src);
    assert!(e.message.contains("unknown field `coturn`"), "{e}");
    assert_eq!((e.line, e.column), position_of(&src, "coturn"));
    let src = with("bbb = { mni = 1 }");
    let e = error(&src);
    assert!(e.message.contains("did you mean `min`?"), "{e}");
    assert_eq!((e.line, e.column), position_of(&src, "mni"));
}

#[test]
fn chat_is_a_link_or_the_events_own_homeserver() {
    // No chat: none linked, no homeserver.
    let e = parse(GOOD).unwrap();
    assert_eq!((e.chat.as_deref(), e.homeserver), (None, None));

    // A link: a chat elsewhere, linked, and nothing rented for it.
    let src = GOOD.replace(
        "attendees = 100",
        "attendees = 100\nchat = \"https://matrix.to/#/#demo:example.org\"",
    );
    let e = parse(&src).unwrap();
    assert_eq!(
        e.chat.as_deref(),
        Some("https://matrix.to/#/#demo:example.org")
    );
    assert_eq!(e.homeserver, None);

    let with = |table: &str| {
        GOOD.replace(
            "attendees = 100",
            &format!("attendees = 100\n[chat]\n{table}"),
        )
    };
    // The event's own: Element at chat.<domain> is the link.
    let e = parse(&with("enable = true")).unwrap();
    assert_eq!(e.chat.as_deref(), Some("https://chat.demo.example.org/"));
    assert_eq!(
        e.homeserver,
        Some(conference::Homeserver { federation: false })
    );
    let e = parse(&with("enable = true\nfederation = true")).unwrap();
    assert_eq!(
        e.homeserver,
        Some(conference::Homeserver { federation: true })
    );
    // Switched off: as if the table were not there.
    let e = parse(&with("enable = false")).unwrap();
    assert_eq!((e.chat.as_deref(), e.homeserver), (None, None));
}

#[test]
fn chat_table_errors_are_named_where_they_are() {
    let with = |table: &str| {
        GOOD.replace(
            "attendees = 100",
            &format!("attendees = 100\n[chat]\n{table}"),
        )
    };

    let src = with("enable = false\nfederation = true");
    let e = error(&src);
    assert!(
        e.message
            .contains("[chat] federation = true needs enable = true"),
        "{e}"
    );
    assert_eq!((e.line, e.column), position_of(&src, "true"));

    let src = with("enable = true\nfederate = true");
    let e = error(&src);
    assert!(e.message.contains("unknown field `federate`"), "{e}");
    assert_eq!(e.line, position_of(&src, "federate").0, "{e}");

    let src = with("federation = false");
    let e = error(&src);
    assert!(e.message.contains("missing field `enable`"), "{e}");

    let src = with("enable = \"yes\"");
    let e = error(&src);
    assert!(e.message.contains("invalid type: string"), "{e}");
    assert_eq!(e.line, position_of(&src, "\"yes\"").0, "{e}");

    let src = GOOD.replace("attendees = 100", "attendees = 100\nchat = 3");
    let e = error(&src);
    assert!(
        e.message
            .contains("a link to the event's chat (a string), or a [chat] table"),
        "{e}"
    );
    assert_eq!(e.line, position_of(&src, "chat = 3").0, "{e}");
}

#[test]
fn a_static_chat_host_needs_the_events_homeserver() {
    let host = "\n[[static_host]]\nname = \"coop\"\naddress = \"192.0.2.10\"\nhost_key = \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHxyz0123456789\"\nroles = [\"chat\"]\ncores = 4\n";
    let src = format!("{GOOD}{host}");
    let e = error(&src);
    assert!(
        e.message
            .contains("static host `coop` has the chat role, but the event runs no homeserver: add [chat] enable = true"),
        "{e}"
    );
    assert_eq!(e.line, position_of(&src, "roles = [\"chat\"]").0, "{e}");

    let src = format!(
        "{}{host}",
        GOOD.replace("attendees = 100", "attendees = 100\n[chat]\nenable = true")
    );
    let e = parse(&src).unwrap();
    assert_eq!(e.static_hosts[0].roles, vec![conference::Role::Chat]);
}
