//! Waits on a host (booting, kexecing, rebooting) in real seconds, whatever
//! the venue clock says: each is bounded, says on the host's line what it
//! waits for and for how long already, and is logged when it starts and
//! every half minute it goes on (at `warn`, which the agent prints by
//! default), so that no wait is a silent multi-minute hang.

use std::time::{Duration, Instant};

use indicatif::ProgressBar;

/// How often a long wait is logged again.
const LOG_EVERY: Duration = Duration::from_secs(30);

pub struct Wait<'a> {
    what: String,
    started: Instant,
    limit: Duration,
    bar: &'a ProgressBar,
    logged: Instant,
}

impl<'a> Wait<'a> {
    /// A wait for `what` of at most `limit`, `already` of which passed
    /// before this run (an earlier run started the kexec or the reboot).
    pub fn new(bar: &'a ProgressBar, what: String, limit: Duration, already: Duration) -> Wait<'a> {
        let now = Instant::now();
        let started = now.checked_sub(already).unwrap_or(now);
        tracing::info!(what = %what, limit = ?limit, already = ?already, "waiting");
        let wait = Wait {
            what,
            started,
            limit,
            bar,
            logged: now,
        };
        wait.show("");
        wait
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Time left before the limit.
    pub fn left(&self) -> Duration {
        self.limit.saturating_sub(self.elapsed())
    }

    pub fn expired(&self) -> bool {
        self.elapsed() >= self.limit
    }

    /// Shows the wait again, with what was last seen.
    pub fn tick(&mut self, seen: &str) {
        self.show(seen);
        if self.logged.elapsed() >= LOG_EVERY {
            self.logged = Instant::now();
            tracing::warn!(
                what = %self.what,
                waited = self.elapsed().as_secs(),
                limit = self.limit.as_secs(),
                seen,
                "still waiting"
            );
        }
    }

    fn show(&self, seen: &str) {
        let mut message = format!(
            "{} ({}s of at most {}s)",
            self.what,
            self.elapsed().as_secs(),
            self.limit.as_secs()
        );
        if !seen.is_empty() {
            message.push_str(": ");
            message.push_str(seen);
        }
        self.bar.set_message(message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_counts_what_passed_before_it_and_says_so() {
        let bar = ProgressBar::hidden();
        let mut w = Wait::new(
            &bar,
            "waiting for the installer".into(),
            Duration::from_secs(90),
            Duration::from_secs(30),
        );
        assert!(w.elapsed() >= Duration::from_secs(30));
        assert!(w.left() <= Duration::from_secs(60));
        assert!(!w.expired());
        w.tick("the old system still answers");
        let message = bar.message();
        assert!(
            message.starts_with("waiting for the installer (30s of at most 90s)")
                && message.ends_with("the old system still answers"),
            "{message}"
        );
        let done = Wait::new(
            &bar,
            "x".into(),
            Duration::from_secs(5),
            Duration::from_secs(9),
        );
        assert!(done.expired());
        assert_eq!(done.left(), Duration::ZERO);
    }
}
