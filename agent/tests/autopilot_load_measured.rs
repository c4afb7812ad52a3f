//! What the autopilot measures reaches `venue plan`: `record` writes the
//! state directory's measured.json, and `venue plan --state` sizes the
//! rooms by it and says which numbers are measured.

use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::{DateTime, Duration, Utc};
use conference::Event;
use venue_agent::model::state::StateDir;
use venue_agent::plan::measured::{self, Sample};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn plan_json(state: &Path) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_venue"))
        .args(["plan", "hosts/lpc-2020/event.toml", "--json", "--state"])
        .arg(state)
        .current_dir(repo())
        .env_remove("HCLOUD_TOKEN")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn bbb(plan: &serde_json::Value) -> u64 {
    plan["servers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["role"] == "bbb")
        .map(|s| s["count"].as_u64().unwrap())
        .sum()
}

#[test]
fn plan_uses_the_peaks_the_autopilot_recorded() {
    let dir = std::env::temp_dir().join(format!("venue-measured-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let event = Event::load(&repo().join("hosts/lpc-2020/event.toml")).unwrap();

    // Nothing measured yet: every room as declared, the directory untouched.
    let declared = plan_json(&dir);
    assert!(!dir.exists(), "venue plan only reads the state directory");
    let peaks = declared["peaks"].as_array().unwrap();
    assert_eq!(peaks.len(), event.rooms.len());
    assert!(peaks.iter().all(|p| p["source"] == "declared"));

    // Every interactive room watched for two hours with two people in it.
    let state = StateDir::open(dir.clone()).unwrap();
    let start: DateTime<Utc> = "2020-08-24T14:00:00Z".parse().unwrap();
    let samples: Vec<Sample> = event
        .rooms
        .iter()
        .map(|r| Sample {
            room: r.slug.clone(),
            people: 2,
        })
        .collect();
    measured::record(&state, &event, &samples, start).unwrap();
    // A streamed room's meeting is its stage: the first that is not.
    let first = event.rooms.iter().position(|r| !r.streamed()).unwrap();
    let m = measured::record(
        &state,
        &event,
        &samples[first..=first],
        start + Duration::hours(2),
    )
    .unwrap();
    assert_eq!(m.rooms.len(), event.rooms.len());
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.join(measured::FILE))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    // Only that room was watched long enough.
    let p = plan_json(&dir);
    let peaks = p["peaks"].as_array().unwrap();
    assert_eq!(peaks[first]["source"], "measured", "{}", peaks[first]);
    assert_eq!(peaks[first]["used"], 2);
    for (i, room) in event.rooms.iter().enumerate().filter(|(i, _)| *i != first) {
        assert_eq!(peaks[i]["source"], "declared");
        assert_eq!(peaks[i]["used"], room.peak);
        let note = peaks[i]["note"].as_str().unwrap();
        if room.streamed() {
            assert!(note.contains("streamed"), "{note}");
        } else {
            assert!(note.contains("watched for 0 minutes"), "{note}");
        }
    }

    // All of them: the venue shrinks, and never below one BBB server.
    let samples_later: Vec<Sample> = samples.clone();
    measured::record(&state, &event, &samples_later, start + Duration::hours(3)).unwrap();
    let p = plan_json(&dir);
    assert!(
        bbb(&p) < bbb(&declared),
        "{} vs {}",
        bbb(&p),
        bbb(&declared)
    );
    assert!(bbb(&p) >= 1);

    // Another event's measurements are refused, by name.
    let other = std::fs::read_to_string(dir.join(measured::FILE))
        .unwrap()
        .replace("\"lpc-2020\"", "\"other\"");
    std::fs::write(dir.join(measured::FILE), other).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_venue"))
        .args(["plan", "hosts/lpc-2020/event.toml", "--state"])
        .arg(&dir)
        .current_dir(repo())
        .env_remove("HCLOUD_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("measured.json holds measurements of event `other`, not `lpc-2020`"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
