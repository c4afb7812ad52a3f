//! `venue autopilot --dry-run`: the timeline it would follow is the plan's
//! windows, so its cost is `venue plan`'s total, with overnight "release"
//! (media servers per day) and "keep" (one stretch). LPC 2020 at the
//! bundled prices: EUR 42.57 and 139.41.

mod common;

use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn venue(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_venue"))
        .args(args)
        // The bundled prices, as `venue plan` uses without a token.
        .env_remove("HCLOUD_TOKEN")
        .env_remove("VENUE_CLOCK")
        .output()
        .unwrap();
    serde_json::from_str(&common::ok(&out)).unwrap()
}

/// The LPC 2020 event with `overnight` set as given.
fn lpc(overnight: &str) -> std::path::PathBuf {
    let file = common::example_event("lpc-2020");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("overnight = \"keep\""), "the example keeps");
    std::fs::write(
        &file,
        text.replace(
            "overnight = \"keep\"",
            &format!("overnight = \"{overnight}\""),
        ),
    )
    .unwrap();
    file
}

fn cents(v: &Value) -> i64 {
    (v.as_f64().unwrap() * 100.0).round() as i64
}

fn check(file: &Path, expected_cents: i64) -> Value {
    let f = file.to_str().unwrap();
    let plan = venue(&["plan", f, "--json"]);
    let dry = venue(&[
        "autopilot",
        f,
        "--dry-run",
        "--json",
        "--state",
        "/nonexistent/state",
    ]);
    assert_eq!(cents(&plan["total_eur"]), expected_cents, "{plan}");
    assert_eq!(cents(&dry["total_eur"]), expected_cents, "{dry}");
    assert_eq!(
        dry["timeline"]["total_micro_eur"], dry["timeline"]["plan_total_micro_eur"],
        "{dry}"
    );
    // Every planned server's windows are its stints, one for one.
    for group in plan["servers"].as_array().unwrap() {
        let role = group["role"].as_str().unwrap();
        let windows = group["windows"].as_array().unwrap();
        for n in 1..=group["count"].as_u64().unwrap() {
            let name = format!("lpc-2020-{role}-{n}");
            let stints: Vec<(&str, &str)> = dry["timeline"]["stints"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|s| s["name"] == name.as_str())
                .map(|s| (s["rent"].as_str().unwrap(), s["release"].as_str().unwrap()))
                .collect();
            let planned: Vec<(&str, &str)> = windows
                .iter()
                .map(|w| (w["start"].as_str().unwrap(), w["end"].as_str().unwrap()))
                .collect();
            assert_eq!(stints, planned, "{name}");
        }
    }
    // The text form says the same total.
    let text = Command::new(env!("CARGO_BIN_EXE_venue"))
        .args(["autopilot", f, "--dry-run", "--state", "/nonexistent/state"])
        .env_remove("HCLOUD_TOKEN")
        .env_remove("VENUE_CLOCK")
        .output()
        .unwrap();
    let text = common::ok(&text);
    let total = format!("{}.{:02}", expected_cents / 100, expected_cents % 100);
    assert!(
        text.contains(&format!("total: {total} EUR (venue plan: {total} EUR)")),
        "{text}"
    );
    dry
}

#[test]
fn release_overnight_timeline_costs_what_the_plan_says() {
    let dry = check(&lpc("release"), 4257);
    // Five days: every BigBlueButton server is rented five times.
    let bbb1 = dry["timeline"]["stints"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["name"] == "lpc-2020-bbb-1")
        .count();
    assert_eq!(bbb1, 5);
    assert_eq!(dry["lead"]["source"], "default");
}

#[test]
fn keep_overnight_timeline_costs_what_the_plan_says() {
    let dry = check(&lpc("keep"), 13941);
    let steps = dry["steps"].as_array().unwrap();
    // One rent and one release per server.
    assert_eq!(
        steps.iter().filter(|s| s["action"] == "rent").count(),
        steps.iter().filter(|s| s["action"] == "release").count()
    );
}

#[test]
fn a_measured_lead_beyond_the_warmup_rents_earlier_and_costs_more_than_the_plan() {
    let file = lpc("release");
    let state = common::scratch("autopilot-lead");
    // Two earlier servers took 50 and 80 minutes from rent to healthy:
    // with the margin (x1.5) the lead is 120 minutes, 60 beyond the warm-up.
    let journal: String = [("lpc-2020-bbb-1", 3000), ("lpc-2020-portal-1", 4800)]
        .iter()
        .map(|(s, secs)| {
            format!(
                "{}\n",
                serde_json::json!({"time": "2026-01-01T00:00:00Z", "command": "converge",
                    "what": format!("ready {s}: {secs} s from rent to healthy")})
            )
        })
        .collect();
    std::fs::write(state.join("journal.jsonl"), journal).unwrap();
    let f = file.to_str().unwrap();
    let dry = venue(&[
        "autopilot",
        f,
        "--dry-run",
        "--json",
        "--state",
        state.to_str().unwrap(),
    ]);
    assert_eq!(dry["lead"]["source"], "measured");
    assert_eq!(dry["lead"]["seconds"], 7200);
    assert_eq!(dry["timeline"]["early_seconds"], 3600);
    let first = &dry["timeline"]["stints"][0];
    assert_eq!(first["rent"], "2020-08-23T12:00:00Z", "{first}");
    assert!(cents(&dry["total_eur"]) > 4257, "{dry}");
}

/// The autopilot's release of some servers (`Scope::Servers`) deletes
/// those and their addresses only: the other servers, the firewall and
/// the SSH key stay.
#[test]
fn releasing_some_servers_leaves_the_rest_of_the_event() {
    use venue_agent::converge::{provision, release, Scope};
    use venue_agent::model::state::StateDir;
    use venue_agent::plan::prices::PriceTable;

    let (url, fake) = common::fake();
    let client = common::client(&url, &fake.token());
    let event = conference::Event::load(&lpc("release")).unwrap();
    let plan = venue_agent::plan::plan(&event, &PriceTable::bundled()).unwrap();
    let state = StateDir::open(common::scratch("autopilot-release")).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let up = rt
        .block_on(provision::provision(&client, &event, &plan, &state))
        .unwrap();
    let all = up.fleet.servers.len();
    let (_, ips_before, _, _) = common::held(&fake, &event.id);
    let going = ["lpc-2020-bbb-1".to_owned(), "lpc-2020-bbb-2".to_owned()];
    let report = rt
        .block_on(release::release_scoped(
            &client,
            &event.id,
            &PriceTable::bundled(),
            Some(&state),
            Scope::Servers(&going),
        ))
        .unwrap();
    for g in &going {
        assert!(
            report.deleted.contains(&format!("server {g}")),
            "{:?}",
            report.deleted
        );
    }
    assert!(
        report
            .deleted
            .iter()
            .all(|d| d.starts_with("server ") || d.starts_with("primary IP ")),
        "{:?}",
        report.deleted
    );
    let (servers, ips, fws, keys) = common::held(&fake, &event.id);
    let names: Vec<&str> = servers
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), all - 2, "{names:?}");
    assert!(
        !names.iter().any(|n| going.iter().any(|g| g == n)),
        "{names:?}"
    );
    assert_eq!(
        ips.len(),
        ips_before.len() - 4,
        "their two addresses each go with them"
    );
    assert_eq!((fws.len(), keys.len()), (1, 1), "the firewall and key stay");
}
