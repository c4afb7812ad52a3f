//! The venue's clock: real time, or an accelerated one that the testbed's
//! fake cloud, the agent and the portal share, so that a two-day event plays
//! in minutes on real test hosts.
//!
//! An accelerated clock is written `START*SPEED@ORIGIN` (both RFC 3339): at
//! the real time ORIGIN the clock read START, and it runs SPEED times as fast
//! as real time. Every process given the same string reads the same time,
//! whenever it starts. `VENUE_CLOCK` carries it; unset means real time.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};

/// The environment variable that carries an accelerated clock.
pub const ENV: &str = "VENUE_CLOCK";

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Clock {
    accelerated: Option<Accelerated>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Accelerated {
    start: DateTime<Utc>,
    speed: f64,
    origin: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{ENV}={value:?}: {what} (expected START*SPEED@ORIGIN, e.g. 2026-12-01T08:00:00Z*600@2026-12-03T10:00:00Z)")]
pub struct ClockError {
    value: String,
    what: String,
}

impl Clock {
    pub fn real() -> Clock {
        Clock { accelerated: None }
    }

    /// A clock that reads `start` now and runs `speed` times real time.
    pub fn accelerated(start: DateTime<Utc>, speed: f64) -> Clock {
        Clock::anchored(start, speed, Utc::now())
    }

    /// A clock that read `start` at the real time `origin`.
    pub fn anchored(start: DateTime<Utc>, speed: f64, origin: DateTime<Utc>) -> Clock {
        Clock {
            accelerated: Some(Accelerated {
                start,
                speed,
                origin,
            }),
        }
    }

    /// `VENUE_CLOCK`, or real time when it is unset or empty.
    pub fn from_env() -> Result<Clock, ClockError> {
        match std::env::var(ENV) {
            Ok(v) if !v.trim().is_empty() => v.parse(),
            _ => Ok(Clock::real()),
        }
    }

    pub fn is_real(&self) -> bool {
        self.accelerated.is_none()
    }

    /// How many times faster than real time this clock runs.
    pub fn speed(&self) -> f64 {
        self.accelerated.map_or(1.0, |a| a.speed)
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.at(Utc::now())
    }

    /// What this clock reads at the real time `real`.
    pub fn at(&self, real: DateTime<Utc>) -> DateTime<Utc> {
        match self.accelerated {
            None => real,
            Some(a) => {
                let elapsed = (real - a.origin).num_microseconds().unwrap_or(i64::MAX) as f64;
                a.start + chrono::Duration::microseconds((elapsed * a.speed) as i64)
            }
        }
    }

    /// How long to really wait for `venue` time to pass (at least 1 ms on an
    /// accelerated clock, so that loops still yield).
    pub fn real_duration(&self, venue: Duration) -> Duration {
        match self.accelerated {
            None => venue,
            Some(a) => venue.div_f64(a.speed).max(Duration::from_millis(1)),
        }
    }
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::real()
    }
}

impl fmt::Display for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.accelerated {
            None => Ok(()),
            Some(a) => write!(
                f,
                "{}*{}@{}",
                a.start.to_rfc3339_opts(SecondsFormat::AutoSi, true),
                a.speed,
                a.origin.to_rfc3339_opts(SecondsFormat::AutoSi, true)
            ),
        }
    }
}

impl std::str::FromStr for Clock {
    type Err = ClockError;

    fn from_str(s: &str) -> Result<Clock, ClockError> {
        let err = |what: &str| ClockError {
            value: s.to_owned(),
            what: what.to_owned(),
        };
        let (start, rest) = s.trim().split_once('*').ok_or_else(|| err("no `*`"))?;
        let (speed, origin) = rest.split_once('@').ok_or_else(|| err("no `@`"))?;
        let time = |t: &str, name: &str| {
            DateTime::parse_from_rfc3339(t)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| err(&format!("{name} {t:?}: {e}")))
        };
        let speed: f64 = speed
            .parse()
            .map_err(|_| err(&format!("speed {speed:?} is not a number")))?;
        if !(speed.is_finite() && speed > 0.0) {
            return Err(err("the speed must be a positive number"));
        }
        Ok(Clock::anchored(
            time(start, "start")?,
            speed,
            time(origin, "origin")?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn accelerated_time_runs_at_its_speed_from_its_origin() {
        let c: Clock = "2026-12-01T08:00:00Z*600@2026-12-03T10:00:00Z"
            .parse()
            .unwrap();
        // One real minute is ten venue hours.
        assert_eq!(c.at(t("2026-12-03T10:01:00Z")), t("2026-12-01T18:00:00Z"));
        assert_eq!(c.at(t("2026-12-03T10:00:00Z")), t("2026-12-01T08:00:00Z"));
        assert_eq!(
            c.real_duration(Duration::from_secs(3600)),
            Duration::from_secs(6)
        );
        assert_eq!(c.speed(), 600.0);
    }

    #[test]
    fn the_written_form_reads_back_the_same_clock() {
        let c = Clock::anchored(
            t("2026-12-01T08:00:00Z"),
            60.5,
            t("2026-12-03T10:00:00.123Z"),
        );
        let back: Clock = c.to_string().parse().unwrap();
        assert_eq!(back, c);
        assert_eq!(
            c.to_string(),
            "2026-12-01T08:00:00Z*60.5@2026-12-03T10:00:00.123Z"
        );
    }

    #[test]
    fn real_time_is_the_system_time() {
        let c = Clock::real();
        let now = Utc::now();
        assert_eq!(c.at(now), now);
        assert!(c.is_real());
        assert_eq!(
            c.real_duration(Duration::from_secs(5)),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn bad_clocks_say_what_is_wrong() {
        for (bad, what) in [
            ("2026-12-01T08:00:00Z", "no `*`"),
            ("2026-12-01T08:00:00Z*600", "no `@`"),
            (
                "2026-12-01T08:00:00Z*fast@2026-12-03T10:00:00Z",
                "not a number",
            ),
            ("2026-12-01T08:00:00Z*0@2026-12-03T10:00:00Z", "positive"),
            ("yesterday*2@2026-12-03T10:00:00Z", "start \"yesterday\""),
        ] {
            let e = bad.parse::<Clock>().unwrap_err().to_string();
            assert!(e.contains(what), "{bad}: {e}");
            assert!(e.contains("VENUE_CLOCK"), "{e}");
        }
    }
}
