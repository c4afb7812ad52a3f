//! The fake answers like the API: its behaviour (auth, uniqueness, labels,
//! pagination, actions, rate limit, faults) and, over all of that traffic,
//! the spec check of every request and answer.

use std::time::Duration;

use serde_json::{json, Value};
use venue_testbed::spec::{self, Spec};
use venue_testbed::{FakeCloud, FakeConfig, FakeHandle, Fault};

struct Api {
    http: reqwest::Client,
    url: String,
    token: String,
}

impl Api {
    fn new(url: &str, token: &str) -> Api {
        Api {
            http: reqwest::Client::new(),
            url: url.to_owned(),
            token: token.to_owned(),
        }
    }
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self
            .http
            .request(m, format!("{}{}", self.url, path))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        match req.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let v = resp.json::<Value>().await.unwrap_or(Value::Null);
                (status, v)
            }
            Err(_) => (0, Value::Null),
        }
    }
}

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGnUX4q4Re1CvIRm1C2ZSXTMeJkyVXv8zGu8w1DU2U2W test";

fn check_all(fake: &FakeHandle) {
    let mut spec = Spec::load(&spec::default_path()).expect("the OpenAPI spec");
    let xs = fake.exchanges();
    assert!(!xs.is_empty());
    let errors = spec.violations(&xs);
    assert!(
        errors.is_empty(),
        "{} of {} exchanges break the spec:\n{}",
        errors.len(),
        xs.len(),
        errors.join("\n")
    );
}

async fn wait_actions(api: &Api, ids: &[u64]) -> Vec<Value> {
    let q: Vec<String> = ids.iter().map(|i| format!("id={i}")).collect();
    for _ in 0..100 {
        let (s, v) = api
            .call("GET", &format!("/actions?{}", q.join("&")), None)
            .await;
        assert_eq!(s, 200, "{v}");
        let actions = v["actions"].as_array().unwrap().clone();
        if actions.iter().all(|a| a["status"] != "running") {
            return actions;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("actions never finished");
}

#[tokio::test]
async fn a_session_follows_the_spec() {
    let (url, fake) = FakeCloud::start(FakeConfig::default());
    let api = Api::new(&url, &fake.token());
    for path in [
        "/locations",
        "/datacenters",
        "/server_types",
        "/images?type=system&name=ubuntu-24.04",
        "/pricing",
    ] {
        let (s, v) = api.call("GET", path, None).await;
        assert_eq!(s, 200, "{path}: {v}");
    }
    let (_, imgs) = api.call("GET", "/images?name=ubuntu-24.04", None).await;
    assert_eq!(imgs["images"].as_array().unwrap().len(), 1);

    let (s, key) = api
        .call(
            "POST",
            "/ssh_keys",
            Some(json!({"name": "deploy", "public_key": KEY, "labels": {"venue/event": "a"}})),
        )
        .await;
    assert_eq!(s, 201, "{key}");
    let fp = key["ssh_key"]["fingerprint"].as_str().unwrap().to_owned();
    assert_eq!(fp.len(), 47);
    let (s, dup) = api
        .call(
            "POST",
            "/ssh_keys",
            Some(json!({"name": "other", "public_key": KEY})),
        )
        .await;
    assert_eq!(
        (s, dup["error"]["code"].as_str()),
        (409, Some("uniqueness_error"))
    );
    let (_, by_fp) = api
        .call("GET", &format!("/ssh_keys?fingerprint={fp}"), None)
        .await;
    assert_eq!(by_fp["ssh_keys"].as_array().unwrap().len(), 1);

    let rules = json!([{"direction": "in", "protocol": "tcp", "port": "22", "source_ips": ["0.0.0.0/0", "::/0"]},
                       {"direction": "in", "protocol": "udp", "port": "16384-32768", "source_ips": ["0.0.0.0/0", "::/0"]}]);
    let (s, fw) = api
        .call(
            "POST",
            "/firewalls",
            Some(json!({"name": "a", "labels": {"venue/event": "a"}, "rules": rules})),
        )
        .await;
    assert_eq!(s, 201, "{fw}");
    let fw_id = fw["firewall"]["id"].as_u64().unwrap();

    let mut actions = Vec::new();
    for (i, (event, role)) in [("a", "bbb"), ("a", "jitsi"), ("b", "bbb"), ("", "")]
        .iter()
        .enumerate()
    {
        let labels = if event.is_empty() {
            json!({})
        } else {
            json!({"venue/event": event, "venue/role": role})
        };
        let (s, v) = api
            .call("POST", "/servers", Some(json!({
                "name": format!("s-{i}"), "server_type": "cx23", "image": "ubuntu-24.04", "location": "fsn1",
                "labels": labels, "ssh_keys": [fp.clone()], "firewalls": [{"firewall": fw_id}], "user_data": "#cloud-config\n",
                "start_after_create": true, "public_net": {"enable_ipv4": true, "enable_ipv6": true},
            })))
            .await;
        assert_eq!(s, 201, "{v}");
        assert_eq!(v["server"]["status"], "initializing");
        actions.push(v["action"]["id"].as_u64().unwrap());
    }
    let (s, dup) = api
        .call(
            "POST",
            "/servers",
            Some(json!({"name": "s-0", "server_type": "cx23", "image": "ubuntu-24.04"})),
        )
        .await;
    assert_eq!(
        (s, dup["error"]["code"].as_str()),
        (409, Some("uniqueness_error"))
    );
    let (s, bad) = api
        .call(
            "POST",
            "/servers",
            Some(json!({"name": "x", "server_type": "cx23", "image": "no-such-image"})),
        )
        .await;
    assert_eq!(
        (s, bad["error"]["code"].as_str()),
        (400, Some("invalid_input"))
    );
    let done = wait_actions(&api, &actions).await;
    assert!(done.iter().all(|a| a["status"] == "success"));

    let count = |v: &Value| v["servers"].as_array().unwrap().len();
    let sel = |s: &str| {
        format!(
            "/servers?label_selector={}",
            form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()
        )
    };
    let (_, v) = api.call("GET", &sel("venue/event=a"), None).await;
    assert_eq!(count(&v), 2);
    assert!(v["servers"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["status"] == "running"));
    let (_, v) = api
        .call("GET", &sel("venue/event in (a,b),venue/role=bbb"), None)
        .await;
    assert_eq!(count(&v), 2);
    let (_, v) = api.call("GET", &sel("!venue/event"), None).await;
    assert_eq!(count(&v), 1);
    let (_, v) = api.call("GET", &sel("venue/event notin (a)"), None).await;
    assert_eq!(count(&v), 2);
    let (s, v) = api.call("GET", &sel("venue/event in (a"), None).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("invalid_input"))
    );

    let (_, p1) = api.call("GET", "/servers?per_page=3&page=1", None).await;
    assert_eq!(count(&p1), 3);
    assert_eq!(p1["meta"]["pagination"]["next_page"], 2);
    assert_eq!(p1["meta"]["pagination"]["total_entries"], 4);
    let (_, p2) = api.call("GET", "/servers?per_page=3&page=2", None).await;
    assert_eq!(count(&p2), 1);
    assert!(p2["meta"]["pagination"]["next_page"].is_null());

    // Primary IPs come with servers, can be labelled, and go with them.
    let (_, ips) = api.call("GET", "/primary_ips", None).await;
    let ips = ips["primary_ips"].as_array().unwrap().clone();
    assert_eq!(ips.len(), 8);
    let ip0 = ips[0]["id"].as_u64().unwrap();
    let (s, v) = api
        .call(
            "PUT",
            &format!("/primary_ips/{ip0}"),
            Some(json!({"labels": {"venue/event": "a"}})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = api.call("POST", "/primary_ips", Some(json!({"name": "spare", "type": "ipv4", "assignee_type": "server", "location": "fsn1", "auto_delete": false, "labels": {"venue/event": "b"}}))).await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = api
        .call("DELETE", &format!("/primary_ips/{ip0}"), None)
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("resource_in_use"))
    );

    // Deleting: the firewall is in use until its servers are gone.
    let (_, all) = api.call("GET", "/servers", None).await;
    let (s, v) = api
        .call("DELETE", &format!("/firewalls/{fw_id}"), None)
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("resource_in_use"))
    );
    let mut deletes = Vec::new();
    for srv in all["servers"].as_array().unwrap() {
        let (s, v) = api
            .call("DELETE", &format!("/servers/{}", srv["id"]), None)
            .await;
        assert_eq!(s, 200, "{v}");
        deletes.push(v["action"]["id"].as_u64().unwrap());
    }
    wait_actions(&api, &deletes).await;
    let (_, v) = api.call("GET", "/servers", None).await;
    assert_eq!(count(&v), 0);
    let (_, v) = api.call("GET", "/primary_ips", None).await;
    assert_eq!(
        v["primary_ips"].as_array().unwrap().len(),
        1,
        "only the unassigned spare is left"
    );
    assert_eq!(
        api.call("DELETE", &format!("/firewalls/{fw_id}"), None)
            .await
            .0,
        204
    );
    assert_eq!(
        api.call(
            "DELETE",
            &format!("/ssh_keys/{}", key["ssh_key"]["id"]),
            None
        )
        .await
        .0,
        204
    );
    let (s, v) = api.call("GET", "/servers/1", None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("not_found")));

    // Faults.
    fake.push_faults(&[
        Fault::Unavailable,
        Fault::Locked,
        Fault::Conflict,
        Fault::RateLimited,
        Fault::DropBefore,
    ]);
    let codes: Vec<(u16, Option<String>)> = futures(&api, 5).await;
    assert_eq!(
        codes,
        vec![
            (503, Some("unavailable".into())),
            (423, Some("locked".into())),
            (409, Some("conflict".into())),
            (429, Some("rate_limit_exceeded".into())),
            (0, None)
        ]
    );
    fake.fail_next_actions(1);
    let (_, v) = api
        .call(
            "POST",
            "/servers",
            Some(json!({"name": "doomed", "server_type": "cx23", "image": "ubuntu-24.04"})),
        )
        .await;
    let done = wait_actions(&api, &[v["action"]["id"].as_u64().unwrap()]).await;
    assert_eq!(done[0]["status"], "error");
    assert_eq!(done[0]["error"]["code"], "action_failed");

    // A wrong token.
    let wrong = Api::new(&url, "wrong");
    let (s, v) = wrong.call("GET", "/servers", None).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );

    check_all(&fake);
}

async fn futures(api: &Api, n: usize) -> Vec<(u16, Option<String>)> {
    let mut out = Vec::new();
    for _ in 0..n {
        let (s, v) = api.call("GET", "/locations", None).await;
        out.push((s, v["error"]["code"].as_str().map(str::to_owned)));
    }
    out
}

#[tokio::test]
async fn the_rate_limit_runs_out_and_refills() {
    let (url, fake) = FakeCloud::start(FakeConfig {
        rate_limit: 5,
        refill_per_sec: 20.0,
        ..FakeConfig::default()
    });
    let api = Api::new(&url, &fake.token());
    let mut statuses = Vec::new();
    for _ in 0..7 {
        let resp = api
            .http
            .get(format!("{url}/locations"))
            .bearer_auth(fake.token())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.headers()["ratelimit-limit"], "5");
        assert!(resp.headers().contains_key("ratelimit-remaining"));
        assert!(resp.headers().contains_key("ratelimit-reset"));
        statuses.push(resp.status().as_u16());
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(api.call("GET", "/locations", None).await.0, 200);
    assert!(fake.rejected_429() >= 1);
    check_all(&fake);
}

#[test]
fn the_spec_check_catches_a_private_dialect() {
    let mut spec = Spec::load(&spec::default_path()).expect("the OpenAPI spec");
    let x = venue_testbed::Exchange {
        seq: 1,
        method: "POST".into(),
        path: "/ssh_keys".into(),
        query: vec![],
        request: Some(json!({"name": "k", "public_key": KEY, "colour": "blue"})),
        status: 201,
        response: Some(json!({"ssh_key": {"id": 1, "name": "k"}})),
    };
    let err = spec.check_exchange(&x).unwrap_err();
    assert!(err.contains("colour"), "{err}");
    let x2 = venue_testbed::Exchange {
        request: Some(json!({"name": "k", "public_key": KEY})),
        ..x
    };
    let err = spec.check_exchange(&x2).unwrap_err();
    assert!(
        err.contains("fingerprint") || err.contains("required"),
        "{err}"
    );
    let x3 = venue_testbed::Exchange {
        path: "/nonsense".into(),
        ..x2
    };
    assert!(spec.check_exchange(&x3).is_err());
}

#[tokio::test]
async fn the_binary_serves_the_api_under_v1() {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_fake-hcloud"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--token",
            "t0k",
            "--action-ms",
            "10",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim().rsplit(' ').next().unwrap().to_owned();
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with("/v1"),
        "{line}"
    );
    let api = Api::new(&url, "t0k");
    let (s, v) = api.call("GET", "/images?name=ubuntu-24.04", None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["images"][0]["name"], "ubuntu-24.04");
    assert_eq!(
        Api::new(&url, "wrong")
            .call("GET", "/servers", None)
            .await
            .0,
        401
    );
    child.kill().unwrap();
    child.wait().unwrap();
}
