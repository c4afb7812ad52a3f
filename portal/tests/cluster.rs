//! The BBB cluster state machine and room placement, driven poll by poll.

mod common;

use common::fake_bbb::FakeBbb;
use conference::protocol::bbb::Checksum;
use portal::bbb::{Cluster, Health};
use portal::config::BbbServer;
use portal::pool::file::{Entry, Pool};
use std::time::Duration;

fn server(name: &str, fake: &FakeBbb, secret: &str) -> BbbServer {
    BbbServer {
        name: name.into(),
        url: fake.url(),
        secret: secret.into(),
        checksum: Checksum::Sha256,
    }
}

#[tokio::test]
async fn down_after_two_missed_polls_up_after_one_answer() {
    let fake = FakeBbb::start("s", &[Checksum::Sha256]).await;
    let cluster = Cluster::new(vec![server("a", &fake, "s")], Duration::from_secs(2));
    let health = || cluster.states()[0].health;
    assert_eq!(health(), Health::Unknown);
    cluster.poll_once(0).await;
    assert_eq!(health(), Health::Up);
    fake.set_down(true);
    cluster.poll_once(0).await;
    assert_eq!(health(), Health::Up, "down after one miss");
    assert_eq!(cluster.states()[0].misses, 1);
    cluster.poll_once(0).await;
    assert_eq!(health(), Health::Down, "still up after two misses");
    cluster.poll_once(0).await;
    assert_eq!(health(), Health::Down);
    fake.set_down(false);
    cluster.poll_once(0).await;
    assert_eq!(health(), Health::Up, "not up after an answer");
    assert_eq!(cluster.polls(), 5);
    // A refused checksum is a missed poll too.
    let wrong = Cluster::new(vec![server("a", &fake, "not-s")], Duration::from_secs(2));
    wrong.poll_once(0).await;
    wrong.poll_once(0).await;
    assert_eq!(wrong.states()[0].health, Health::Down);
    assert!(wrong.states()[0]
        .last_error
        .as_deref()
        .unwrap()
        .contains("checksum"));
}

#[tokio::test]
async fn new_meetings_go_to_the_least_loaded_server() {
    let a = FakeBbb::start("s", &[Checksum::Sha256]).await;
    let b = FakeBbb::start("s", &[Checksum::Sha256]).await;
    let c = FakeBbb::start("s", &[Checksum::Sha256]).await;
    // a: 40 people in an hour-old meeting. b: 2 people in a 1-minute-old
    // meeting, which counts as 15. c: unreachable (down).
    a.add_meeting("old", 40, 0, 0, 3_600_000);
    b.add_meeting("young", 2, 0, 0, 60_000);
    c.set_down(true);
    let cluster = Cluster::new(
        vec![
            server("a", &a, "s"),
            server("b", &b, "s"),
            server("c", &c, "s"),
        ],
        Duration::from_secs(2),
    );
    // Before any poll, placement falls back to servers not known to be down.
    for i in 0..3 {
        cluster.poll_once(i).await;
        cluster.poll_once(i).await;
    }
    assert_eq!(cluster.states()[2].health, Health::Down);
    let place = |id: &str| cluster.place(id).map(|t| t.name);
    // Existing meetings stay where they are.
    assert_eq!(place("old").as_deref(), Some("a"));
    assert_eq!(place("young").as_deref(), Some("b"));
    // b has load 15 (young meeting) < a's 40: the new room goes to b.
    assert_eq!(place("room-1").as_deref(), Some("b"));
    // The placement is remembered, and counts 15 until a poll sees it: b is at 30.
    assert_eq!(place("room-1").as_deref(), Some("b"));
    assert_eq!(place("room-2").as_deref(), Some("b")); // 30 < 40
    assert_eq!(place("room-3").as_deref(), Some("a")); // b at 45 > 40: a
                                                       // Once b's young meeting is old and small, b is light again.
    b.add_meeting("young", 2, 0, 0, 3_600_000);
    cluster.poll_once(1).await;
    // b: 2 + two unpolled placements (30) = 32 < a: 40 + 15 = 55.
    assert_eq!(place("room-4").as_deref(), Some("b"));
    // All down: nowhere to go.
    let cluster = Cluster::new(vec![server("c", &c, "s")], Duration::from_secs(2));
    cluster.poll_once(0).await;
    cluster.poll_once(0).await;
    assert!(cluster.place("x").is_none());
}

fn pool(entries: &[(&BbbServer, bool)]) -> Pool {
    Pool {
        entries: entries
            .iter()
            .map(|(s, draining)| Entry {
                server: (*s).clone(),
                draining: *draining,
            })
            .collect(),
        updated: None,
    }
}

#[tokio::test]
async fn a_draining_server_keeps_running_meetings_and_gets_no_new_one() {
    let a = FakeBbb::start("s", &[Checksum::Sha256]).await;
    let b = FakeBbb::start("s", &[Checksum::Sha256]).await;
    // a is busy, so without draining everything new would go to b.
    a.add_meeting("busy", 60, 0, 0, 3_600_000);
    b.add_meeting("running", 3, 0, 0, 3_600_000);
    let (sa, sb) = (server("a", &a, "s"), server("b", &b, "s"));
    let cluster = Cluster::new(vec![sa.clone()], Duration::from_secs(2));
    cluster.apply_pool(&pool(&[(&sb, false)]));
    let poll = || async {
        cluster.poll_once(0).await;
        cluster.poll_once(1).await;
    };
    poll().await;
    let place = |id: &str| cluster.place(id).map(|t| t.name);
    assert_eq!(place("placed-before").as_deref(), Some("b"));
    cluster.apply_pool(&pool(&[(&sb, true)]));
    assert!(cluster.states()[1].draining);
    // The running meeting stays; a meeting placed there before the drain
    // and not yet polled may exist, so it stays too; a new one goes to a.
    assert_eq!(place("running").as_deref(), Some("b"));
    assert_eq!(place("placed-before").as_deref(), Some("b"));
    assert_eq!(place("new").as_deref(), Some("a"));
    let st = &cluster.states()[1];
    assert!(
        !cluster.drained(st),
        "drained before any poll since the drain"
    );
    // A poll shows the placed meeting never came: it moves to a.
    poll().await;
    assert_eq!(place("placed-before").as_deref(), Some("a"));
    assert_eq!(place("running").as_deref(), Some("b"));
    assert!(
        !cluster.drained(&cluster.states()[1]),
        "a meeting still runs"
    );
    // The meeting ends: its room's next meeting goes elsewhere.
    b.state.lock().unwrap().meetings.clear();
    poll().await;
    assert!(cluster.drained(&cluster.states()[1]));
    assert_eq!(place("running").as_deref(), Some("a"));
    // Only a draining server left: no new meeting anywhere.
    let only = Cluster::new(vec![], Duration::from_secs(2));
    only.apply_pool(&pool(&[(&sb, true)]));
    only.poll_once(0).await;
    assert!(only.place("x").is_none());
    // Draining off again: b takes new meetings.
    cluster.apply_pool(&pool(&[(&sb, false)]));
    assert_eq!(place("newer").as_deref(), Some("b"));
}

#[tokio::test]
async fn static_servers_stay_and_a_server_that_leaves_is_not_polled() {
    let a = FakeBbb::start("s", &[Checksum::Sha256]).await;
    let b = FakeBbb::start("s", &[Checksum::Sha256]).await;
    a.add_meeting("busy", 60, 0, 0, 3_600_000);
    let (sa, sb) = (server("a", &a, "s"), server("b", &b, "s"));
    let cluster = Cluster::new(vec![sa.clone()], Duration::from_secs(2));
    // The pool names the static server (draining it) and adds b.
    cluster.apply_pool(&pool(&[(&sa, true), (&sb, false)]));
    let names = || {
        cluster
            .states()
            .iter()
            .map(|s| (s.name.clone(), s.pooled, s.draining))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(),
        [("a".into(), false, true), ("b".into(), true, false)]
    );
    cluster.poll_once(0).await;
    cluster.poll_once(1).await;
    assert_eq!(cluster.place("room").map(|t| t.name).as_deref(), Some("b"));
    let room_on_b = cluster.place("room").unwrap();
    // An empty pool: the static server stays (no longer draining), b leaves.
    cluster.apply_pool(&pool(&[]));
    assert_eq!(names(), [("a".into(), false, false)]);
    let before = b.calls("getMeetings");
    cluster.poll_once(0).await;
    cluster.poll_once(1).await; // there is no server 1 any more
    assert_eq!(b.calls("getMeetings"), before);
    // The room is placed anew, and a stale target finds no people.
    assert_eq!(cluster.place("room").map(|t| t.name).as_deref(), Some("a"));
    assert!(!cluster.has_people(&room_on_b, "room"));
    // b comes back with the same settings: a new member, polled again.
    cluster.apply_pool(&pool(&[(&sb, false)]));
    assert_eq!(cluster.states()[1].health, Health::Unknown);
    cluster.poll_once(1).await;
    assert_eq!(b.calls("getMeetings"), before + 1);
    // The same entry again keeps what the polls learnt.
    cluster.apply_pool(&pool(&[(&sb, false)]));
    assert_eq!(cluster.states()[1].health, Health::Up);
}
