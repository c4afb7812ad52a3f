//! `up` and `down` under crashes, faults and scale, in-process against the
//! fake (fast: no process start per run, actions of a few milliseconds).

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use conference::Event;
use venue_agent::cloud::Client;
use venue_agent::commands::down::release;
use venue_agent::commands::up::{provision, UpReport};
use venue_agent::model::state::StateDir;
use venue_agent::plan::prices::PriceTable;
use venue_agent::plan::{self, Plan};
use venue_testbed::{FakeConfig, FakeHandle};

use common::*;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn lpc() -> (Event, Plan) {
    let event = Event::load(&example_event("lpc-2020")).unwrap();
    let plan = plan::plan(&event, &PriceTable::bundled()).unwrap();
    (event, plan)
}

async fn up(client: &Client, event: &Event, plan: &Plan, state: &Path) -> anyhow::Result<UpReport> {
    provision(client, event, plan, &StateDir::open(state.to_path_buf())?).await
}

/// The fake holds exactly the plan for the event: each planned server once,
/// running, with both addresses labelled; one firewall, one SSH key.
fn assert_exactly_the_plan(fake: &FakeHandle, event: &str, plan: &Plan, context: &str) {
    let (servers, ips, fws, keys) = held(fake, event);
    let names: Vec<String> = servers
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect();
    let unique: BTreeSet<&String> = names.iter().collect();
    assert_eq!(
        unique.len(),
        names.len(),
        "{context}: duplicate servers {names:?}"
    );
    let planned: BTreeSet<String> = plan.fleet().into_iter().map(|p| p.name).collect();
    assert_eq!(
        unique.into_iter().cloned().collect::<BTreeSet<_>>(),
        planned,
        "{context}"
    );
    assert!(
        servers.iter().all(|s| s["status"] == "running"),
        "{context}: not all running"
    );
    assert_eq!(
        ips.len(),
        2 * planned.len(),
        "{context}: labelled addresses"
    );
    assert_eq!(
        (fws.len(), keys.len()),
        (1, 1),
        "{context}: firewall and key"
    );
    // No orphan: every server in the fake belongs to the event.
    assert_eq!(
        fake.with_state(|s| s.servers().len()),
        planned.len(),
        "{context}: servers outside the event"
    );
}

#[test]
fn killed_after_any_request_up_and_down_resume_without_duplicates_or_orphans() {
    let rt = runtime();
    let (event, plan) = lpc();

    // A full, undisturbed `up` and `down`: how many requests each takes.
    let (url, reference) = fake();
    let c = client(&url, &reference.token());
    let state = scratch("crash-ref");
    rt.block_on(up(&c, &event, &plan, &state)).unwrap();
    let n_up = reference.requests();
    rt.block_on(release(&c, &event.id, &PriceTable::bundled(), None))
        .unwrap();
    let n_down = reference.requests() - n_up;
    assert!(n_up > 10 && n_down > 5);

    let started = Instant::now();
    for k in 1..=n_up {
        let (url, fake) = fake();
        let c = client(&url, &fake.token());
        let state = scratch("crash");
        fake.cut_after(k);
        let task = {
            let (c, event, plan, state) = (c.clone(), event.clone(), plan.clone(), state.clone());
            rt.spawn(async move { up(&c, &event, &plan, &state).await })
        };
        while !fake.cut_hit() && !task.is_finished() {
            std::thread::sleep(Duration::from_millis(1));
        }
        task.abort(); // the agent dies here: request k was handled, its answer never arrived
        let _ = rt.block_on(task); // gone for good before the next run starts
        fake.uncut();
        rt.block_on(up(&c, &event, &plan, &state))
            .unwrap_or_else(|e| panic!("k={k}: up after the crash failed: {e:#}"));
        assert_exactly_the_plan(
            &fake,
            &event.id,
            &plan,
            &format!("up killed after request {k}"),
        );
        rt.block_on(release(&c, &event.id, &PriceTable::bundled(), None))
            .unwrap();
        assert_eq!(
            held_count(&fake, &event.id),
            0,
            "k={k}: down leaves nothing"
        );
        assert_eq!(
            fake.with_state(|s| s.primary_ips().len()),
            0,
            "k={k}: no orphaned address"
        );
    }
    for k in 1..=n_down {
        let (url, fake) = fake();
        let c = client(&url, &fake.token());
        rt.block_on(up(&c, &event, &plan, &scratch("crash-down")))
            .unwrap();
        fake.cut_after(fake.requests() + k);
        let task = {
            let (c, id) = (c.clone(), event.id.clone());
            rt.spawn(async move { release(&c, &id, &PriceTable::bundled(), None).await })
        };
        while !fake.cut_hit() && !task.is_finished() {
            std::thread::sleep(Duration::from_millis(1));
        }
        task.abort();
        let _ = rt.block_on(task);
        fake.uncut();
        rt.block_on(release(&c, &event.id, &PriceTable::bundled(), None))
            .unwrap_or_else(|e| panic!("k={k}: down after the crash failed: {e:#}"));
        assert_eq!(
            fake.with_state(|s| s.servers().len()
                + s.primary_ips().len()
                + s.firewalls().len()
                + s.ssh_keys().len()),
            0,
            "down killed after request {k}"
        );
    }
    println!("crash test: up killed after each of its {n_up} requests, down after each of its {n_down}: all converged ({:.1}s)", started.elapsed().as_secs_f64());
}

#[test]
fn with_a_fifth_of_requests_failing_up_and_down_converge() {
    let rt = runtime();
    let (event, plan) = lpc();
    for seed in 1..=3u64 {
        let (url, fake) = fake_with(FakeConfig {
            action_duration: Duration::from_millis(ACTION_MS),
            seed,
            ..FakeConfig::default()
        });
        fake.set_fault_rate(0.2);
        let c = client(&url, &fake.token());
        let report = rt
            .block_on(up(&c, &event, &plan, &scratch("faults")))
            .unwrap_or_else(|e| panic!("seed {seed}: up: {e:#}"));
        assert_exactly_the_plan(&fake, &event.id, &plan, &format!("seed {seed}"));
        let down = rt
            .block_on(release(&c, &event.id, &PriceTable::bundled(), None))
            .unwrap_or_else(|e| panic!("seed {seed}: down: {e:#}"));
        assert_eq!(held_count(&fake, &event.id), 0);
        println!(
            "20% faults, seed {seed}: up {} requests, down {} requests, {} servers",
            report.requests,
            down.requests,
            plan.fleet().len()
        );
    }
}

#[test]
fn failed_actions_locks_and_a_tight_rate_limit_are_overcome() {
    let rt = runtime();
    let (event, plan) = lpc();
    // Two server creations end in an error: those servers are deleted and made again.
    let (url, fake) = fake();
    let c = client(&url, &fake.token());
    fake.fail_next_actions(2);
    rt.block_on(up(&c, &event, &plan, &scratch("action-errors")))
        .unwrap();
    assert_exactly_the_plan(&fake, &event.id, &plan, "after failed actions");
    fake.push_faults(&[
        venue_testbed::Fault::Locked,
        venue_testbed::Fault::Conflict,
        venue_testbed::Fault::Unavailable,
    ]);
    rt.block_on(release(&c, &event.id, &PriceTable::bundled(), None))
        .unwrap();
    assert_eq!(held_count(&fake, &event.id), 0);

    // A budget of 10 requests refilled at 100/s: 429s come, and are waited out.
    let (url, fake) = fake_with(FakeConfig {
        action_duration: Duration::from_millis(ACTION_MS),
        rate_limit: 10,
        refill_per_sec: 100.0,
        ..FakeConfig::default()
    });
    let c = client(&url, &fake.token());
    rt.block_on(up(&c, &event, &plan, &scratch("rate")))
        .unwrap();
    assert_exactly_the_plan(&fake, &event.id, &plan, "under a tight rate limit");
    rt.block_on(release(&c, &event.id, &PriceTable::bundled(), None))
        .unwrap();
    assert_eq!(held_count(&fake, &event.id), 0);
}

#[test]
fn fifty_servers_stay_inside_the_rate_limit() {
    let rt = runtime();
    let (event, mut plan) = lpc();
    let others: u32 = plan.servers.iter().skip(1).map(|g| g.count).sum();
    plan.servers[0].count = 50 - others;
    assert_eq!(plan.fleet().len(), 50);
    // Actions of two seconds, nearer a real server creation than the other
    // tests, and the client's real poll interval (0.25 s, doubling to 2 s).
    let (url, fake) = fake_with(FakeConfig {
        action_duration: Duration::from_secs(2),
        ..FakeConfig::default()
    });
    let c = client_polling(&url, &fake.token(), Duration::from_millis(250));
    let report = rt
        .block_on(up(&c, &event, &plan, &scratch("fifty")))
        .unwrap();
    assert_exactly_the_plan(&fake, &event.id, &plan, "50 servers");
    let up_requests = fake.requests();
    let down = rt
        .block_on(release(&c, &event.id, &PriceTable::bundled(), None))
        .unwrap();
    assert_eq!(down.requests, fake.requests() - up_requests);
    let down_requests = fake.requests() - up_requests;
    assert_eq!(held_count(&fake, &event.id), 0);
    assert_eq!(
        fake.rejected_429(),
        0,
        "no request was refused by the rate limit"
    );
    let (per_up, per_down) = (up_requests as f64 / 50.0, down_requests as f64 / 50.0);
    println!("50 servers: up {up_requests} requests ({per_up:.2} per server), down {down_requests} requests ({per_down:.2} per server), of 3600 per hour");
    assert_eq!(
        report.requests, up_requests,
        "the client counts what the fake saw"
    );
    assert!(per_up <= 5.0, "up: {per_up:.2} requests per server");
    assert!(per_down <= 3.0, "down: {per_down:.2} requests per server");
    assert!(up_requests + down_requests < 3600);
    assert_spec_clean(&fake);
}

#[test]
fn up_repairs_a_firewall_changed_by_hand() {
    let rt = runtime();
    let (event, plan) = lpc();
    let (url, fake) = fake();
    let c = client(&url, &fake.token());
    let state = scratch("firewall");
    rt.block_on(up(&c, &event, &plan, &state)).unwrap();
    let fw = held(&fake, &event.id).2[0]["id"].as_u64().unwrap();
    let body = serde_json::json!({"rules": [{"direction": "in", "protocol": "tcp", "port": "22", "source_ips": ["0.0.0.0/0"]}]});
    let path = format!("/firewalls/{fw}/actions/set_rules");
    rt.block_on(c.request(reqwest::Method::POST, &path, &[], Some(&body)))
        .unwrap();
    assert_eq!(
        held(&fake, &event.id).2[0]["rules"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    rt.block_on(up(&c, &event, &plan, &state)).unwrap();
    let rules = held(&fake, &event.id).2[0]["rules"]
        .as_array()
        .unwrap()
        .len();
    let servers = held(&fake, &event.id).0;
    let own: Vec<String> = servers
        .iter()
        .map(|s| s["public_net"]["ipv4"]["ip"].as_str().unwrap().to_owned())
        .collect();
    assert!(!own.is_empty());
    // One rule per port, 5222 and 1935 among them: reachable from the servers only.
    assert_eq!(
        rules,
        venue_agent::cloud::firewall::rules(&event, &own).len()
    );
    let xmpp: Vec<String> = held(&fake, &event.id).2[0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["port"] == "5222")
        .expect("5222 is open to the event's servers")["source_ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert!(xmpp.iter().all(|s| !s.ends_with("/0")), "{xmpp:?}");
    for ip in &own {
        assert!(xmpp.contains(&format!("{ip}/32")), "{ip} in {xmpp:?}");
    }
    assert_spec_clean(&fake);
}
