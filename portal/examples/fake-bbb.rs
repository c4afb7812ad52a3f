//! The tests' fake BigBlueButton API as a program, for scripts/bench-portal.sh:
//! `fake-bbb LISTEN SECRET [MEETINGS] [ID,ID,...]` serves on LISTEN with
//! MEETINGS running meetings (of 1 to 40 people; named by the given IDs,
//! then `bench-N`) and prints `fake-bbb listening on http://ADDR`.

#[path = "../tests/common/fake_bbb.rs"]
mod fake_bbb;

use conference::protocol::bbb::Checksum;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let listen = args.get(1).map_or("127.0.0.1:0", String::as_str);
    let secret = args.get(2).map_or("bench-secret", String::as_str);
    let meetings: usize = args.get(3).and_then(|n| n.parse().ok()).unwrap_or(12);
    let fake =
        fake_bbb::FakeBbb::start_on(listen, secret, &[Checksum::Sha1, Checksum::Sha256]).await;
    for i in 0..meetings {
        fake.add_meeting(
            &format!("bench-{i}"),
            1 + (i * 7) % 40,
            (i * 5) % 20,
            i % 4,
            60_000 * i as i64,
        );
    }
    println!("fake-bbb listening on http://{}", fake.addr);
    tokio::signal::ctrl_c().await.ok();
}
