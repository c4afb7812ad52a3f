//! The testbed's BigBlueButton API (`fake-bbb`): checksums checked as BBB
//! checks them, against the server's own list of algorithms, and the
//! meeting calls answering as BBB's API reference says. The binary is run
//! as the testbed's bbb hosts run it: a secret file, a listen address.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use conference::protocol::bbb::{self, Checksum};

const SECRET: &str = "8cd8ef52e8e101574e400365b55e11a6";

struct Server {
    child: Child,
    api: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("venue-fake-bbb-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Starts fake-bbb on a free port; the API endpoint.
fn start(name: &str, secret_file_content: &str, checksums: &str) -> Result<Server, String> {
    let dir = scratch(name);
    let secret = dir.join("bbb-secret");
    std::fs::write(&secret, secret_file_content).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_fake-bbb"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--checksums",
            checksums,
            "--secret-file",
        ])
        .arg(&secret)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    match line.trim().strip_prefix("fake-bbb listening on ") {
        Some(base) => Ok(Server {
            api: format!("{base}/bigbluebutton/api"),
            child,
        }),
        None => {
            let out = child.wait_with_output().unwrap();
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

fn get(url: &str) -> (u16, String, Option<String>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let r = c.get(url).send().await.unwrap();
        let loc = r
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_owned());
        (r.status().as_u16(), r.text().await.unwrap(), loc)
    })
}

fn call(s: &Server, name: &str, params: &[(&str, &str)], alg: Checksum) -> String {
    get(&bbb::url(&s.api, name, params, SECRET, alg)).1
}

#[test]
fn checksums_are_checked_against_the_servers_own_list() {
    let s = start("list", &format!("{SECRET}\n"), "sha256,sha512").unwrap();
    for alg in [Checksum::Sha256, Checksum::Sha512] {
        let body = call(&s, "getMeetings", &[], alg);
        assert!(
            body.contains("<returncode>SUCCESS</returncode>"),
            "{alg}: {body}"
        );
        assert!(body.contains("noMeetings"), "{body}");
    }
    for alg in [Checksum::Sha1, Checksum::Sha384] {
        let body = call(&s, "getMeetings", &[], alg);
        assert!(
            body.contains("<messageKey>checksumError</messageKey>"),
            "{alg} is off: {body}"
        );
    }
    // Another secret, a missing checksum, a tampered query.
    let other = bbb::url(&s.api, "getMeetings", &[], "other", Checksum::Sha256);
    assert!(get(&other).1.contains("checksumError"));
    assert!(get(&format!("{}/getMeetings", s.api))
        .1
        .contains("checksumError"));
    let signed = bbb::url(
        &s.api,
        "getMeetingInfo",
        &[("meetingID", "a")],
        SECRET,
        Checksum::Sha256,
    );
    let tampered = signed.replace("meetingID=a", "meetingID=b");
    assert!(get(&tampered).1.contains("checksumError"));
    // The checksum covers the query exactly as sent (BBB does not re-encode).
    let (_, body, _) = get(&bbb::url(
        &s.api,
        "create",
        &[("meetingID", "ä b+c"), ("name", "Ä")],
        SECRET,
        Checksum::Sha256,
    ));
    assert!(body.contains("<meetingID>ä b+c</meetingID>"), "{body}");
    // The API root answers anyone, as BBB's does.
    let (code, body, _) = get(&s.api);
    assert_eq!(code, 200);
    assert!(body.contains("<version>"), "{body}");
}

#[test]
fn meetings_are_created_joined_and_ended() {
    let s = start("meetings", SECRET, "sha1,sha256,sha384,sha512").unwrap();
    let id = [("meetingID", "m-1")];
    let body = call(&s, "isMeetingRunning", &id, Checksum::Sha1);
    assert!(body.contains("<running>false</running>"), "{body}");
    let body = call(
        &s,
        "join",
        &[("meetingID", "m-1"), ("fullName", "A"), ("role", "VIEWER")],
        Checksum::Sha256,
    );
    assert!(body.contains("<messageKey>notFound</messageKey>"), "{body}");
    // Passwords left out are generated; create twice is a duplicate warning.
    let created = call(
        &s,
        "create",
        &[("meetingID", "m-1"), ("name", "Room")],
        Checksum::Sha256,
    );
    assert!(
        created.contains("SUCCESS") && created.contains("<messageKey></messageKey>"),
        "{created}"
    );
    let mpw = created
        .split("<moderatorPW>")
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap()
        .to_owned();
    assert!(!mpw.is_empty());
    let again = call(
        &s,
        "create",
        &[("meetingID", "m-1"), ("name", "Room")],
        Checksum::Sha256,
    );
    assert!(again.contains("duplicateWarning"), "{again}");
    // A wrong password is refused; the right one joins as moderator.
    let body = call(
        &s,
        "join",
        &[
            ("meetingID", "m-1"),
            ("fullName", "A"),
            ("password", "nope"),
        ],
        Checksum::Sha256,
    );
    assert!(body.contains("invalidPassword"), "{body}");
    let (code, _, loc) = get(&bbb::url(
        &s.api,
        "join",
        &[
            ("meetingID", "m-1"),
            ("fullName", "Ada"),
            ("password", &mpw),
        ],
        SECRET,
        Checksum::Sha256,
    ));
    assert_eq!(code, 302);
    let base = s.api.trim_end_matches("/bigbluebutton/api");
    let (code, page, _) = get(&format!("{base}{}", loc.unwrap()));
    assert_eq!(code, 200);
    assert!(page.contains("Joined m-1 as MODERATOR (Ada)"), "{page}");
    let body = call(
        &s,
        "join",
        &[
            ("meetingID", "m-1"),
            ("fullName", "Bob"),
            ("role", "VIEWER"),
            ("redirect", "false"),
            ("userdata-bbb_listen_only_mode", "true"),
        ],
        Checksum::Sha384,
    );
    assert!(body.contains("successfullyJoined"), "{body}");
    let info = call(&s, "getMeetingInfo", &id, Checksum::Sha256);
    for want in [
        "<participantCount>2</participantCount>",
        "<listenerCount>1</listenerCount>",
        "<moderatorCount>1</moderatorCount>",
        "<fullName>Bob</fullName>",
    ] {
        assert!(info.contains(want), "{want}: {info}");
    }
    let all = call(&s, "getMeetings", &[], Checksum::Sha256);
    assert!(
        all.contains("<meetingID>m-1</meetingID>") && all.contains("<running>true</running>"),
        "{all}"
    );
    let body = call(&s, "end", &id, Checksum::Sha256);
    assert!(body.contains("sentEndMeetingRequest"), "{body}");
    let body = call(&s, "getMeetingInfo", &id, Checksum::Sha256);
    assert!(body.contains("notFound"), "{body}");
    let body = call(&s, "end", &id, Checksum::Sha256);
    assert!(body.contains("notFound"), "{body}");
    let body = call(&s, "create", &[("name", "no id")], Checksum::Sha256);
    assert!(body.contains("missingParamMeetingID"), "{body}");
}

#[test]
fn a_missing_or_empty_secret_or_a_bad_list_is_a_clear_error() {
    let e = start("empty", "  \n", "sha256")
        .err()
        .expect("an empty secret is refused");
    assert!(e.contains("is empty"), "{e}");
    let e = start("list-bad", SECRET, "sha256,md5")
        .err()
        .expect("md5 is refused");
    assert!(e.contains("--checksums") && e.contains("md5"), "{e}");
    let out = Command::new(env!("CARGO_BIN_EXE_fake-bbb"))
        .args(["--secret-file", "/nonexistent/bbb-secret"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/bbb-secret"), "{err}");
}
