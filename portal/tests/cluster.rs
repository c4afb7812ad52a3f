//! The BBB cluster state machine and room placement, driven poll by poll.

mod common;

use common::fake_bbb::FakeBbb;
use conference::protocol::bbb::Checksum;
use portal::bbb::{Cluster, Health};
use portal::config::BbbServer;
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
    // Existing meetings stay where they are.
    assert_eq!(cluster.place("old"), Some(0));
    assert_eq!(cluster.place("young"), Some(1));
    // b has load 15 (young meeting) < a's 40: the new room goes to b.
    assert_eq!(cluster.place("room-1"), Some(1));
    // The placement is remembered, and counts 15 until a poll sees it: b is at 30.
    assert_eq!(cluster.place("room-1"), Some(1));
    assert_eq!(cluster.place("room-2"), Some(1)); // 30 < 40
    assert_eq!(cluster.place("room-3"), Some(0)); // b at 45 > 40: a
                                                  // Once b's young meeting is old and small, b is light again.
    b.add_meeting("young", 2, 0, 0, 3_600_000);
    cluster.poll_once(1).await;
    // b: 2 + two unpolled placements (30) = 32 < a: 40 + 15 = 55.
    assert_eq!(cluster.place("room-4"), Some(1));
    // All down: nowhere to go.
    let cluster = Cluster::new(vec![server("c", &c, "s")], Duration::from_secs(2));
    cluster.poll_once(0).await;
    cluster.poll_once(0).await;
    assert_eq!(cluster.place("x"), None);
}
