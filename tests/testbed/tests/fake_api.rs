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
    // One image per architecture under one name, as on Hetzner.
    let (_, imgs) = api.call("GET", "/images?name=ubuntu-24.04", None).await;
    assert_eq!(imgs["images"].as_array().unwrap().len(), 2);
    let (_, imgs) = api
        .call("GET", "/images?name=ubuntu-24.04&architecture=x86", None)
        .await;
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

/// Snapshots: power off, create_image (labels, `creating` → `available`),
/// the lock while it runs, list filters, a server booted from the snapshot,
/// deletion while in use, a failed create_image, and the spec over it all.
#[tokio::test]
async fn snapshots_are_made_listed_booted_and_deleted() {
    let (url, fake) = FakeCloud::start(FakeConfig::default());
    let api = Api::new(&url, &fake.token());
    let server = |name: &str, ty: &str, image: &str| {
        json!({"name": name, "server_type": ty, "image": image, "location": "fsn1",
               "start_after_create": true, "labels": {"venue/build": "x86"}})
    };
    let (s, v) = api
        .call(
            "POST",
            "/servers",
            Some(server("builder", "cx23", "ubuntu-24.04")),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let sid = v["server"]["id"].as_u64().unwrap();
    let labels = json!({"venue/image": "0123456789abcdefghijklmnopqrstuv", "venue/arch": "x86"});
    let create_image = |labels: Value| {
        let path = format!("/servers/{sid}/actions/create_image");
        let api = &api;
        async move {
            api.call(
                "POST",
                &path,
                Some(json!({"type": "snapshot", "description": "venue base", "labels": labels})),
            )
            .await
        }
    };
    // Still being created: the server is locked.
    let (s, v) = create_image(labels.clone()).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (423, Some("locked")),
        "{v}"
    );
    for _ in 0..100 {
        let (_, v) = api.call("GET", &format!("/servers/{sid}"), None).await;
        if v["server"]["status"] == "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (s, v) = api
        .call("POST", &format!("/servers/{sid}/actions/poweroff"), None)
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["action"]["command"], "stop_server");
    wait_actions(&api, &[v["action"]["id"].as_u64().unwrap()]).await;
    let (_, v) = api.call("GET", &format!("/servers/{sid}"), None).await;
    assert_eq!(v["server"]["status"], "off");

    let (s, v) = create_image(labels.clone()).await;
    assert_eq!(s, 201, "{v}");
    let image = v["image"].clone();
    let iid = image["id"].as_u64().unwrap();
    assert_eq!(
        (image["type"].as_str(), image["status"].as_str()),
        (Some("snapshot"), Some("creating"))
    );
    assert_eq!(image["created_from"], json!({"id": sid, "name": "builder"}));
    assert_eq!(image["architecture"], "x86");
    assert_eq!(image["labels"], labels);
    // The server is locked while its disk is copied.
    let (s, e) = api.call("DELETE", &format!("/servers/{sid}"), None).await;
    assert_eq!((s, e["error"]["code"].as_str()), (423, Some("locked")));
    let (s, e) = api
        .call(
            "POST",
            "/servers",
            Some(server("early", "cx23", &iid.to_string())),
        )
        .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (400, Some("invalid_input")),
        "a creating image boots nothing"
    );
    let done = wait_actions(&api, &[v["action"]["id"].as_u64().unwrap()]).await;
    assert_eq!(done[0]["status"], "success");
    assert_eq!(done[0]["command"], "create_image");
    let (_, v) = api.call("GET", &format!("/images/{iid}"), None).await;
    assert_eq!(v["image"]["status"], "available");
    assert!(v["image"]["image_size"].as_f64().unwrap() > 0.0, "{v}");
    assert_eq!(v["image"]["disk_size"], 40);

    // Filters: type, label selector, architecture, status; sorting.
    let count = |v: &Value| v["images"].as_array().unwrap().len();
    let sel = form_urlencoded::byte_serialize(
        b"venue/image=0123456789abcdefghijklmnopqrstuv,venue/arch=x86",
    )
    .collect::<String>();
    for (query, n) in [
        ("type=snapshot".to_owned(), 1),
        ("type=system&type=snapshot".to_owned(), 11),
        (
            format!("type=snapshot&label_selector={sel}&architecture=x86"),
            1,
        ),
        (
            format!("type=snapshot&label_selector={sel}&architecture=arm"),
            0,
        ),
        ("type=snapshot&status=creating".to_owned(), 0),
        ("type=snapshot&status=available".to_owned(), 1),
        ("label_selector=venue%2Fimage%3Dother".to_owned(), 0),
    ] {
        let (s, v) = api.call("GET", &format!("/images?{query}"), None).await;
        assert_eq!((s, count(&v)), (200, n), "{query}: {v}");
    }
    let (s, v) = api.call("GET", "/images?architecture=mips", None).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("invalid_input"))
    );

    // Labels and description can change; system images cannot.
    let (s, v) = api
        .call(
            "PUT",
            &format!("/images/{iid}"),
            Some(json!({"description": "renamed", "labels": {"venue/image": "x"}})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["image"]["description"], "renamed");
    assert_eq!(v["image"]["labels"], json!({"venue/image": "x"}));
    let (s, _) = api
        .call(
            "PUT",
            "/images/161547269",
            Some(json!({"description": "mine"})),
        )
        .await;
    assert_eq!(s, 403);

    // A server boots from the snapshot, of the same architecture only.
    let (s, v) = api
        .call(
            "POST",
            "/servers",
            Some(server("from-snap", "cx33", &iid.to_string())),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["server"]["image"]["id"], iid);
    assert_eq!(v["server"]["image"]["type"], "snapshot");
    let booted = v["server"]["id"].as_u64().unwrap();
    let (s, v) = api
        .call(
            "POST",
            "/servers",
            Some(server("arm", "cax11", &iid.to_string())),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("invalid_input")),
        "{v}"
    );
    let (s, v) = api
        .call(
            "POST",
            "/servers",
            Some(server("arm", "cax11", "ubuntu-24.04")),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["server"]["image"]["architecture"], "arm");
    let (s, v) = api
        .call(
            "POST",
            "/servers/999999/actions/create_image",
            Some(json!({"type": "snapshot"})),
        )
        .await;
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("not_found")));
    let (s, v) = api
        .call(
            "POST",
            &format!("/servers/{sid}/actions/create_image"),
            Some(json!({"type": "backup"})),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("invalid_input"))
    );

    // A second snapshot is newer: sort=created:desc / id:desc put it first.
    let (s, v) = create_image(json!({"venue/image": "x"})).await;
    assert_eq!(s, 201, "{v}");
    let second = v["image"]["id"].as_u64().unwrap();
    wait_actions(&api, &[v["action"]["id"].as_u64().unwrap()]).await;
    let (_, v) = api
        .call("GET", "/images?type=snapshot&sort=id:desc", None)
        .await;
    assert_eq!(v["images"][0]["id"], second);
    let (_, v) = api.call("GET", "/images?type=snapshot&sort=id", None).await;
    assert_eq!(v["images"][0]["id"], iid);

    // A failed create_image leaves no image.
    fake.fail_next_actions(1);
    let (s, v) = create_image(json!({})).await;
    assert_eq!(s, 201, "{v}");
    let doomed = v["image"]["id"].as_u64().unwrap();
    let done = wait_actions(&api, &[v["action"]["id"].as_u64().unwrap()]).await;
    assert_eq!(done[0]["status"], "error");
    assert_eq!(
        api.call("GET", &format!("/images/{doomed}"), None).await.0,
        404
    );

    // Deleting a snapshot in use: the server keeps running, its image is gone.
    assert_eq!(
        api.call("DELETE", &format!("/images/{iid}"), None).await.0,
        204
    );
    let (_, v) = api.call("GET", &format!("/servers/{booted}"), None).await;
    assert!(v["server"]["image"].is_null(), "{v}");
    assert_eq!(
        api.call("GET", &format!("/images/{iid}"), None).await.0,
        404
    );
    assert_eq!(
        api.call("DELETE", &format!("/images/{iid}"), None).await.0,
        404
    );
    assert_eq!(api.call("DELETE", "/images/161547269", None).await.0, 403);
    assert_eq!(fake.with_state(|s| s.images().len()), 1);
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
