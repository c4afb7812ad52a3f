//! Live prices: `GET /pricing` (one request for every server type and
//! location), turned into the plan's [`PriceTable`]. The API quotes net
//! prices as decimal strings ("0.2219000000"); we read them digit by digit
//! into micro-euros, never through a float.

use serde_json::Value;

use super::client::Client;
use super::error::CloudError;
use crate::plan::prices::{Price, PriceTable, Traffic};

/// "0.2219000000" → 221_900 micro-EUR (rounded half up at the 7th decimal).
pub fn micro_eur(text: &str) -> Option<u64> {
    let (int, frac) = text.trim().split_once('.').unwrap_or((text.trim(), ""));
    let int: u64 = if int.is_empty() { 0 } else { int.parse().ok()? };
    if !frac.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let mut digits: Vec<u64> = frac.chars().map(|c| c as u64 - '0' as u64).collect();
    digits.resize(7, 0);
    let micro = digits[..6].iter().fold(0u64, |acc, d| acc * 10 + d) + u64::from(digits[6] >= 5);
    int.checked_mul(1_000_000)?.checked_add(micro)
}

/// Reads `GET /pricing` into a price table dated today.
pub async fn live(client: &Client) -> Result<PriceTable, CloudError> {
    let v = client
        .request(reqwest::Method::GET, "/pricing", &[], None)
        .await?;
    from_pricing(&v).ok_or_else(|| CloudError::Decode {
        method: "GET".into(),
        path: "/pricing".into(),
        detail: "no readable server type prices".into(),
    })
}

pub fn from_pricing(v: &Value) -> Option<PriceTable> {
    let mut entries = Vec::new();
    let mut traffic = Vec::new();
    for t in v["pricing"]["server_types"].as_array()? {
        let name = t["name"].as_str()?;
        for p in t["prices"].as_array()? {
            let location = p["location"].as_str()?;
            let hourly = micro_eur(p["price_hourly"]["net"].as_str()?)?;
            let monthly = micro_eur(p["price_monthly"]["net"].as_str()?)?;
            if let (Some(bytes), Some(per_tb)) = (
                p["included_traffic"].as_u64(),
                p["price_per_tb_traffic"]["net"]
                    .as_str()
                    .and_then(micro_eur),
            ) {
                traffic.push((
                    name.to_owned(),
                    location.to_owned(),
                    Traffic {
                        included_bytes_per_month: bytes,
                        per_tb_micro_eur: per_tb,
                    },
                ));
            }
            entries.push((
                name.to_owned(),
                location.to_owned(),
                Price {
                    hourly_micro_eur: hourly,
                    monthly_micro_eur: monthly,
                },
            ));
        }
    }
    if entries.is_empty() {
        return None;
    }
    let today = chrono::Utc::now().date_naive().to_string();
    Some(PriceTable::from_entries("api", &today, entries).with_traffic(traffic))
}

/// Live prices when `HCLOUD_TOKEN` is set, else the bundled table. A
/// failure to read them is reported and falls back to the bundled table:
/// `plan` and `status` are worth having with slightly old prices.
pub async fn live_or_bundled() -> (PriceTable, Option<String>) {
    let client = match Client::from_env() {
        Ok(c) => c,
        Err(CloudError::NoToken) => return (PriceTable::bundled(), None),
        Err(e) => return (PriceTable::bundled(), Some(e.to_string())),
    };
    match live(&client).await {
        Ok(t) => (t, None),
        Err(e) => (
            PriceTable::bundled(),
            Some(format!(
                "live prices unavailable, using the bundled table: {e}"
            )),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_strings_become_micro_euros() {
        assert_eq!(micro_eur("0.2219000000"), Some(221_900));
        assert_eq!(micro_eur("138.4900000000"), Some(138_490_000));
        assert_eq!(micro_eur("0.0000005"), Some(1));
        assert_eq!(micro_eur("0.0000004"), Some(0));
        assert_eq!(micro_eur("5"), Some(5_000_000));
        assert_eq!(micro_eur("x.1"), None);
        assert_eq!(micro_eur("1.2e3"), None);
    }
}
