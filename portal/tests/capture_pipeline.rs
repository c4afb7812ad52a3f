//! The real stage capture on this machine: the portal says the main track
//! is live, `venue-portal capture` starts modules/capture-run.sh (the
//! script the NixOS unit runs) with Debian's Xvfb, PulseAudio, Chromium and
//! ffmpeg; the browser joins the (fake) BBB stage, whose page moves and
//! plays a tone; ffmpeg pushes it to a real nginx-rtmp origin, and the HLS
//! playlist and a segment fetched from it carry that picture and sound.
//! Staff stop it from the portal, and every process of it ends.
//!
//! Skipped, with a message, when a binary is missing outside CI; in CI
//! (`CI` set, as .ci/run does) a missing binary fails it: scripts/install-deps
//! installs them all.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::fake_bbb::FakeBbb;
use common::origin::{RtmpOrigin, RTMP_MODULE};
use common::*;
use conference::protocol::bbb::Checksum;

const SECRET: &str = "capture-secret-for-tests-0123";

/// Whether everything the capture needs is here; panics in CI when not.
fn have_tools() -> bool {
    let missing: Vec<&str> = [
        "/usr/bin/Xvfb",
        "/usr/bin/pulseaudio",
        "/usr/bin/chromium",
        "/usr/bin/ffmpeg",
        "/usr/bin/ffprobe",
        RTMP_MODULE,
    ]
    .into_iter()
    .filter(|p| !Path::new(p).exists())
    .collect();
    if missing.is_empty() {
        return true;
    }
    let msg = format!(
        "the stage capture test needs {} (scripts/install-deps: xvfb pulseaudio chromium ffmpeg libnginx-mod-rtmp)",
        missing.join(", ")
    );
    assert!(std::env::var_os("CI").is_none(), "{msg}");
    eprintln!("SKIPPED: {msg}");
    false
}

struct Controller(Child);

impl Drop for Controller {
    fn drop(&mut self) {
        // SIGTERM: the controller stops its captures before it exits.
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        let _ = self.0.wait();
    }
}

fn probe(file: &Path, args: &[&str]) -> String {
    let out = Command::new("ffprobe")
        .args(["-v", "error"])
        .args(args)
        .arg(file)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `mean_volume` (dB) and the mean saturation of `file`.
fn sound_and_colour(file: &Path) -> (f64, f64) {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-i"])
        .arg(file)
        .args([
            "-af",
            "volumedetect",
            "-vf",
            "signalstats,metadata=print:key=lavfi.signalstats.SATAVG",
            "-f",
            "null",
            "-",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    let volume = text
        .lines()
        .find_map(|l| l.split("mean_volume: ").nth(1))
        .and_then(|v| v.trim_end_matches(" dB").trim().parse().ok())
        .unwrap_or(-100.0);
    let sats: Vec<f64> = text
        .lines()
        .filter_map(|l| l.split("SATAVG=").nth(1))
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    let sat = sats.iter().sum::<f64>() / sats.len().max(1) as f64;
    (volume, sat)
}

fn processes_under(dir: &Path) -> usize {
    Command::new("pgrep")
        .arg("-f")
        .arg(dir)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_is_captured_into_the_origin_and_stopped_by_staff() {
    if !have_tools() {
        return;
    }
    let dir = TempDir::new("capture-pipeline");
    let origin = RtmpOrigin::start(dir.path(), 2);
    let fake = FakeBbb::start("capture-bbb-secret", &[Checksum::Sha256]).await;
    let event = write_live_event(dir.path());
    let text = std::fs::read_to_string(&event).unwrap();
    std::fs::write(
        &event,
        text.replacen(
            "peak = 80\nwebcams = false\n",
            "peak = 80\nwebcams = false\naudience = \"stream\"\n",
            1,
        ),
    )
    .unwrap();
    let secret = dir.write("capture.secret", SECRET);
    let config = write_config(
        dir.path(),
        0.5,
        &[("bbb-a", &fake.url(), "capture-bbb-secret", "sha256")],
        &format!(
            "[capture]\nsecret_file = \"{}\"\nrtmp_url = \"{}\"\n",
            secret.display(),
            origin.rtmp_url()
        ),
    );
    let state = dir.path().join("state");
    import_tickets(&state, TICKETS);
    let p = Portal::start(&event, &state, Some(&config));

    let script: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "..",
        "modules",
        "capture-run.sh",
    ]
    .iter()
    .collect();
    let run = dir.path().join("run");
    let log = dir.path().join("controller.log");
    let started = Instant::now();
    // Smaller than production (640x360 at 15 fps) to keep the shared CI
    // cores free; one keyframe per 2 s fragment as in production.
    let ctl = Controller(
        Command::new(bin())
            .args(["capture", "--portal", &p.url, "--interval", "0.5"])
            .arg("--secret-file")
            .arg(&secret)
            .arg("--command")
            .arg(&script)
            .arg("--state")
            .arg(&run)
            .env("RUST_LOG", "info")
            .env("CAPTURE_SIZE", "640x360")
            .env("CAPTURE_FPS", "15")
            .env("CAPTURE_GOP", "30")
            .env("CAPTURE_VIDEO_BITRATE", "800k")
            // Tests run as root, where Chromium's sandbox cannot start.
            .env("CAPTURE_CHROMIUM_FLAGS", "--no-sandbox")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let ok = origin.wait_segments("main-track", 3, Duration::from_secs(90));
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(ok, "no HLS from the capture\n{}", log_text());
    let first_segments = started.elapsed();

    // Fetched as a viewer would: the playlist, then its newest segment.
    let c = client();
    let playlist = c
        .get(format!("{}/main-track.m3u8", origin.hls()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let newest = playlist
        .lines()
        .rfind(|l| l.ends_with(".ts"))
        .unwrap()
        .to_owned();
    let segment = c
        .get(format!("{}/{newest}", origin.hls()))
        .send()
        .await
        .unwrap();
    assert_eq!(segment.status(), 200);
    let bytes = segment.bytes().await.unwrap();
    let seg = dir.path().join("segment.ts");
    std::fs::write(&seg, &bytes).unwrap();
    let streams = probe(
        &seg,
        &[
            "-show_entries",
            "stream=codec_name,width,height",
            "-of",
            "csv=p=0",
        ],
    );
    assert!(streams.contains("h264,640,360"), "{streams}");
    assert!(streams.contains("aac"), "{streams}");
    // The stage's tone came through PulseAudio, and its moving colours
    // through the display: not silence, not a blank page.
    let (volume, saturation) = sound_and_colour(&seg);
    assert!(volume > -40.0, "the capture is silent ({volume} dB)");
    assert!(
        saturation > 20.0,
        "the capture shows no stage (saturation {saturation})"
    );
    println!(
        "capture: first 3 segments after {:.1} s; segment {newest}: {} bytes ({:.0} kbit/s at 2 s), {volume} dB, saturation {saturation:.0}",
        first_segments.as_secs_f64(),
        bytes.len(),
        bytes.len() as f64 * 8.0 / 2.0 / 1000.0
    );

    // Staff stop it: every process of the capture ends, the stream stops.
    let staff = login(&c, &p.url, "carol@example.org", "carol-ticket-03").await;
    let csrf = session_csrf(&c, &p.url, &staff).await;
    let (s, _, _) = post(
        &c,
        &format!("{}/staff/capture", p.url),
        &staff,
        &[("csrf", &csrf), ("room", "main-track"), ("action", "stop")],
    )
    .await;
    assert_eq!(s, 303);
    let work = run.join("main-track/work");
    let deadline = Instant::now() + Duration::from_secs(30);
    while (work.exists() || processes_under(&work) > 0) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        !work.exists(),
        "the capture did not clean up\n{}",
        log_text()
    );
    assert_eq!(
        processes_under(&work),
        0,
        "processes of the capture are left"
    );
    let mtime = || {
        std::fs::metadata(origin.playlist("main-track"))
            .and_then(|m| m.modified())
            .ok()
    };
    let before = mtime();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(before, mtime(), "the stream goes on after the stop");
    assert!(log_text().contains("capture stopped"), "{}", log_text());
    drop(ctl);
}
