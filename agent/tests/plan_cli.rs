//! `venue plan` as an organiser runs it.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn venue(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_venue"))
        .args(args)
        .current_dir(repo())
        .env_remove("HCLOUD_TOKEN")
        .output()
        .expect("venue runs")
}

#[test]
fn lpc_2020_json_plan() {
    let out = venue(&["plan", "hosts/lpc-2020/event.toml", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["event"], "lpc-2020");
    let servers = plan["servers"].as_array().unwrap();
    let bbb: u64 = servers
        .iter()
        .filter(|s| s["role"] == "bbb")
        .map(|s| s["count"].as_u64().unwrap())
        .sum();
    assert!((3..=7).contains(&bbb), "{bbb}");
    let total = plan["total_eur"].as_f64().unwrap();
    assert!(total > 0.0);
    let sum: f64 = servers
        .iter()
        .map(|s| s["cost_eur"].as_f64().unwrap())
        .sum();
    assert!((sum - total).abs() < 1e-6, "{sum} vs {total}");
    for s in servers {
        let expected = s["count"].as_f64().unwrap()
            * s["hours"].as_f64().unwrap()
            * s["price_hourly_eur"].as_f64().unwrap();
        assert!(
            (expected - s["cost_eur"].as_f64().unwrap()).abs() < 1e-6,
            "{s}"
        );
    }
    let warnings = plan["warnings"].as_array().unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap().contains("Refereed Track")),
        "{warnings:?}"
    );
}

#[test]
fn human_table_lists_roles_and_total() {
    let out = venue(&["plan", "hosts/nixcon-2020/event.toml"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("jitsi") && text.contains("portal") && text.contains("total"),
        "{text}"
    );
    assert!(text.contains("bundled table of"), "{text}");
}

#[test]
fn malformed_event_gives_file_line_column_and_fails() {
    let dir = std::env::temp_dir().join(format!("venue-plan-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("event.toml");
    std::fs::write(&file, "id = \"x\"\nname = \"X\"\ntimezone = \"UTC\"\ndomain = \"x.org\"\nattendees = 5\n[[day]]\ndate = \"2024-01-01\"\nopen = \"10:00\"\nclose = \"09:00\"\n[[room]]\nname = \"A\"\nkind = \"session\"\npeak = 3\n").unwrap();
    let out = venue(&["plan", file.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains(&format!("{}:9:9:", file.display())), "{err}");
    assert!(err.contains("must close after it opens"), "{err}");
    assert!(
        out.stdout.is_empty(),
        "nothing is printed as if it were a plan"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn missing_event_file_is_named() {
    let out = venue(&["plan", "hosts/nope/event.toml"]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("hosts/nope/event.toml: cannot read the event file"),
        "{err}"
    );
}

/// A copy of the LPC example whose three biggest rooms hold 800, 400 and
/// 300: stages and stream edges, no "more than one server" warning, the
/// arithmetic and the traffic cost in `--json`.
#[test]
fn a_large_event_gets_stages_and_stream_edges() {
    let src = std::fs::read_to_string(repo().join("hosts/lpc-2020/event.toml")).unwrap();
    let mut peaks = [800, 400, 300].into_iter();
    let text: String = src
        .lines()
        .map(|l| match l.starts_with("peak = ") {
            true => match peaks.next() {
                Some(p) => format!("peak = {p}\n"),
                None => format!("{l}\n"),
            },
            false => format!("{l}\n"),
        })
        .collect();
    let dir = std::env::temp_dir().join(format!("venue-large-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("event.toml"), text).unwrap();
    std::fs::copy(
        repo().join("hosts/lpc-2020/schedule.xml"),
        dir.join("schedule.xml"),
    )
    .unwrap();
    let out = venue(&["plan", dir.join("event.toml").to_str().unwrap(), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let warnings: Vec<&str> = plan["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert!(
        !warnings.iter().any(|w| w.contains("cannot span servers")),
        "{warnings:?}"
    );
    let streams = &plan["streams"];
    let viewers = streams["viewers"].as_u64().unwrap();
    assert!(viewers >= 790 + 390 + 290, "{streams}");
    let per_server = streams["viewers_per_server"].as_u64().unwrap();
    let edges = streams["edges"].as_u64().unwrap();
    assert_eq!(edges, viewers.div_ceil(per_server), "{streams}");
    assert_eq!(
        streams["bandwidth_mbit"].as_u64().unwrap(),
        viewers * streams["bitrate_kbit"].as_u64().unwrap() / 1000
    );
    let count = |role: &str| -> u64 {
        plan["servers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["role"] == role)
            .map(|s| s["count"].as_u64().unwrap())
            .sum()
    };
    assert_eq!((count("stream"), count("edge")), (1, edges));
    let servers: f64 = plan["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["cost_eur"].as_f64().unwrap())
        .sum();
    let traffic = streams["traffic_eur"].as_f64().unwrap();
    let total = plan["total_eur"].as_f64().unwrap();
    assert!(
        (servers + traffic - total).abs() < 1e-6,
        "{servers} + {traffic} vs {total}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `[chat] enable = true`: a chat line, priced at hours × its hourly price,
/// and the same hours as the portal; without it, none.
#[test]
fn the_chat_has_its_line_and_cost_when_the_event_runs_a_homeserver() {
    let dir = std::env::temp_dir().join(format!("venue-plan-chat-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |chat: &str| {
        let file = dir.join("event.toml");
        std::fs::write(
            &file,
            format!("id = \"c\"\nname = \"C\"\ntimezone = \"UTC\"\ndomain = \"c.example.org\"\nattendees = 200\n{chat}\n[[day]]\ndate = \"2024-01-01\"\nopen = \"09:00\"\nclose = \"17:00\"\n[[room]]\nname = \"A\"\nkind = \"session\"\npeak = 30\n"),
        )
        .unwrap();
        file
    };

    let file = write("[chat]\nenable = true");
    let out = venue(&["plan", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("chat "))
        .unwrap_or_else(|| panic!("no chat line:\n{text}"));
    assert!(line.contains(" cx33 ") && line.contains(" 1 "), "{line}");

    let out = venue(&["plan", file.to_str().unwrap(), "--json"]);
    assert!(out.status.success());
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let servers = plan["servers"].as_array().unwrap();
    let of = |role: &str| servers.iter().find(|s| s["role"] == role).cloned();
    let chat = of("chat").expect("a chat server");
    let portal = of("portal").unwrap();
    assert_eq!(chat["count"], 1);
    assert_eq!(chat["hours"], portal["hours"]);
    assert_eq!(chat["windows"], portal["windows"]);
    let hours = chat["hours"].as_f64().unwrap();
    assert!(hours > 24.0, "open a day early, like the portal: {hours}");
    let expected = hours * chat["price_hourly_eur"].as_f64().unwrap();
    assert!(
        (chat["cost_eur"].as_f64().unwrap() - expected).abs() < 1e-6,
        "{chat}"
    );

    for chat in ["", "chat = \"https://chat.example.org/\""] {
        let file = write(chat);
        let out = venue(&["plan", file.to_str().unwrap()]);
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(
            !text.lines().any(|l| l.starts_with("chat ")),
            "{chat:?}:\n{text}"
        );
        let out = venue(&["plan", file.to_str().unwrap(), "--json"]);
        let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(!plan["servers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["role"] == "chat"));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
