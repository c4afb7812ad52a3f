//! Login throttling that slows the attacker, never the owner.
//!
//! Failed logins count against the client address (30 per 15 minutes) and
//! against the pair of address and e-mail (5 per 15 minutes). A correct code
//! from any other address still logs in, so knowing a speaker's e-mail is
//! not enough to lock them out. The per-e-mail count is only a slow global
//! backstop (100 failures a day): past it, wrong codes for that e-mail are
//! answered 429 and count five times against their address, while a correct
//! code still passes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed logins per client address per [`WINDOW`] (successful ones do not
/// count: many attendees may share one address behind a NAT).
pub const FAILURES_PER_ADDRESS: usize = 30;
/// Failed logins per address and e-mail per [`WINDOW`].
pub const FAILURES_PER_ADDRESS_AND_EMAIL: usize = 5;
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Failed logins per e-mail, from anywhere, per [`BACKSTOP_WINDOW`].
pub const FAILURES_PER_EMAIL: usize = 100;
pub const BACKSTOP_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// How much a failure past the backstop weighs against its address.
pub const BACKSTOP_WEIGHT: usize = 5;

#[derive(Default)]
pub struct LoginThrottle {
    hits: Mutex<HashMap<String, Vec<Instant>>>,
}

/// What a failed attempt leads to.
#[derive(Debug, PartialEq, Eq)]
pub enum Failure {
    /// A plain wrong code.
    Refused,
    /// The e-mail is past the global backstop.
    Backstop,
}

fn address_key(ip: IpAddr) -> String {
    format!("ip:{ip}")
}

fn pair_key(ip: IpAddr, email: &str) -> String {
    format!("pair:{ip}:{email}")
}

fn email_key(email: &str) -> String {
    format!("email:{email}")
}

impl LoginThrottle {
    fn count(&self, key: &str, window: Duration) -> usize {
        let hits = self.hits.lock().unwrap_or_else(|e| e.into_inner());
        hits.get(key)
            .map_or(0, |v| v.iter().filter(|t| t.elapsed() < window).count())
    }

    fn hit(&self, key: &str, window: Duration, n: usize, keep: usize) {
        let mut hits = self.hits.lock().unwrap_or_else(|e| e.into_inner());
        if hits.len() > 100_000 {
            hits.retain(|_, v| v.iter().any(|t| t.elapsed() < BACKSTOP_WINDOW));
        }
        let v = hits.entry(key.to_owned()).or_default();
        v.retain(|t| t.elapsed() < window);
        let now = Instant::now();
        v.extend(std::iter::repeat_n(now, n));
        // Only whether the limit is reached matters: keep memory bounded.
        if v.len() > keep {
            v.drain(..v.len() - keep);
        }
    }

    /// Whether attempts from `ip` for `email` are refused before the code is
    /// looked at: the address, or the address for this e-mail, failed too often.
    pub fn blocked(&self, ip: IpAddr, email: &str) -> bool {
        self.count(&address_key(ip), WINDOW) >= FAILURES_PER_ADDRESS
            || self.count(&pair_key(ip, email), WINDOW) >= FAILURES_PER_ADDRESS_AND_EMAIL
    }

    /// Records a wrong code.
    pub fn failed(&self, ip: IpAddr, email: &str) -> Failure {
        let backstop = self.count(&email_key(email), BACKSTOP_WINDOW) >= FAILURES_PER_EMAIL;
        let weight = if backstop { BACKSTOP_WEIGHT } else { 1 };
        self.hit(&address_key(ip), WINDOW, weight, FAILURES_PER_ADDRESS + 1);
        self.hit(
            &pair_key(ip, email),
            WINDOW,
            1,
            FAILURES_PER_ADDRESS_AND_EMAIL + 1,
        );
        self.hit(
            &email_key(email),
            BACKSTOP_WINDOW,
            1,
            FAILURES_PER_EMAIL + 1,
        );
        if backstop {
            Failure::Backstop
        } else {
            Failure::Refused
        }
    }

    /// A correct code: the owner's own earlier typos from this address are forgiven.
    pub fn succeeded(&self, ip: IpAddr, email: &str) {
        self.hits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&pair_key(ip, email));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_attacker_is_throttled_not_the_owner() {
        let t = LoginThrottle::default();
        let attacker: IpAddr = "192.0.2.1".parse().unwrap();
        let owner: IpAddr = "198.51.100.7".parse().unwrap();
        for _ in 0..FAILURES_PER_ADDRESS_AND_EMAIL {
            assert!(!t.blocked(attacker, "ann@example.org"));
            assert_eq!(t.failed(attacker, "ann@example.org"), Failure::Refused);
        }
        assert!(t.blocked(attacker, "ann@example.org"));
        assert!(!t.blocked(owner, "ann@example.org"));
        // Other e-mails from the attacker's address: until the address limit.
        let mut n = FAILURES_PER_ADDRESS_AND_EMAIL;
        while !t.blocked(attacker, &format!("guess{n}@example.org")) {
            t.failed(attacker, &format!("guess{n}@example.org"));
            n += 1;
            assert!(n <= FAILURES_PER_ADDRESS, "no address limit");
        }
        assert_eq!(n, FAILURES_PER_ADDRESS);
        assert!(t.blocked(attacker, "carol@example.org"));
    }

    #[test]
    fn the_backstop_weighs_failures_but_never_blocks_the_owner() {
        let t = LoginThrottle::default();
        for i in 0..FAILURES_PER_EMAIL {
            let ip: IpAddr = format!("10.0.{}.{}", i / 250, i % 250).parse().unwrap();
            assert_eq!(t.failed(ip, "ann@example.org"), Failure::Refused);
        }
        let fresh: IpAddr = "10.9.9.9".parse().unwrap();
        assert!(!t.blocked(fresh, "ann@example.org"));
        assert_eq!(t.failed(fresh, "ann@example.org"), Failure::Backstop);
        // Past the backstop a failure counts five times against its address.
        assert_eq!(t.count(&address_key(fresh), WINDOW), BACKSTOP_WEIGHT);
        let owner: IpAddr = "10.8.8.8".parse().unwrap();
        assert!(!t.blocked(owner, "ann@example.org"));
    }
}
