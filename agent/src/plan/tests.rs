use std::path::Path;

use conference::Event;
use proptest::prelude::*;

use super::prices::PriceTable;
use super::*;

fn event_with(rooms: &[(u32, bool, &str)], attendees: u32, days: u32) -> Event {
    let mut s = format!(
        "id = \"p\"\nname = \"P\"\ntimezone = \"UTC\"\ndomain = \"p.example.org\"\nattendees = {attendees}\n"
    );
    for d in 0..days {
        s += &format!(
            "[[day]]\ndate = \"2024-06-{:02}\"\nopen = \"09:00\"\nclose = \"17:30\"\n",
            d + 1
        );
    }
    for (i, (peak, webcams, backend)) in rooms.iter().enumerate() {
        s += &format!("[[room]]\nname = \"R{i}\"\nkind = \"session\"\nbackend = \"{backend}\"\npeak = {peak}\nwebcams = {webcams}\n");
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
}
