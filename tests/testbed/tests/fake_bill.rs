//! The fake's clock and Hetzner's bill: every timestamp the fake writes comes
//! from its clock; every server, primary IP and snapshot is billed per
//! started hour of its life by that clock, at the prices `/pricing` serves,
//! and stays on `GET /testbed/bill` after it is deleted.

use std::time::Duration;

use chrono::{DateTime, Utc};
use conference::clock::Clock;
use serde_json::{json, Value};
use venue_testbed::spec::{self, Spec};
use venue_testbed::{Bill, BillLine, FakeCloud, FakeConfig, FakeHandle};

const T0: &str = "2030-01-01T08:00:00Z";
/// How the API writes T0 (`created`, `started`, `finished`).
const T0_API: &str = "2030-01-01T08:00:00+00:00";

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn minutes(m: i64) -> chrono::Duration {
    chrono::Duration::minutes(m)
}

/// A clock that reads `at` for as long as a test runs (a speed so small
/// that no microsecond passes), so that lifetimes are exact.
fn stopped(at: DateTime<Utc>) -> Clock {
    Clock::anchored(at, 1e-12, Utc::now())
}

struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    fn new(url: &str, fake: &FakeHandle) -> Api {
        Api {
            http: reqwest::Client::new(),
            base: url.trim_end_matches("/v1").to_owned(),
            token: fake.token(),
        }
    }
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self
            .http
            .request(m, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json::<Value>().await.unwrap_or(Value::Null))
    }
    async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (s, v) = self.call(method, path, body).await;
        assert!((200..300).contains(&s), "{method} {path}: {s} {v}");
        v
    }
    /// Waits for an action to end; returns it.
    async fn done(&self, action: &Value) -> Value {
        let id = action["id"].as_u64().unwrap();
        for _ in 0..500 {
            let v = self.ok("GET", &format!("/v1/actions/{id}"), None).await;
            if v["action"]["status"] != "running" {
                return v["action"].clone();
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("action {id} never ended");
    }
    async fn bill(&self) -> Bill {
        let v = self.ok("GET", "/testbed/bill", None).await;
        serde_json::from_value(v["bill"].clone()).unwrap()
    }
    /// `/pricing`'s net (hourly, monthly) in 10^-10 EUR for a server type
    /// (or, with `primary`, a primary IP type) at a location.
    async fn price(&self, list: &str, key: &str, name: &str, location: &str) -> (i128, i128) {
        let p = self.ok("GET", "/v1/pricing", None).await;
        let entry = p["pricing"][list]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e[key] == name)
            .unwrap_or_else(|| panic!("{name} in /pricing {list}"))["prices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["location"] == location)
            .unwrap()
            .clone();
        (
            units(entry["price_hourly"]["net"].as_str().unwrap()),
            units(entry["price_monthly"]["net"].as_str().unwrap()),
        )
    }
    async fn server(&self, name: &str, ty: &str, location: &str) -> (u64, Value) {
        let v = self
            .ok(
                "POST",
                "/v1/servers",
                Some(
                    json!({"name": name, "server_type": ty, "image": "ubuntu-24.04",
                            "location": location, "labels": {"venue/event": "bill"}}),
                ),
            )
            .await;
        self.done(&v["action"]).await;
        (v["server"]["id"].as_u64().unwrap(), v)
    }
    async fn delete_server(&self, id: u64) -> Value {
        let v = self.ok("DELETE", &format!("/v1/servers/{id}"), None).await;
        self.done(&v["action"]).await
    }
}

/// A decimal string in units of 10^-10 (written independently of the fake's).
fn units(s: &str) -> i128 {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    assert!(frac.len() <= 10, "{s}");
    whole.parse::<i128>().unwrap() * 10_000_000_000
        + format!("{frac:0<10}").parse::<i128>().unwrap()
}

fn line<'a>(bill: &'a Bill, kind: &str, pred: impl Fn(&BillLine) -> bool) -> &'a BillLine {
    let found: Vec<&BillLine> = bill
        .resources
        .iter()
        .filter(|l| l.kind == kind && pred(l))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one {kind} line wanted: {:#?}",
        bill.resources
    );
    found[0]
}

fn spec_clean(fake: &FakeHandle) {
    let mut spec = Spec::load(&spec::default_path()).expect("the OpenAPI spec");
    let xs = fake.exchanges();
    let errors = spec.violations(&xs);
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

fn start(clock: Clock) -> (String, FakeHandle) {
    FakeCloud::start(FakeConfig {
        action_duration: Duration::from_millis(20),
        clock,
        ..FakeConfig::default()
    })
}

#[tokio::test]
async fn a_server_of_61_minutes_bills_two_hours_with_its_ips_and_stays_on_the_bill() {
    let (url, fake) = start(stopped(t(T0)));
    let api = Api::new(&url, &fake);
    let (id, created) = api.server("bbb-1", "cx33", "fsn1").await;
    // Every timestamp comes from the fake's clock, not the machine's.
    assert_eq!(created["server"]["created"], T0_API);
    assert_eq!(created["action"]["started"], T0_API);
    let ips = api.ok("GET", "/v1/primary_ips", None).await;
    let ips = ips["primary_ips"].as_array().unwrap();
    assert_eq!(ips.len(), 2);
    assert!(ips.iter().all(|p| p["created"] == T0_API), "{ips:?}");

    fake.set_clock(stopped(t(T0) + minutes(61)));
    let deleted = api.delete_server(id).await;
    assert_eq!(deleted["finished"], "2030-01-01T09:01:00+00:00");
    let servers = api.ok("GET", "/v1/servers", None).await;
    assert_eq!(servers["servers"], json!([]));

    let bill = api.bill().await;
    assert_eq!(bill.currency, "EUR");
    let s = line(&bill, "server", |l| l.id == id);
    assert_eq!(
        (s.name.as_str(), s.ty.as_str(), s.location.as_deref()),
        ("bbb-1", "cx33", Some("fsn1"))
    );
    assert_eq!(s.labels["venue/event"], "bill");
    assert_eq!(t(&s.created), t(T0));
    assert_eq!(t(s.deleted.as_deref().unwrap()), t(T0) + minutes(61));
    assert_eq!(s.started_hours, 2);
    let (hourly, _) = api.price("server_types", "name", "cx33", "fsn1").await;
    assert_eq!(units(&s.price_hourly), hourly);
    assert_eq!(units(&s.cost), 2 * hourly);

    let (v4_hourly, _) = api.price("primary_ips", "type", "ipv4", "fsn1").await;
    let v4 = line(&bill, "primary_ip", |l| l.ty == "ipv4");
    assert_eq!((v4.started_hours, units(&v4.cost)), (2, 2 * v4_hourly));
    assert_eq!(t(v4.deleted.as_deref().unwrap()), t(T0) + minutes(61));
    assert!(v4_hourly > 0, "an IPv4 costs money on Hetzner");
    let v6 = line(&bill, "primary_ip", |l| l.ty == "ipv6");
    assert_eq!(v6.started_hours, 2);
    let total: i128 = bill.resources.iter().map(|l| units(&l.cost)).sum();
    assert_eq!(units(&bill.total), total);
    assert_eq!(
        units(&bill.total),
        2 * hourly + 2 * v4_hourly + units(&v6.cost)
    );

    // Hours later the deleted server's bill is the same.
    fake.set_clock(stopped(t(T0) + minutes(600)));
    let later = api.bill().await;
    assert_eq!(later.resources, bill.resources);
    assert_eq!(t(&later.now), t(T0) + minutes(600));

    // The bill is the project's: the token guards it.
    let anon = reqwest::get(format!("{}/testbed/bill", api.base))
        .await
        .unwrap();
    assert_eq!(anon.status().as_u16(), 401);
    // The API's traffic with a clock of its own still fits the spec.
    spec_clean(&fake);
}

#[tokio::test]
async fn started_hours_at_the_edges_and_what_still_runs() {
    let (url, fake) = start(stopped(t(T0)));
    let api = Api::new(&url, &fake);
    let (hour, _) = api.server("exactly-an-hour", "cx23", "fsn1").await;
    let (instant, _) = api.server("gone-at-once", "cx23", "fsn1").await;
    let (running, _) = api.server("still-running", "cx23", "fsn1").await;
    api.delete_server(instant).await;
    fake.set_clock(stopped(t(T0) + minutes(60)));
    api.delete_server(hour).await;
    fake.set_clock(stopped(t(T0) + minutes(121)));
    let bill = api.bill().await;
    let hours = |id: u64| line(&bill, "server", |l| l.id == id).started_hours;
    assert_eq!(hours(hour), 1, "60 minutes are one hour");
    assert_eq!(hours(instant), 1, "a server that existed began an hour");
    assert_eq!(hours(running), 3, "121 minutes so far");
    let r = line(&bill, "server", |l| l.id == running);
    assert_eq!(r.deleted, None);
    assert_eq!(bill.clock, Some(fake.clock().to_string()));
    // Renamed while it runs: the bill names it as it is now.
    api.ok(
        "PUT",
        &format!("/v1/primary_ips/{}", {
            let ips = api.ok("GET", "/v1/primary_ips", None).await;
            ips["primary_ips"][0]["id"].as_u64().unwrap()
        }),
        Some(json!({"name": "renamed"})),
    )
    .await;
    let bill = api.bill().await;
    assert!(bill.resources.iter().any(|l| l.name == "renamed"));
}

#[tokio::test]
async fn a_month_costs_at_most_the_monthly_price_of_its_location() {
    let (url, fake) = start(stopped(t(T0)));
    let api = Api::new(&url, &fake);
    let (id, _) = api.server("long", "cx23", "ash").await;
    fake.set_clock(stopped(t(T0) + chrono::Duration::days(40)));
    api.delete_server(id).await;
    let bill = api.bill().await;
    let s = line(&bill, "server", |l| l.id == id);
    assert_eq!(s.started_hours, 960);
    let (hourly, monthly) = api.price("server_types", "name", "cx23", "ash").await;
    let (eu_hourly, _) = api.price("server_types", "name", "cx23", "fsn1").await;
    assert_ne!(hourly, eu_hourly, "Ashburn's price is its own");
    assert_eq!(units(&s.price_hourly), hourly);
    assert!(960 * hourly > monthly);
    assert_eq!(units(&s.cost), monthly);
}

#[tokio::test]
async fn primary_ips_and_snapshots_are_billed_and_a_failed_snapshot_is_not() {
    let (url, fake) = start(stopped(t(T0)));
    let api = Api::new(&url, &fake);
    let ip = api
        .ok(
            "POST",
            "/v1/primary_ips",
            Some(json!({"name": "spare", "type": "ipv4", "location": "hel1",
                        "assignee_type": "server", "auto_delete": false})),
        )
        .await;
    assert_eq!(ip["primary_ip"]["created"], T0_API);
    let ip_id = ip["primary_ip"]["id"].as_u64().unwrap();

    let (server, _) = api.server("builder", "cx23", "fsn1").await;
    let made = api
        .ok(
            "POST",
            &format!("/v1/servers/{server}/actions/create_image"),
            Some(json!({"type": "snapshot", "description": "venue-base", "labels": {"venue/image": "base"}})),
        )
        .await;
    assert_eq!(made["image"]["created"], T0_API);
    api.done(&made["action"]).await;
    let image_id = made["image"]["id"].as_u64().unwrap();
    fake.fail_next_actions(1);
    let failed = api
        .ok(
            "POST",
            &format!("/v1/servers/{server}/actions/create_image"),
            Some(json!({"type": "snapshot", "description": "broken"})),
        )
        .await;
    assert_eq!(api.done(&failed["action"]).await["status"], "error");

    fake.set_clock(stopped(t(T0) + minutes(180)));
    api.ok("DELETE", &format!("/v1/primary_ips/{ip_id}"), None)
        .await;
    fake.set_clock(stopped(t(T0) + minutes(330)));
    let (s, _) = api
        .call("DELETE", &format!("/v1/images/{image_id}"), None)
        .await;
    assert_eq!(s, 204);

    let bill = api.bill().await;
    let p = line(&bill, "primary_ip", |l| l.id == ip_id);
    let (v4_hourly, _) = api.price("primary_ips", "type", "ipv4", "hel1").await;
    assert_eq!(
        (p.name.as_str(), p.location.as_deref()),
        ("spare", Some("hel1"))
    );
    assert_eq!((p.started_hours, units(&p.cost)), (3, 3 * v4_hourly));

    let snap = line(&bill, "snapshot", |l| l.id == image_id);
    assert_eq!(snap.name, "venue-base");
    assert_eq!(snap.labels["venue/image"], "base");
    assert_eq!(snap.location, None);
    assert_eq!(snap.started_hours, 6, "5.5 hours began 6");
    let size = snap.image_size.expect("the snapshot's size");
    assert!(size > 0.0);
    // Per GB-month, prorated per hour of a 730-hour month.
    let pricing = api.ok("GET", "/v1/pricing", None).await;
    let per_gb = units(
        pricing["pricing"]["image"]["price_per_gb_month"]["net"]
            .as_str()
            .unwrap(),
    );
    let monthly = per_gb * (size * 100.0).round() as i128 / 100;
    assert_eq!(units(&snap.price_monthly), monthly);
    let hourly = (2 * monthly + 730) / (2 * 730);
    assert!(hourly > 0);
    assert_eq!(units(&snap.price_hourly), hourly);
    assert_eq!(units(&snap.cost), 6 * hourly);
    assert!(
        !bill.resources.iter().any(|l| l.name == "broken"),
        "a snapshot whose action failed never existed: {:#?}",
        bill.resources
    );
}

#[tokio::test]
async fn an_accelerated_clock_dates_everything_and_bills_its_hours() {
    // 36 000 times real time: a venue hour passes in 100 ms.
    let clock = Clock::accelerated(t(T0), 36_000.0);
    let (url, fake) = start(clock);
    let api = Api::new(&url, &fake);
    let (id, created) = api.server("fast", "cx23", "fsn1").await;
    let c = created["server"]["created"].as_str().unwrap();
    // Some real milliseconds passed since the clock started: venue minutes.
    assert!(t(c) >= t(T0) && t(c) < t(T0) + minutes(600), "{c}");
    tokio::time::sleep(Duration::from_millis(350)).await;
    let action = api.delete_server(id).await;
    let finished = t(action["finished"].as_str().unwrap());
    let bill = api.bill().await;
    assert_eq!(bill.clock.as_deref(), Some(clock.to_string().as_str()));
    let s = line(&bill, "server", |l| l.id == id);
    let (born, died) = (t(&s.created), t(s.deleted.as_deref().unwrap()));
    assert_eq!(
        born.timestamp(),
        t(c).timestamp(),
        "the API's created, to the second"
    );
    assert_eq!(
        died.timestamp(),
        finished.timestamp(),
        "deleted when its delete action ended"
    );
    let lived = died - born;
    assert!(lived >= minutes(210), "350 ms are 3.5 venue hours: {lived}");
    assert_eq!(
        s.started_hours as i64,
        (lived.num_microseconds().unwrap() + 3_599_999_999) / 3_600_000_000
    );
    let (hourly, _) = api.price("server_types", "name", "cx23", "fsn1").await;
    assert_eq!(units(&s.cost), s.started_hours as i128 * hourly);
}
