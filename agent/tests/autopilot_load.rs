//! The autopilot's load decision (autopilot::load::decide) over generated
//! venues: whatever the load, it never leaves fewer rented servers than the
//! min nor more than the max, never releases a server that holds a
//! meeting, never answers more people with fewer servers, and does not
//! flap: carrying out a decision and looking again changes nothing.

use std::collections::BTreeSet;

use chrono::Duration;
use conference::{Backend, Role};
use proptest::prelude::*;
use venue_agent::autopilot::load::{
    decide, BbbServer, Bounds, Bridge, Decision, Expected, LeadSource, MeetingLoad, Observation,
    Settings, State,
};

const ROOMS: [&str; 4] = ["a", "b", "c", "d"];

fn settings(bbb: (u32, u32), jvb: (u32, u32), headroom: u32) -> Settings {
    Settings {
        bbb: Bounds {
            min: bbb.0,
            max: bbb.1,
        },
        jvb: Bounds {
            min: jvb.0,
            max: jvb.1,
        },
        headroom_percent: headroom,
        lead: Duration::minutes(60),
        gap: Duration::minutes(120),
        lead_source: LeadSource::Event,
    }
}

fn bounds() -> impl Strategy<Value = (u32, u32)> {
    (0u32..4, 0u32..6).prop_map(|(min, extra)| (min, min + extra))
}

fn state() -> impl Strategy<Value = State> {
    prop_oneof![Just(State::Active), Just(State::Draining)]
}

fn meeting() -> impl Strategy<Value = MeetingLoad> {
    (0usize..6, 0u64..160, 0u64..40).prop_map(|(room, participants, video)| MeetingLoad {
        // Rooms of the event, and meetings of no room.
        id: ROOMS
            .get(room)
            .map_or(format!("other-{room}"), |r| format!("ev-{r}")),
        participants,
        video,
        listeners: participants / 2,
    })
}

fn bbb_server(i: usize) -> impl Strategy<Value = BbbServer> {
    (
        prop_oneof![4 => Just(None), 1 => (0u64..400).prop_map(Some)],
        state(),
        prop_oneof![1 => Just(None), 5 => prop::collection::vec(meeting(), 0..4).prop_map(Some)],
    )
        .prop_map(move |(long_lived, state, meetings)| BbbServer {
            name: format!("ev-bbb-{}", i + 1),
            long_lived_units: long_lived,
            // A long-lived host is never drained.
            state: if long_lived.is_some() {
                State::Active
            } else {
                state
            },
            meetings,
        })
}

fn bridge(i: usize) -> impl Strategy<Value = Bridge> {
    (
        any::<bool>(),
        state(),
        prop::option::of(0.0f64..1.5),
        prop::option::of(0u64..5),
    )
        .prop_map(move |(long_lived, state, stress, conferences)| Bridge {
            // A bridge without conferences forwards nothing.
            stress: if conferences == Some(0) {
                stress.map(|_| 0.0)
            } else {
                stress
            },
            name: format!("ev-jvb-{}", i + 1),
            long_lived: long_lived && i == 0,
            state: if long_lived && i == 0 {
                State::Active
            } else {
                state
            },
            conferences,
        })
}

fn expected() -> impl Strategy<Value = Expected> {
    (
        0usize..4,
        any::<bool>(),
        0u32..150,
        any::<bool>(),
        0i64..180,
    )
        .prop_map(|(room, jitsi, people, webcams, starts_in)| Expected {
            room: ROOMS[room].to_owned(),
            backend: if jitsi { Backend::Jitsi } else { Backend::Bbb },
            people,
            webcams,
            starts_in: Duration::minutes(starts_in),
        })
}

fn observation() -> impl Strategy<Value = Observation> {
    (0usize..7, 0usize..4)
        .prop_flat_map(|(nb, nj)| {
            (
                (0..nb).map(bbb_server).collect::<Vec<_>>(),
                (0..nj).map(bridge).collect::<Vec<_>>(),
                prop::collection::vec(expected(), 0..5),
            )
        })
        .prop_map(|(bbb, bridges, mut expected)| {
            // One expectation per room and backend, as expected_rooms gives.
            let mut seen = BTreeSet::new();
            expected.retain(|e| seen.insert((e.room.clone(), e.backend == Backend::Bbb)));
            Observation {
                event_id: "ev".into(),
                bbb,
                bridges,
                expected,
            }
        })
}

fn case() -> impl Strategy<Value = (Settings, Observation)> {
    (bounds(), bounds(), 0u32..100, observation())
        .prop_map(|(b, j, h, obs)| (settings(b, j, h), obs))
}

/// Rented servers of `role` that take meetings, by name and whether active.
fn rented(obs: &Observation, role: Role) -> Vec<(String, State, bool)> {
    match role {
        Role::Bbb => obs
            .bbb
            .iter()
            .filter(|s| s.long_lived_units.is_none())
            .map(|s| {
                let empty = s.meetings.as_ref().is_some_and(Vec::is_empty);
                (s.name.clone(), s.state, empty)
            })
            .collect(),
        _ => obs
            .bridges
            .iter()
            .filter(|b| !b.long_lived)
            .map(|b| (b.name.clone(), b.state, b.conferences == Some(0)))
            .collect(),
    }
}

/// Active rented servers of `role` once `d` is carried out.
fn active_after(obs: &Observation, d: &Decision, role: Role) -> u32 {
    let active = rented(obs, role)
        .iter()
        .filter(|s| s.1 == State::Active)
        .count() as u32;
    let count = |v: &[venue_agent::autopilot::load::Action]| {
        v.iter().filter(|a| a.role == role).count() as u32
    };
    let added: u32 = d
        .add
        .iter()
        .filter(|a| a.role == role)
        .map(|a| a.count)
        .sum();
    active + added + count(&d.undrain) - count(&d.drain)
}

/// `obs` after `d` is carried out: new servers active and empty.
fn carry_out(obs: &Observation, d: &Decision) -> Observation {
    let mut next = obs.clone();
    let has = |v: &[venue_agent::autopilot::load::Action], n: &str| v.iter().any(|a| a.name == n);
    next.bbb.retain(|s| !has(&d.release, &s.name));
    next.bridges.retain(|b| !has(&d.release, &b.name));
    for s in &mut next.bbb {
        if has(&d.drain, &s.name) {
            s.state = State::Draining;
        } else if has(&d.undrain, &s.name) {
            s.state = State::Active;
        }
    }
    for b in &mut next.bridges {
        if has(&d.drain, &b.name) {
            b.state = State::Draining;
        } else if has(&d.undrain, &b.name) {
            b.state = State::Active;
        }
    }
    for a in &d.add {
        for i in 0..a.count {
            match a.role {
                Role::Bbb => next.bbb.push(BbbServer {
                    name: format!("ev-bbb-new-{i}"),
                    long_lived_units: None,
                    state: State::Active,
                    meetings: Some(vec![]),
                }),
                _ => next.bridges.push(Bridge {
                    name: format!("ev-jvb-new-{i}"),
                    long_lived: false,
                    state: State::Active,
                    stress: Some(0.0),
                    conferences: Some(0),
                }),
            }
        }
    }
    next
}

fn bounds_of(s: &Settings, role: Role) -> Bounds {
    if role == Role::Bbb {
        s.bbb
    } else {
        s.jvb
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn stays_between_min_and_max((s, obs) in case()) {
        let d = decide(&s, &obs);
        for role in [Role::Bbb, Role::Jvb] {
            let b = bounds_of(&s, role);
            let after = active_after(&obs, &d, role);
            prop_assert!(after >= b.min, "{role}: {after} < min {}: {d:?}", b.min);
            prop_assert!(after <= b.max, "{role}: {after} > max {}: {d:?}", b.max);
        }
    }

    #[test]
    fn acts_only_on_rented_servers_in_the_right_state((s, obs) in case()) {
        let d = decide(&s, &obs);
        let mut touched = BTreeSet::new();
        for (list, from) in [(&d.drain, State::Active), (&d.undrain, State::Draining), (&d.release, State::Draining)] {
            for a in list.iter() {
                let r = rented(&obs, a.role);
                let server = r.iter().find(|x| x.0 == a.name);
                prop_assert!(server.is_some(), "{} is not a rented {} server: {d:?}", a.name, a.role);
                prop_assert_eq!(server.unwrap().1, from, "{}", a.name);
                prop_assert!(touched.insert(a.name.clone()), "{} twice: {:?}", a.name, d);
            }
        }
    }

    #[test]
    fn never_releases_a_server_with_a_meeting((s, obs) in case()) {
        let d = decide(&s, &obs);
        for a in &d.release {
            if let Some(b) = obs.bbb.iter().find(|x| x.name == a.name) {
                prop_assert_eq!(b.meetings.as_deref(), Some(&[][..]), "{} holds meetings", a.name);
            }
            if let Some(b) = obs.bridges.iter().find(|x| x.name == a.name) {
                prop_assert_eq!(b.conferences, Some(0), "{} holds conferences", a.name);
            }
        }
    }

    #[test]
    fn more_people_never_mean_fewer_servers(
        (s, obs) in case(),
        which in any::<prop::sample::Index>(),
        more in 1u64..200,
        more_video in 0u64..50,
        more_stress in 0.0f64..1.0,
        more_expected in 1u32..150,
    ) {
        let before = decide(&s, &obs);
        // More people in one meeting.
        let mut busier = obs.clone();
        let meetings: Vec<(usize, usize)> = busier.bbb.iter().enumerate()
            .flat_map(|(i, s)| (0..s.meetings.as_ref().map_or(0, Vec::len)).map(move |j| (i, j)))
            .collect();
        if !meetings.is_empty() {
            let (i, j) = *which.get(&meetings);
            let m = &mut busier.bbb[i].meetings.as_mut().unwrap()[j];
            m.participants += more;
            m.video += more_video;
        }
        // More stress on one bridge.
        if !busier.bridges.is_empty() {
            let b = which.get(&busier.bridges).name.clone();
            let b = busier.bridges.iter_mut().find(|x| x.name == b).unwrap();
            b.stress = Some(b.stress.unwrap_or(0.0) + more_stress);
        }
        // More people expected in one room.
        if !busier.expected.is_empty() {
            let i = which.index(busier.expected.len());
            busier.expected[i].people += more_expected;
        }
        let after = decide(&s, &busier);
        for role in [Role::Bbb, Role::Jvb] {
            prop_assert!(
                active_after(&busier, &after, role) >= active_after(&obs, &before, role),
                "{role}: {} servers for more people, {} before\n{after:?}\n{before:?}",
                active_after(&busier, &after, role),
                active_after(&obs, &before, role)
            );
        }
    }

    #[test]
    fn does_not_flap((s, obs) in case()) {
        let d = decide(&s, &obs);
        let next = carry_out(&obs, &d);
        let again = decide(&s, &next);
        prop_assert!(again.add.is_empty() && again.drain.is_empty() && again.undrain.is_empty(),
            "first {d:?}\nthen {again:?}");
    }

    #[test]
    fn what_was_just_added_survives_a_dip_of_a_tenth((s, obs) in case()) {
        let d = decide(&s, &obs);
        let grew: Vec<Role> = [Role::Bbb, Role::Jvb]
            .into_iter()
            .filter(|r| d.add.iter().any(|a| a.role == *r) || d.undrain.iter().any(|a| a.role == *r))
            .collect();
        let mut dip = carry_out(&obs, &d);
        for server in &mut dip.bbb {
            for m in server.meetings.iter_mut().flatten() {
                m.participants -= m.participants / 10;
            }
        }
        for b in &mut dip.bridges {
            b.stress = b.stress.map(|x| x * 0.9);
        }
        let again = decide(&s, &dip);
        for role in grew {
            prop_assert!(
                again.drain.iter().all(|a| a.role != role),
                "{role} grew, then drained at 90% of the load\nfirst {d:?}\nthen {again:?}"
            );
        }
    }
}
