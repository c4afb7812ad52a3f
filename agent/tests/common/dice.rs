//! splitmix64: a small, seedable generator for the tests' random faults.
//! The tests print their seed; replaying it replays the same draws, so the
//! sequence for a seed must never change.

use std::time::Duration;

pub struct Dice(u64);

impl Dice {
    pub fn new(seed: u64) -> Dice {
        Dice(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, n) seconds.
    pub fn seconds(&mut self, n: i64) -> chrono::Duration {
        chrono::Duration::seconds((self.next() % n.max(1) as u64) as i64)
    }

    /// Milliseconds in `lo..hi`.
    pub fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.next() % (hi - lo))
    }
}
