//! The fake's DNS zones: the rrsets API behaves like Hetzner's (records per
//! type, TXT quoting, label selectors, an rrset emptied by remove_records is
//! gone, uniqueness), every exchange fits the spec, and the fake's DNS server
//! answers what the API holds (asked with dig, a real resolver).

use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use venue_testbed::spec::{self, Spec};
use venue_testbed::{FakeCloud, FakeConfig, FakeHandle};

fn call(
    fake: &FakeHandle,
    method: &str,
    path: &str,
    query: &[(&str, &str)],
    body: Value,
) -> (u16, Value) {
    // Through HTTP, so that the exchange is recorded and checked.
    let url = format!("{}{}", fake.url, path);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut req = reqwest::Client::new()
            .request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), url)
            .bearer_auth(fake.token())
            .query(query);
        if !body.is_null() {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    })
}

fn dig(port: u16, name: &str, kind: &str) -> (String, Vec<String>) {
    let out = Command::new("dig")
        .args([
            "+time=2",
            "+tries=1",
            "@127.0.0.1",
            "-p",
            &port.to_string(),
            name,
            kind,
        ])
        .output()
        .expect("dig (apt-get install dnsutils)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = text
        .split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or("")
        .to_owned();
    let short = Command::new("dig")
        .args([
            "+short",
            "+tcp",
            "@127.0.0.1",
            "-p",
            &port.to_string(),
            name,
            kind,
        ])
        .output()
        .unwrap();
    let mut answers: Vec<String> = String::from_utf8_lossy(&short.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    answers.sort();
    (status, answers)
}

#[test]
fn zones_and_rrsets_follow_the_spec_and_the_dns_answers_what_they_hold() {
    let (_, fake) = FakeCloud::start(FakeConfig {
        action_duration: Duration::from_millis(10),
        ..FakeConfig::default()
    });
    let port = fake.start_dns().port();

    let (s, z) = call(
        &fake,
        "POST",
        "/zones",
        &[],
        json!({"name": "example.org", "mode": "primary"}),
    );
    assert_eq!(s, 201, "{z}");
    let (s, _) = call(
        &fake,
        "POST",
        "/zones",
        &[],
        json!({"name": "example.org", "mode": "primary"}),
    );
    assert_eq!(s, 409);
    let (s, v) = call(
        &fake,
        "GET",
        "/zones",
        &[("name", "example.org")],
        Value::Null,
    );
    assert_eq!((s, v["zones"].as_array().unwrap().len()), (200, 1));
    let (s, v) = call(
        &fake,
        "GET",
        "/zones",
        &[("name", "example.com")],
        Value::Null,
    );
    assert_eq!((s, v["zones"].as_array().unwrap().len()), (200, 0));

    let labelled = json!({"venue/event": "ev"});
    let (s, v) = call(
        &fake,
        "POST",
        "/zones/example.org/rrsets",
        &[],
        json!({
        "name": "host.ev", "type": "A", "ttl": 60, "labels": labelled,
        "records": [{"value": "192.0.2.1"}, {"value": "192.0.2.2"}]}),
    );
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["rrset"]["id"], "host.ev/A");
    // Wrong values, names and duplicates are refused as the API does.
    for (body, code) in [
        (
            json!({"name": "x", "type": "A", "records": [{"value": "2001:db8::1"}]}),
            400,
        ),
        (
            json!({"name": "x", "type": "TXT", "records": [{"value": "unquoted"}]}),
            400,
        ),
        (
            json!({"name": "x.example.org", "type": "A", "records": [{"value": "192.0.2.1"}]}),
            400,
        ),
        (
            json!({"name": "X", "type": "A", "records": [{"value": "192.0.2.1"}]}),
            400,
        ),
        (
            json!({"name": "host.ev", "type": "A", "records": [{"value": "192.0.2.9"}]}),
            409,
        ),
    ] {
        let (s, v) = call(
            &fake,
            "POST",
            "/zones/example.org/rrsets",
            &[],
            body.clone(),
        );
        assert_eq!(s, code, "{body} → {v}");
    }
    let (s, _) = call(
        &fake,
        "POST",
        "/zones/example.org/rrsets/_acme-challenge.ev/TXT/actions/add_records",
        &[],
        json!({"records": [{"value": "\"token-1\""}, {"value": "\"token-2\""}]}),
    );
    assert_eq!(s, 201);
    let (s, _) = call(
        &fake,
        "POST",
        "/zones/example.org/rrsets",
        &[],
        json!({
        "name": "www", "type": "A", "records": [{"value": "192.0.2.80"}]}),
    );
    assert_eq!(s, 201);

    // Label selectors pick the event's record sets only.
    let (_, v) = call(
        &fake,
        "GET",
        "/zones/example.org/rrsets",
        &[("label_selector", "venue/event=ev")],
        Value::Null,
    );
    let ids: Vec<&str> = v["rrsets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["host.ev/A"]);
    let (_, v) = call(
        &fake,
        "GET",
        "/zones/example.org/rrsets",
        &[("type", "TXT")],
        Value::Null,
    );
    assert_eq!(v["rrsets"].as_array().unwrap().len(), 1);

    // What a resolver sees.
    assert_eq!(
        dig(port, "host.ev.example.org", "A"),
        (
            "NOERROR".into(),
            vec!["192.0.2.1".into(), "192.0.2.2".into()]
        )
    );
    assert_eq!(
        dig(port, "_acme-challenge.ev.example.org", "TXT").1,
        vec!["\"token-1\"".to_owned(), "\"token-2\"".to_owned()]
    );
    assert_eq!(
        dig(port, "host.ev.example.org", "AAAA"),
        ("NOERROR".into(), vec![]),
        "the name exists, not the type"
    );
    assert_eq!(dig(port, "nobody.example.org", "A").0, "NXDOMAIN");
    assert_eq!(
        dig(port, "host.example.com", "A").0,
        "REFUSED",
        "not our zone"
    );
    assert_eq!(
        dig(port, "example.org", "NS").1.len(),
        3,
        "the zone's default NS records"
    );

    // set_records replaces, change_ttl changes, remove_records of the last
    // record deletes the set; every change is seen by the DNS at once.
    let (s, _) = call(
        &fake,
        "POST",
        "/zones/example.org/rrsets/host.ev/A/actions/set_records",
        &[],
        json!({"records": [{"value": "192.0.2.3"}]}),
    );
    assert_eq!(s, 201);
    assert_eq!(dig(port, "host.ev.example.org", "A").1, vec!["192.0.2.3"]);
    let (s, _) = call(
        &fake,
        "POST",
        "/zones/example.org/rrsets/host.ev/A/actions/change_ttl",
        &[],
        json!({"ttl": 300}),
    );
    assert_eq!(s, 201);
    let (_, v) = call(
        &fake,
        "GET",
        "/zones/example.org/rrsets/host.ev/A",
        &[],
        Value::Null,
    );
    assert_eq!(v["rrset"]["ttl"], 300);
    for value in ["\"token-1\"", "\"token-2\""] {
        let (s, _) = call(
            &fake,
            "POST",
            "/zones/example.org/rrsets/_acme-challenge.ev/TXT/actions/remove_records",
            &[],
            json!({"records": [{"value": value}]}),
        );
        assert_eq!(s, 201);
    }
    let (s, _) = call(
        &fake,
        "GET",
        "/zones/example.org/rrsets/_acme-challenge.ev/TXT",
        &[],
        Value::Null,
    );
    assert_eq!(s, 404, "emptied, so deleted");
    assert_eq!(
        dig(port, "_acme-challenge.ev.example.org", "TXT").0,
        "NXDOMAIN"
    );
    let (s, v) = call(
        &fake,
        "DELETE",
        "/zones/example.org/rrsets/host.ev/A",
        &[],
        Value::Null,
    );
    assert_eq!(s, 201);
    let id = v["action"]["id"].as_u64().unwrap();
    std::thread::sleep(Duration::from_millis(30));
    let (s, v) = call(
        &fake,
        "GET",
        "/zones/actions",
        &[("id", &id.to_string())],
        Value::Null,
    );
    assert_eq!(
        (s, v["actions"][0]["status"].as_str()),
        (200, Some("success"))
    );
    assert_eq!(dig(port, "www.example.org", "A").1, vec!["192.0.2.80"]);

    let mut spec = Spec::load(&spec::default_path()).expect("the OpenAPI spec");
    let xs = fake.exchanges();
    let errors = spec.violations(&xs);
    assert!(
        errors.is_empty(),
        "{} of {} exchanges break the spec:\n{}",
        errors.len(),
        xs.len(),
        errors.join("\n")
    );
}
