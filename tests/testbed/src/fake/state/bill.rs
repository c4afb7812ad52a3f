//! Hetzner's bill, as the fake keeps it: every server, primary IP and
//! snapshot ever made, with its lifetime by the fake's clock, costed at the
//! prices the fake's own `GET /pricing` serves. Deleted resources stay on it,
//! so it is also the record of lifetimes that tests read.
//!
//! The rules, from the spec's descriptions: servers and primary IPs are
//! "billed on an hourly basis", every started hour, up to their monthly
//! price ("you will pay whichever cost is lower"); snapshots are "billed on a
//! per GB basis", per GB-month (`image.price_per_gb_month`), prorated per
//! started hour. Amounts are net EUR with 10 decimals, as `/pricing` writes
//! them, computed in integers so that a total is exactly its lines' sum.
//!
//! Stand-ins: one monthly cap over a whole lifetime (Hetzner caps each
//! calendar month; rehearsals last days), and a month of 730 hours for the
//! snapshot's hourly share (the same month the fake's primary-IP prices use).

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::State;
use crate::catalogue;

/// Hours in the month that prorates a GB-month.
const HOURS_PER_MONTH: i128 = 730;
/// Amounts are kept in units of 10^-10 EUR (the precision `/pricing` serves).
const SCALE: i128 = 10_000_000_000;

/// What the ledger holds of one billable resource.
#[derive(Debug, Clone)]
pub struct Lifetime {
    kind: Kind,
    id: u64,
    name: String,
    labels: Value,
    /// Server type name, `ipv4`/`ipv6`, or `snapshot`.
    ty: String,
    /// None for snapshots: Hetzner's images are global.
    location: Option<String>,
    created: DateTime<Utc>,
    deleted: Option<DateTime<Utc>>,
    /// A snapshot's size in GB once its image is available.
    image_size: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Server,
    PrimaryIp,
    Snapshot,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Server => "server",
            Kind::PrimaryIp => "primary_ip",
            Kind::Snapshot => "snapshot",
        }
    }
}

/// `GET /testbed/bill`'s `bill`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Bill {
    pub currency: String,
    /// Every amount is net (before VAT at this rate), like `/pricing`'s `net`.
    pub vat_rate: String,
    /// The fake's clock (`START*SPEED@ORIGIN`), or None for real time.
    pub clock: Option<String>,
    /// When the bill was made, by that clock: the end of what still exists.
    pub now: String,
    pub resources: Vec<Line>,
    /// The sum of every line's cost.
    pub total: String,
}

/// One resource on the bill.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Line {
    /// `server`, `primary_ip` or `snapshot`.
    pub kind: String,
    pub id: u64,
    pub name: String,
    pub labels: Map<String, Value>,
    /// Server type, `ipv4`/`ipv6`, or `snapshot`.
    #[serde(rename = "type")]
    pub ty: String,
    pub location: Option<String>,
    pub created: String,
    pub deleted: Option<String>,
    /// Every hour begun from `created` to `deleted` (or now), at least one.
    pub started_hours: u64,
    pub price_hourly: String,
    pub price_monthly: String,
    /// `started_hours × price_hourly`, at most `price_monthly`.
    pub cost: String,
    /// Snapshots: the size billed, in GB (None while it is being made).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_size: Option<f64>,
}

fn time_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// A decimal string (`"0.0087980769"`) in units of 10^-10.
pub fn units(s: &str) -> Option<i128> {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if frac.len() > 10 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: i128 = whole.parse().ok()?;
    let frac: i128 = format!("{frac:0<10}").parse().ok()?;
    Some(whole * SCALE + frac)
}

/// Units of 10^-10 as a decimal string with 10 decimals.
pub fn decimal(u: i128) -> String {
    let sign = if u < 0 { "-" } else { "" };
    let u = u.abs();
    format!("{sign}{}.{:010}", u / SCALE, u % SCALE)
}

/// Every hour begun in `[created, end]`: a resource that existed at all has
/// begun its first hour.
pub fn started_hours(created: DateTime<Utc>, end: DateTime<Utc>) -> u64 {
    let micros = (end - created)
        .num_microseconds()
        .unwrap_or(i64::MAX)
        .max(0) as u64;
    micros.div_ceil(3_600_000_000).max(1)
}

/// `(hourly, monthly)` net of a `price_per_time` list entry for `location`.
fn per_location(prices: &Value, location: &str) -> Option<(i128, i128)> {
    let p = prices
        .as_array()?
        .iter()
        .find(|p| p["location"] == location)?;
    Some((
        units(p["price_hourly"]["net"].as_str()?)?,
        units(p["price_monthly"]["net"].as_str()?)?,
    ))
}

/// The `(hourly, monthly)` price of a resource from `/pricing`'s document.
fn price_of(pricing: &Value, l: &Lifetime) -> Option<(i128, i128)> {
    let named = |list: &str, key: &str| {
        pricing[list]
            .as_array()
            .and_then(|a| a.iter().find(|t| t[key] == l.ty.as_str()).cloned())
    };
    match l.kind {
        Kind::Server => per_location(
            &named("server_types", "name")?["prices"],
            l.location.as_deref()?,
        ),
        Kind::PrimaryIp => per_location(
            &named("primary_ips", "type")?["prices"],
            l.location.as_deref()?,
        ),
        Kind::Snapshot => {
            let per_gb = units(pricing["image"]["price_per_gb_month"]["net"].as_str()?)?;
            // image_size has two decimals: whole hundredths of a GB.
            let centi_gb = (l.image_size.unwrap_or(0.0) * 100.0).round() as i128;
            let monthly = round_div(per_gb * centi_gb, 100);
            Some((round_div(monthly, HOURS_PER_MONTH), monthly))
        }
    }
}

/// `a / b` rounded half up (both non-negative).
fn round_div(a: i128, b: i128) -> i128 {
    (2 * a + b) / (2 * b)
}

impl State {
    fn record(
        &mut self,
        kind: Kind,
        v: &Value,
        ty: String,
        location: Option<String>,
        created: DateTime<Utc>,
    ) {
        let Some(id) = v["id"].as_u64() else { return };
        self.ledger.insert(
            id,
            Lifetime {
                kind,
                id,
                name: v["name"].as_str().unwrap_or("").to_owned(),
                labels: v["labels"].clone(),
                ty,
                location,
                created,
                deleted: None,
                image_size: None,
            },
        );
    }

    pub(super) fn bill_server(&mut self, server: &Value, created: DateTime<Utc>) {
        let ty = server["server_type"]["name"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        let loc = server["location"]["name"].as_str().map(str::to_owned);
        self.record(Kind::Server, server, ty, loc, created);
    }

    pub(super) fn bill_primary_ip(&mut self, ip: &Value, created: DateTime<Utc>) {
        let ty = ip["type"].as_str().unwrap_or("").to_owned();
        let loc = ip["location"]["name"].as_str().map(str::to_owned);
        self.record(Kind::PrimaryIp, ip, ty, loc, created);
    }

    pub(super) fn bill_snapshot(&mut self, image: &Value, created: DateTime<Utc>) {
        // Snapshots have no name, only a description (what the console shows).
        let mut v = image.clone();
        v["name"] = image["description"].clone();
        self.record(Kind::Snapshot, &v, "snapshot".into(), None, created);
    }

    pub(super) fn snapshot_size(&mut self, id: u64, gb: f64) {
        if let Some(l) = self.ledger.get_mut(&id) {
            l.image_size = Some(gb);
        }
    }

    /// A snapshot whose action failed never existed for the bill.
    pub(super) fn unbill(&mut self, id: u64) {
        self.ledger.remove(&id);
    }

    /// The resource `v` (as last served) stopped existing at `at`.
    pub(super) fn billed_until(&mut self, v: &Value, at: DateTime<Utc>) {
        let Some(l) = v["id"].as_u64().and_then(|id| self.ledger.get_mut(&id)) else {
            return;
        };
        l.deleted = Some(at);
        if l.kind != Kind::Snapshot {
            l.name = v["name"].as_str().unwrap_or("").to_owned();
        }
        l.labels = v["labels"].clone();
    }

    /// The bill now: every resource ever made, what still exists billed up
    /// to the clock's now, at the prices `GET /pricing` serves.
    pub fn bill(&self) -> Bill {
        let now = self.now();
        let doc = catalogue::pricing_json();
        let pricing = &doc["pricing"];
        let mut total = 0i128;
        let resources = self
            .ledger
            .values()
            .map(|l| {
                // What still exists may have been renamed or relabelled since.
                let live = match l.kind {
                    Kind::Server => self.servers.get(&l.id),
                    Kind::PrimaryIp => self.primary_ips.get(&l.id),
                    Kind::Snapshot => self.images.get(&l.id),
                };
                let (name, labels) = match (live, l.kind) {
                    (Some(v), Kind::Snapshot) => (l.name.clone(), v["labels"].clone()),
                    (Some(v), _) => (
                        v["name"].as_str().unwrap_or("").to_owned(),
                        v["labels"].clone(),
                    ),
                    (None, _) => (l.name.clone(), l.labels.clone()),
                };
                let hours = started_hours(l.created, l.deleted.unwrap_or(now));
                // A type or location /pricing does not list costs nothing
                // here; the fake refuses to create such resources anyway.
                let (hourly, monthly) = price_of(pricing, l).unwrap_or((0, 0));
                let cost = (hourly * hours as i128).min(monthly);
                total += cost;
                Line {
                    kind: l.kind.name().to_owned(),
                    id: l.id,
                    name,
                    labels: labels.as_object().cloned().unwrap_or_default(),
                    ty: l.ty.clone(),
                    location: l.location.clone(),
                    created: time_text(l.created),
                    deleted: l.deleted.map(time_text),
                    started_hours: hours,
                    price_hourly: decimal(hourly),
                    price_monthly: decimal(monthly),
                    cost: decimal(cost),
                    image_size: l.image_size,
                }
            })
            .collect();
        Bill {
            currency: pricing["currency"].as_str().unwrap_or("EUR").to_owned(),
            vat_rate: pricing["vat_rate"].as_str().unwrap_or("").to_owned(),
            clock: (!self.clock.is_real()).then(|| self.clock.to_string()),
            now: time_text(now),
            resources,
            total: decimal(total),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn every_started_hour_counts_and_the_first_always_does() {
        let c = t("2030-01-01T08:00:00Z");
        assert_eq!(started_hours(c, c), 1);
        assert_eq!(started_hours(c, t("2030-01-01T09:00:00Z")), 1);
        assert_eq!(started_hours(c, t("2030-01-01T09:00:00.000001Z")), 2);
        assert_eq!(started_hours(c, t("2030-01-01T09:01:00Z")), 2);
        assert_eq!(started_hours(c, t("2030-01-03T08:00:00Z")), 48);
    }

    #[test]
    fn amounts_read_and_write_as_pricing_does() {
        assert_eq!(units("0.0087980769"), Some(87_980_769));
        assert_eq!(units("5.49"), Some(54_900_000_000));
        assert_eq!(units("12"), Some(120_000_000_000));
        assert_eq!(units("0.00000000001"), None);
        assert_eq!(units("1.2e3"), None);
        assert_eq!(decimal(87_980_769 * 2), "0.0175961538");
        assert_eq!(decimal(54_900_000_000), "5.4900000000");
        assert_eq!(round_div(5, 2), 3);
        assert_eq!(round_div(4, 3), 1);
    }
}
