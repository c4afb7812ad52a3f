use std::path::Path;

use conference::Event;
use proptest::prelude::*;

use super::prices::PriceTable;
use super::*;

/// Rooms as one meeting each (`audience = "interactive"`), as these tests
/// were written before stages and streams; see [`event_with_audience`].
fn event_with(rooms: &[(u32, bool, &str)], attendees: u32, days: u32) -> Event {
    let rooms: Vec<_> = rooms
        .iter()
        .map(|(p, w, b)| (*p, *w, *b, "audience = \"interactive\"\n"))
        .collect();
    event_with_audience(&rooms, attendees, days)
}

/// Rooms (peak, webcams, backend, extra TOML lines for the room).
fn event_with_audience(rooms: &[(u32, bool, &str, &str)], attendees: u32, days: u32) -> Event {
    let mut s = format!(
        "id = \"p\"\nname = \"P\"\ntimezone = \"UTC\"\ndomain = \"p.example.org\"\nattendees = {attendees}\n"
    );
    for d in 0..days {
        s += &format!(
            "[[day]]\ndate = \"2024-06-{:02}\"\nopen = \"09:00\"\nclose = \"17:30\"\n",
            d + 1
        );
    }
    for (i, (peak, webcams, backend, extra)) in rooms.iter().enumerate() {
        s += &format!("[[room]]\nname = \"R{i}\"\nkind = \"session\"\nbackend = \"{backend}\"\npeak = {peak}\nwebcams = {webcams}\n{extra}");
    }
    Event::parse(Path::new("event.toml"), &s).expect("generated event is valid")
}

fn servers(plan: &Plan, role: Role) -> u32 {
    plan.servers
        .iter()
        .filter(|g| g.role == role)
        .map(|g| g.count)
        .sum()
}

#[test]
fn lpc_2020_plans_between_three_and_seven_bbb_servers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let event = Event::load(&root.join("hosts/lpc-2020/event.toml")).unwrap();
    let plan = plan(&event, &PriceTable::bundled()).unwrap();
    let bbb = servers(&plan, Role::Bbb);
    assert!((3..=7).contains(&bbb), "{bbb} BigBlueButton servers");
    assert_eq!(servers(&plan, Role::Jitsi), 0);
    assert_eq!(servers(&plan, Role::Coturn), 1);
    assert_eq!(servers(&plan, Role::Portal), 1);
    assert!(plan.total_micro_eur > 0);
    assert!(
        plan.warnings
            .iter()
            .any(|w| w.contains("Refereed Track") && w.contains("130")),
        "{:?}",
        plan.warnings
    );
    // Five days kept overnight: 14:00 UTC on day 1 minus warm-up to 18:00 UTC on day 5 plus grace.
    let bbb_group = plan.servers.iter().find(|g| g.role == Role::Bbb).unwrap();
    assert_eq!(bbb_group.hours, 4 * 24 + 4 + 1 + 1);
}

#[test]
fn nixcon_2020_releases_media_servers_overnight() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let event = Event::load(&root.join("hosts/nixcon-2020/event.toml")).unwrap();
    let plan = plan(&event, &PriceTable::bundled()).unwrap();
    assert_eq!(servers(&plan, Role::Bbb), 0);
    assert_eq!(servers(&plan, Role::Jitsi), 1);
    let jitsi = plan.servers.iter().find(|g| g.role == Role::Jitsi).unwrap();
    // Three windows (6 h, 6 h, 5 h of opening, + 1 h warm-up + 0.5 h grace each).
    assert_eq!(jitsi.windows.len(), 3);
    assert_eq!(jitsi.hours, 8 + 8 + 7);
    let portal = plan
        .servers
        .iter()
        .find(|g| g.role == Role::Portal)
        .unwrap();
    assert_eq!(portal.windows.len(), 1);
    assert!(portal.hours > 48);
}

#[test]
fn fleet_names_servers_by_event_role_and_number() {
    let event = event_with(
        &[
            (120, false, "bbb"),
            (120, false, "bbb"),
            (100, true, "jitsi"),
            (200, true, "jitsi"),
        ],
        1000,
        1,
    );
    let plan = plan(&event, &PriceTable::bundled()).unwrap();
    let names: Vec<String> = plan.fleet().into_iter().map(|s| s.name).collect();
    assert_eq!(
        names,
        [
            "p-bbb-1",
            "p-bbb-2",
            "p-jitsi-1",
            "p-jvb-1",
            "p-jvb-2",
            "p-coturn-1",
            "p-portal-1"
        ]
    );
}

#[test]
fn static_hosts_count_as_capacity() {
    let base = event_with(&[(60, true, "jitsi"), (60, true, "jitsi")], 200, 1);
    let without = plan(&base, &PriceTable::bundled()).unwrap();
    assert_eq!(
        servers(&without, Role::Jitsi) + servers(&without, Role::Jvb),
        1
    );
    let mut with = base.clone();
    with.static_hosts.push(conference::StaticHost {
        name: "coop".into(),
        address: "192.0.2.1".into(),
        ssh_port: 22,
        host_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA".into(),
        roles: vec![Role::Jitsi, Role::Coturn],
        cores: 8,
        configuration: None,
    });
    let p = plan(&with, &PriceTable::bundled()).unwrap();
    assert_eq!(
        servers(&p, Role::Jitsi),
        0,
        "the co-op host is the main Jitsi host"
    );
    assert_eq!(servers(&p, Role::Jvb), 0, "and carries 120 participants");
    assert_eq!(servers(&p, Role::Coturn), 0);
    assert!(p.total_micro_eur < without.total_micro_eur);
}

#[test]
fn a_missing_price_is_an_error_not_a_zero() {
    let event = event_with(&[(10, false, "bbb")], 10, 1);
    let empty = PriceTable::from_entries("api", "2026-11-23", []);
    let e = plan(&event, &empty).unwrap_err().to_string();
    assert!(e.contains("no price for server type ccx33"), "{e}");
}

#[test]
fn a_room_too_big_for_one_server_is_warned_about() {
    let event = event_with(&[(180, true, "bbb")], 500, 1);
    let p = plan(&event, &PriceTable::bundled()).unwrap();
    assert!(
        p.warnings.iter().any(|w| w.contains("cannot span servers")),
        "{:?}",
        p.warnings
    );
}

#[test]
fn rooms_bigger_than_a_meeting_get_a_stage_and_stream_edges() {
    // A hall of 800, two of 400 and 300, on BigBlueButton, one day 09:00-17:30.
    let event = event_with_audience(
        &[
            (800, false, "bbb", ""),
            (400, false, "bbb", ""),
            (300, false, "bbb", ""),
        ],
        2000,
        1,
    );
    let p = plan(&event, &PriceTable::bundled()).unwrap();
    assert!(
        !p.warnings
            .iter()
            .any(|w| w.contains("cannot span servers") || w.contains("advises at most")),
        "{:?}",
        p.warnings
    );
    assert_eq!(
        p.warnings
            .iter()
            .filter(|w| w.contains("planned as a stage"))
            .count(),
        3,
        "{:?}",
        p.warnings
    );
    let s = p.streams.as_ref().expect("a stream plan");
    // Three stages of 10 with webcams: 30 × 4 units on one BBB server.
    assert_eq!(servers(&p, Role::Bbb), 1);
    assert_eq!(s.viewers, 790 + 390 + 290);
    assert_eq!(s.viewers_per_server, 280, "1 Gbit/s × 70% ÷ 2.5 Mbit/s");
    assert_eq!(s.bandwidth_mbit, 1470 * 5 / 2);
    assert_eq!(s.edges, 6, "1470 viewers ÷ 280 per edge, rounded up");
    assert_eq!(servers(&p, Role::Stream), 1);
    assert_eq!(servers(&p, Role::Edge), 6);
    // 8.5 hours open, no schedule: every viewer for all of it.
    let seconds = 8 * 3600 + 1800;
    assert_eq!(s.traffic_bytes, 1470 * 2_500_000 / 8 * seconds);
    // 10 started hours of 7 servers, each 20 TiB a month, 730 hours a month.
    assert_eq!(s.included_bytes, 7 * (21_990_232_555_520 / 730 * 10));
    let tb = 1u64 << 40;
    assert_eq!(
        s.overage_tb,
        (s.traffic_bytes - s.included_bytes).div_ceil(tb)
    );
    assert_eq!(s.traffic_micro_eur, s.overage_tb * 1_000_000);
    let servers_cost: u64 = p.servers.iter().map(|g| g.cost_micro_eur).sum();
    assert_eq!(p.total_micro_eur, servers_cost + s.traffic_micro_eur);
    let json = serde_json::to_value(&p).unwrap();
    assert_eq!(json["streams"]["edges"], 6);
    assert_eq!(json["streams"]["rooms"][0]["viewers"], 790);
}

#[test]
fn one_origin_is_enough_for_a_small_audience_and_external_streams_cost_nothing() {
    let small = event_with_audience(
        &[(200, false, "bbb", "audience = \"stream\"\nstage = 5\n")],
        300,
        1,
    );
    let p = plan(&small, &PriceTable::bundled()).unwrap();
    let s = p.streams.as_ref().unwrap();
    assert_eq!((s.viewers, s.edges), (195, 0));
    assert_eq!((servers(&p, Role::Stream), servers(&p, Role::Edge)), (1, 0));
    assert!(
        !p.warnings.iter().any(|w| w.contains("planned as a stage")),
        "explicit, no note"
    );

    let external = event_with_audience(
        &[(
            900,
            false,
            "jitsi",
            "stream = \"https://cdn.example.org/hall\"\naudience = \"stream\"\n",
        )],
        1000,
        1,
    );
    let p = plan(&external, &PriceTable::bundled()).unwrap();
    let s = p.streams.as_ref().unwrap();
    assert_eq!((s.viewers, s.edges, s.traffic_bytes), (0, 0, 0));
    assert_eq!(s.rooms[0].served_by, "https://cdn.example.org/hall");
    assert_eq!((servers(&p, Role::Stream), servers(&p, Role::Edge)), (0, 0));
}

#[test]
fn interactive_keeps_one_meeting_and_its_warning() {
    let event = event_with_audience(
        &[(800, false, "bbb", "audience = \"interactive\"\n")],
        900,
        1,
    );
    let p = plan(&event, &PriceTable::bundled()).unwrap();
    assert!(p.streams.is_none());
    assert!(
        p.warnings.iter().any(|w| w.contains("cannot span servers")),
        "{:?}",
        p.warnings
    );
}

#[test]
fn traffic_outside_the_bundled_locations_is_named_not_zeroed_silently() {
    let mut event = event_with_audience(&[(800, false, "bbb", "")], 900, 1);
    event.cloud.location = "ash".into();
    let p = plan(&event, &PriceTable::bundled()).unwrap();
    assert_eq!(p.streams.as_ref().unwrap().traffic_micro_eur, 0);
    assert!(
        p.warnings.iter().any(|w| w.contains("no traffic price")),
        "{:?}",
        p.warnings
    );
}

fn arb_rooms() -> impl Strategy<Value = Vec<(u32, bool, &'static str)>> {
    prop::collection::vec(
        (
            0u32..400,
            any::<bool>(),
            prop::sample::select(vec!["bbb", "jitsi"]),
        ),
        1..12,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn more_attendees_never_fewer_servers_or_lower_cost(
        rooms in arb_rooms(),
        attendees in 0u32..5000,
        more_people in prop::collection::vec(0u32..200, 12),
        more_registered in 0u32..5000,
        days in 1u32..4,
    ) {
        let before = plan(&event_with(&rooms, attendees, days), &PriceTable::bundled()).unwrap();
        let grown: Vec<_> = rooms.iter().zip(&more_people).map(|((p, w, b), m)| (p + m, *w, *b)).collect();
        let after = plan(&event_with(&grown, attendees + more_registered, days), &PriceTable::bundled()).unwrap();
        for role in Role::ALL {
            // Jitsi main + bridges together: a static main host can shift one between them.
            if role == Role::Jvb { continue; }
            let count = |p: &Plan| if role == Role::Jitsi { servers(p, Role::Jitsi) + servers(p, Role::Jvb) } else { servers(p, role) };
            prop_assert!(count(&after) >= count(&before), "{role}: {} -> {}", count(&before), count(&after));
        }
        prop_assert!(after.total_micro_eur >= before.total_micro_eur);
    }

    #[test]
    fn cost_is_started_hours_times_price(rooms in arb_rooms(), attendees in 0u32..5000, days in 1u32..4) {
        let p = plan(&event_with(&rooms, attendees, days), &PriceTable::bundled()).unwrap();
        let mut total = 0u64;
        for g in &p.servers {
            let hours: u32 = g.windows.iter().map(|w| w.started_hours()).sum();
            prop_assert_eq!(hours, g.hours);
            let price = PriceTable::bundled().get(&g.server_type, &g.location).unwrap();
            prop_assert_eq!(g.cost_micro_eur, u64::from(g.count) * u64::from(hours) * price.hourly_micro_eur);
            total += g.cost_micro_eur;
        }
        prop_assert_eq!(p.total_micro_eur, total);
        prop_assert_eq!(p.fleet().len() as u32, p.server_count());
    }

    #[test]
    fn a_bigger_audience_never_means_fewer_edges_or_less_cost(
        peaks in prop::collection::vec(11u32..3000, 1..5),
        more in prop::collection::vec(0u32..2000, 5),
    ) {
        let rooms = |ps: &[u32]| -> Vec<(u32, bool, &'static str, &'static str)> {
            ps.iter().map(|p| (*p, false, "bbb", "audience = \"stream\"\n")).collect()
        };
        let before = plan(&event_with_audience(&rooms(&peaks), 100, 1), &PriceTable::bundled()).unwrap();
        let grown: Vec<u32> = peaks.iter().zip(&more).map(|(p, m)| p + m).collect();
        let after = plan(&event_with_audience(&rooms(&grown), 100, 1), &PriceTable::bundled()).unwrap();
        let (b, a) = (before.streams.unwrap(), after.streams.unwrap());
        prop_assert!(a.edges >= b.edges);
        prop_assert!(a.traffic_micro_eur >= b.traffic_micro_eur);
        prop_assert!(after.total_micro_eur >= before.total_micro_eur);
        prop_assert!(a.edges as u64 * a.viewers_per_server >= a.viewers || a.edges == 0);
    }
}

// ----- measured peaks (plan::measured) -----

fn watched(rooms: &[(&str, u32)], minutes: i64) -> measured::Measured {
    let start: chrono::DateTime<chrono::Utc> = "2024-06-01T09:00:00Z".parse().unwrap();
    let mut m = measured::Measured {
        event: "p".into(),
        ..Default::default()
    };
    let samples: Vec<measured::Sample> = rooms
        .iter()
        .map(|(room, people)| measured::Sample {
            room: (*room).into(),
            people: *people,
        })
        .collect();
    measured::merge(&mut m, &samples, start);
    measured::merge(&mut m, &samples, start + chrono::Duration::minutes(minutes));
    m
}

#[test]
fn a_measured_peak_sizes_its_room_and_the_report_says_so() {
    // Two rooms of 150 listeners: 600 units, two BBB servers.
    let event = event_with(&[(150, false, "bbb"), (150, false, "bbb")], 300, 1);
    let declared = plan(&event, &PriceTable::bundled()).unwrap();
    assert_eq!(servers(&declared, Role::Bbb), 2);
    assert!(declared
        .peaks
        .iter()
        .all(|p| p.source == measured::Source::Declared && p.measured.is_none()));

    // R0 had 40 at most over two hours: 380 units, still two.
    let m = watched(&[("r0", 40)], 120);
    let p = plan_measured(&event, &PriceTable::bundled(), Some(&m)).unwrap();
    assert_eq!(p.peaks[0].source, measured::Source::Measured);
    assert_eq!((p.peaks[0].declared, p.peaks[0].used), (150, 40));
    assert_eq!(p.peaks[1].source, measured::Source::Declared);
    // Both measured low: one server.
    let m = watched(&[("r0", 40), ("r1", 60)], 120);
    let p = plan_measured(&event, &PriceTable::bundled(), Some(&m)).unwrap();
    assert_eq!(servers(&p, Role::Bbb), 1);
    let json = report::json(&p);
    assert_eq!(json["peaks"][1]["source"], "measured");
    assert_eq!(json["peaks"][1]["declared"], 150);
    assert_eq!(json["peaks"][1]["used"], 60);
    let table = report::table(&p, &event);
    assert!(
        table.contains("people: 0 room(s) as declared in event.toml, 2 as measured"),
        "{table}"
    );
    assert!(table.contains("R1: 60 measured (declared 150)"), "{table}");

    // Watched for ten minutes: too short to use, and said so.
    let m = watched(&[("r0", 40)], 10);
    let p = plan_measured(&event, &PriceTable::bundled(), Some(&m)).unwrap();
    assert_eq!(servers(&p, Role::Bbb), 2);
    assert_eq!(p.peaks[0].source, measured::Source::Declared);
    let table = report::table(&p, &event);
    assert!(
        table.contains("R0: 150 declared (measured 40 not used: watched for 10 minutes"),
        "{table}"
    );
}

#[test]
fn a_streamed_rooms_stage_is_not_its_audience() {
    let event = event_with_audience(&[(400, false, "bbb", "")], 400, 1);
    let m = watched(&[("r0", 8)], 120);
    let p = plan_measured(&event, &PriceTable::bundled(), Some(&m)).unwrap();
    assert_eq!(p.peaks[0].used, 400);
    assert!(p.peaks[0].note.as_deref().unwrap().contains("streamed"));
    assert_eq!(
        p.streams.as_ref().unwrap().viewers,
        plan(&event, &PriceTable::bundled())
            .unwrap()
            .streams
            .unwrap()
            .viewers
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn more_measured_people_never_fewer_servers(
        rooms in arb_rooms(),
        measured_people in prop::collection::vec(0u32..300, 12),
        more in prop::collection::vec(0u32..200, 12),
    ) {
        let event = event_with(&rooms, 1000, 1);
        let slugs: Vec<String> = event.rooms.iter().map(|r| r.slug.clone()).collect();
        let of = |people: &[u32]| {
            let pairs: Vec<(&str, u32)> = slugs.iter().map(String::as_str).zip(people.iter().copied()).collect();
            watched(&pairs, 120)
        };
        let grown: Vec<u32> = measured_people.iter().zip(&more).map(|(a, b)| a + b).collect();
        let before = plan_measured(&event, &PriceTable::bundled(), Some(&of(&measured_people))).unwrap();
        let after = plan_measured(&event, &PriceTable::bundled(), Some(&of(&grown))).unwrap();
        for role in [Role::Bbb, Role::Coturn, Role::Portal] {
            prop_assert!(servers(&after, role) >= servers(&before, role), "{role}");
        }
        let jitsi = |p: &Plan| servers(p, Role::Jitsi) + servers(p, Role::Jvb);
        prop_assert!(jitsi(&after) >= jitsi(&before));
        prop_assert!(after.total_micro_eur >= before.total_micro_eur);
    }
}

// ----- the chat (Synapse) -----

/// One room of 50, `attendees` registered, and `chat` as the event's
/// `chat` key or `[chat]` table.
fn event_with_chat(chat: &str, attendees: u32) -> Event {
    let s = format!(
        "id = \"p\"\nname = \"P\"\ntimezone = \"UTC\"\ndomain = \"p.example.org\"\nattendees = {attendees}\n{chat}\n\
         [[day]]\ndate = \"2024-06-01\"\nopen = \"09:00\"\nclose = \"17:30\"\n\
         [[day]]\ndate = \"2024-06-02\"\nopen = \"09:00\"\nclose = \"17:30\"\n\
         [[room]]\nname = \"R0\"\nkind = \"session\"\npeak = 50\n"
    );
    Event::parse(Path::new("event.toml"), &s).expect("generated event is valid")
}

#[test]
fn the_chat_is_planned_only_when_the_event_runs_its_homeserver() {
    for chat in [
        "",
        "chat = \"https://matrix.to/#/#p:example.org\"",
        "[chat]\nenable = false",
    ] {
        let p = plan(&event_with_chat(chat, 300), &PriceTable::bundled()).unwrap();
        assert_eq!(servers(&p, Role::Chat), 0, "{chat:?}");
        assert!(!report::table(&p, &event_with_chat(chat, 300)).contains("\nchat "));
    }

    let event = event_with_chat("[chat]\nenable = true", 300);
    let p = plan(&event, &PriceTable::bundled()).unwrap();
    assert_eq!(servers(&p, Role::Chat), 1);
    let chat = p.servers.iter().find(|g| g.role == Role::Chat).unwrap();
    let portal = p.servers.iter().find(|g| g.role == Role::Portal).unwrap();
    // Up as long as the portal, whose login it uses.
    assert_eq!(chat.windows, portal.windows);
    assert_eq!(chat.hours, portal.hours);
    assert_eq!(chat.server_type, cost_model::CHAT_SERVER_TYPE);
    let price = PriceTable::bundled().get("cx33", "fsn1").unwrap();
    assert_eq!(
        chat.cost_micro_eur,
        u64::from(chat.hours) * price.hourly_micro_eur
    );
    assert_eq!(
        p.total_micro_eur,
        p.servers.iter().map(|g| g.cost_micro_eur).sum::<u64>()
    );
    let names: Vec<String> = p.fleet().into_iter().map(|s| s.name).collect();
    assert!(names.contains(&"p-chat-1".to_owned()), "{names:?}");

    let table = report::table(&p, &event);
    let line = table
        .lines()
        .find(|l| l.starts_with("chat "))
        .unwrap_or_else(|| panic!("no chat line in\n{table}"));
    assert!(line.contains("cx33"), "{line}");
    assert!(
        line.contains(&prices::eur_text(chat.cost_micro_eur)),
        "{line}"
    );
    assert_eq!(
        report::json(&p)["servers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["role"] == "chat")
            .count(),
        1
    );
}

#[test]
fn a_bigger_or_federated_chat_gets_the_larger_server() {
    let ty = |chat: &str, attendees| {
        let p = plan(&event_with_chat(chat, attendees), &PriceTable::bundled()).unwrap();
        let g = p.servers.iter().find(|g| g.role == Role::Chat).unwrap();
        (
            g.server_type.clone(),
            p.warnings.iter().any(|w| w.contains("possible users")),
        )
    };
    assert_eq!(ty("[chat]\nenable = true", 500), ("cx33".into(), false));
    assert_eq!(ty("[chat]\nenable = true", 501), ("ccx33".into(), false));
    assert_eq!(ty("[chat]\nenable = true", 3000), ("ccx33".into(), true));
    assert_eq!(
        ty("[chat]\nenable = true\nfederation = true", 100),
        ("ccx33".into(), false)
    );
}

#[test]
fn a_static_chat_host_means_no_rented_one() {
    let mut event = event_with_chat("[chat]\nenable = true", 300);
    event.static_hosts.push(conference::StaticHost {
        name: "coop".into(),
        address: "192.0.2.5".into(),
        ssh_port: 22,
        host_key: "ssh-ed25519 AAAA".into(),
        roles: vec![Role::Chat],
        cores: 4,
        configuration: None,
    });
    let p = plan(&event, &PriceTable::bundled()).unwrap();
    assert_eq!(servers(&p, Role::Chat), 0);
}
