//! Cost so far: Hetzner bills every started hour a server exists, capped at
//! its monthly price.

use chrono::{DateTime, Utc};

use crate::cloud::types::Server;
use crate::plan::prices::PriceTable;

/// Started hours between `created` and `now` (at least one).
pub fn started_hours(created: DateTime<Utc>, now: DateTime<Utc>) -> u64 {
    let secs = (now - created).num_seconds().max(0) as u64;
    secs.div_ceil(3600).max(1)
}

/// (cost in micro-EUR, whether the price was known) of one server until `now`.
pub fn server_cost(s: &Server, prices: &PriceTable, now: DateTime<Utc>) -> (u64, bool) {
    match prices.get(&s.server_type.name, &s.location.name) {
        Some(p) => (
            (started_hours(s.created, now) * p.hourly_micro_eur).min(p.monthly_micro_eur),
            true,
        ),
        None => (0, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_started_hour_counts() {
        let t0: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let h = |s: i64| started_hours(t0, t0 + chrono::Duration::seconds(s));
        assert_eq!(h(0), 1);
        assert_eq!(h(1), 1);
        assert_eq!(h(3600), 1);
        assert_eq!(h(3601), 2);
        assert_eq!(h(-5), 1);
    }
}
