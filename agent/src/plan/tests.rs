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
