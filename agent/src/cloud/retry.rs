//! Exponential backoff with jitter ("Exponential Backoff And Jitter", AWS
//! architecture blog): the n-th wait is uniform in [c/4, c] with
//! c = min(cap, base·2ⁿ), so that many clients (or many of our own concurrent
//! requests) that failed together do not come back together, while every wait
//! still grows (full jitter's [0, c] would sometimes retry at once).

use std::time::Duration;

use rand::Rng;

#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
    /// Tries in all, the first one included.
    pub attempts: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(250),
            cap: Duration::from_secs(15),
            attempts: 10,
        }
    }
}

impl Backoff {
    /// The wait before try number `attempt + 1` (attempt counts from 0).
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.cap);
        let ms = ceiling.as_millis() as u64;
        Duration::from_millis(if ms == 0 {
            0
        } else {
            rand::rng().random_range(ms / 4..=ms)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stay_under_the_cap() {
        let b = Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
            attempts: 5,
        };
        for attempt in 0..20 {
            let d = b.delay(attempt);
            let ceiling = Duration::from_millis(100)
                .saturating_mul(1 << attempt.min(16))
                .min(b.cap);
            assert!(d <= ceiling, "{attempt}: {d:?}");
            assert!(d >= ceiling / 4, "{attempt}: {d:?}");
        }
    }
}
