//! The time notations schedules use.

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

/// frab/pretalx `date`: ISO 8601 with an offset (`2020-08-24T07:00:00-04:00`);
/// without an offset it is local time in `tz`.
pub fn parse_datetime(s: &str, tz: Tz) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Some(dt.with_timezone(&Utc));
    }
    for format in [
        "%Y-%m-%dT%H:%M%:z",
        "%Y-%m-%dT%H:%M:%S%.f%z",
        "%Y-%m-%dT%H:%M%z",
    ] {
        if let Ok(dt) = DateTime::parse_from_str(s, format) {
            return Some(dt.with_timezone(&Utc));
        }
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(s, format) {
            return tz
                .from_local_datetime(&naive)
                .earliest()
                .map(|dt| dt.with_timezone(&Utc));
        }
    }
    None
}

/// A day's date plus a local `start` (`HH:MM`), for schedules whose `date` is missing.
pub fn local_start(date: &str, start: &str, tz: Tz) -> Option<DateTime<Utc>> {
    let date = NaiveDate::parse_from_str(date.get(..10)?, "%Y-%m-%d").ok()?;
    let time = NaiveTime::parse_from_str(start.trim(), "%H:%M")
        .or_else(|_| NaiveTime::parse_from_str(start.trim(), "%H:%M:%S"))
        .ok()?;
    tz.from_local_datetime(&date.and_time(time))
        .earliest()
        .map(|dt| dt.with_timezone(&Utc))
}

/// frab durations: `HH:MM`, `HH:MM:SS`, or `D:HH:MM:SS`; hours may exceed 24.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let parts: Vec<i64> = s
        .trim()
        .split(':')
        .map(|p| p.parse::<i64>().ok().filter(|n| *n >= 0))
        .collect::<Option<_>>()?;
    let seconds = match parts.as_slice() {
        [h, m] if *m < 60 => h * 3600 + m * 60,
        [h, m, s] if *m < 60 && *s < 60 => h * 3600 + m * 60 + s,
        [d, h, m, s] if *h < 24 && *m < 60 && *s < 60 => d * 86400 + h * 3600 + m * 60 + s,
        _ => return None,
    };
    Some(Duration::seconds(seconds))
}
