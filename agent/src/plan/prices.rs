//! What servers cost. Prices are kept in micro-euros (integers), so that a
//! plan's total is exactly the sum of its parts.

use std::collections::BTreeMap;

use serde::Serialize;

/// One server type's price at one location (`*`: any location).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Price {
    /// Net price of every started hour, in micro-EUR.
    pub hourly_micro_eur: u64,
    /// Net monthly cap, in micro-EUR: Hetzner never bills more than this per month.
    pub monthly_micro_eur: u64,
}

/// Outgoing traffic of one server type at one location: what a month of
/// the server includes, and what each TB beyond costs. (Hetzner bills
/// outgoing traffic only, per started TB.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Traffic {
    pub included_bytes_per_month: u64,
    pub per_tb_micro_eur: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PriceTable {
    /// Where the prices come from ("bundled", "api").
    pub source: String,
    /// When they were valid (ISO date).
    pub date: String,
    entries: BTreeMap<(String, String), Price>,
    #[serde(skip)]
    traffic: BTreeMap<(String, String), Traffic>,
}

/// Hetzner Cloud list prices, net of VAT, Germany and Finland.
/// Monthly prices as published on hetzner.com/cloud and transcribed in public
/// price tables dated 2026-09-08/09; hourly prices are the API's
/// `price_hourly`, which is the monthly price / 624 (checked against an API
/// answer quoting ccx33 at 0.2219 EUR/h and 138.49 EUR/month).
/// With `HCLOUD_TOKEN` set, live prices from `GET /pricing` replace these.
const BUNDLED: &[(&str, u64, u64)] = &[
    // (server type, hourly micro-EUR, monthly micro-EUR)
    ("cx23", 8_800, 5_490_000),      // 2 shared vCPU, 4 GB
    ("cx33", 13_600, 8_490_000),     // 4 shared vCPU, 8 GB
    ("ccx23", 137_800, 85_990_000),  // 4 dedicated vCPU, 16 GB
    ("ccx33", 221_900, 138_490_000), // 8 dedicated vCPU, 32 GB
];
pub const BUNDLED_DATE: &str = "2026-09-08";

/// Traffic in Germany and Finland (network zone eu-central): 20 TB (TiB, as
/// the API counts bytes: 21990232555520) included per month, 1.00 EUR net
/// per TB beyond, as the official API document's /pricing example quotes
/// them (reference/hcloud-openapi.json). Other locations include less and
/// are not bundled: live prices (`HCLOUD_TOKEN`) give them.
const BUNDLED_TRAFFIC_LOCATIONS: &[&str] = &["fsn1", "nbg1", "hel1"];
const BUNDLED_TRAFFIC: Traffic = Traffic {
    included_bytes_per_month: 21_990_232_555_520,
    per_tb_micro_eur: 1_000_000,
};

impl PriceTable {
    pub fn bundled() -> PriceTable {
        let entries = BUNDLED
            .iter()
            .map(|(t, h, m)| {
                let price = Price {
                    hourly_micro_eur: *h,
                    monthly_micro_eur: *m,
                };
                (((*t).to_owned(), "*".to_owned()), price)
            })
            .collect();
        let traffic = BUNDLED
            .iter()
            .flat_map(|(t, _, _)| {
                BUNDLED_TRAFFIC_LOCATIONS
                    .iter()
                    .map(move |l| (((*t).to_owned(), (*l).to_owned()), BUNDLED_TRAFFIC))
            })
            .collect();
        PriceTable {
            source: "bundled".into(),
            date: BUNDLED_DATE.into(),
            entries,
            traffic,
        }
    }

    /// Adds traffic terms: (server type, location, traffic).
    pub fn with_traffic(
        mut self,
        traffic: impl IntoIterator<Item = (String, String, Traffic)>,
    ) -> PriceTable {
        self.traffic
            .extend(traffic.into_iter().map(|(t, l, x)| ((t, l), x)));
        self
    }

    /// The traffic terms of `server_type` at `location`, if known.
    pub fn traffic(&self, server_type: &str, location: &str) -> Option<Traffic> {
        self.traffic
            .get(&(server_type.to_owned(), location.to_owned()))
            .copied()
    }

    /// A table from live prices: (server type, location, price).
    pub fn from_entries(
        source: &str,
        date: &str,
        entries: impl IntoIterator<Item = (String, String, Price)>,
    ) -> PriceTable {
        PriceTable {
            source: source.into(),
            date: date.into(),
            entries: entries.into_iter().map(|(t, l, p)| ((t, l), p)).collect(),
            traffic: BTreeMap::new(),
        }
    }

    /// The price of `server_type` at `location`, or its location-independent price.
    pub fn get(&self, server_type: &str, location: &str) -> Option<Price> {
        let key = |l: &str| (server_type.to_owned(), l.to_owned());
        self.entries
            .get(&key(location))
            .or_else(|| self.entries.get(&key("*")))
            .copied()
    }
}

/// Euros from micro-euros, for output.
pub fn eur(micro: u64) -> f64 {
    micro as f64 / 1_000_000.0
}

/// "12.34" from micro-euros, rounded to the cent.
pub fn eur_text(micro: u64) -> String {
    let cents = (micro + 5_000) / 10_000;
    format!("{}.{:02}", cents / 100, cents % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hourly_is_monthly_over_624_within_a_tenth_of_a_cent() {
        for (t, h, m) in BUNDLED {
            let derived = m / 624;
            assert!(derived.abs_diff(*h) < 1_000, "{t}: {h} vs {derived}");
        }
    }

    #[test]
    fn location_specific_price_wins() {
        let p = |h| Price {
            hourly_micro_eur: h,
            monthly_micro_eur: h * 624,
        };
        let t = PriceTable::from_entries(
            "api",
            "2026-11-23",
            [
                ("cx23".into(), "*".into(), p(1)),
                ("cx23".into(), "ash".into(), p(2)),
            ],
        );
        assert_eq!(t.get("cx23", "ash").unwrap().hourly_micro_eur, 2);
        assert_eq!(t.get("cx23", "fsn1").unwrap().hourly_micro_eur, 1);
        assert!(t.get("cx99", "fsn1").is_none());
    }

    #[test]
    fn euro_text_rounds_to_cents() {
        assert_eq!(eur_text(1_234_567), "1.23");
        assert_eq!(eur_text(1_235_000), "1.24");
        assert_eq!(eur_text(0), "0.00");
    }
}
