//! BigBlueButton, per server, as the portal calls it: a `getMeetings` signed
//! with the event's secret and checksum algorithm answers SUCCESS; a probe
//! meeting is created, a join for it is accepted (`redirect=false`, so BBB
//! answers in XML instead of sending a browser on), and the meeting is ended.

use conference::protocol::bbb;

use super::{http, probe, Check, Outcome, Probe, Target};

/// BBB's API below the host's name.
pub const API_PATH: &str = "/bigbluebutton/api";

pub async fn probes(check: &Check, target: &Target) -> Vec<Probe> {
    let what = format!("HTTPS {}", target.ports.https);
    let (a, b) = tokio::join!(
        probe(check, target, "bbb api", &what, async {
            match call(check, target, "getMeetings", &[]).await {
                Ok(body) => Outcome::Ok(format!(
                    "getMeetings SUCCESS ({} meetings, {})",
                    meetings(&body).len(),
                    check.checksum.as_str()
                )),
                Err(e) => Outcome::Fail(e),
            }
        }),
        probe(check, target, "bbb meeting", &what, meeting(check, target)),
    );
    vec![a, b]
}

/// create → join → end, with a meeting of the check's own; it is ended even
/// when the join fails.
async fn meeting(check: &Check, target: &Target) -> Outcome {
    let id = format!("venue-check-{}", random_hex(6));
    let moderator_pw = random_hex(10);
    let attendee_pw = random_hex(10);
    let created = call(
        check,
        target,
        "create",
        &[
            ("name", "venue check"),
            ("meetingID", &id),
            ("attendeePW", &attendee_pw),
            ("moderatorPW", &moderator_pw),
            ("record", "false"),
            ("meta_venue-check", "true"),
        ],
    )
    .await;
    if let Err(e) = created {
        return Outcome::Fail(format!("creating a probe meeting: {e}"));
    }
    let joined = call(
        check,
        target,
        "join",
        &[
            ("fullName", "venue check"),
            ("meetingID", &id),
            ("role", "MODERATOR"),
            ("password", &moderator_pw),
            ("redirect", "false"),
        ],
    )
    .await;
    let ended = call(
        check,
        target,
        "end",
        &[("meetingID", &id), ("password", &moderator_pw)],
    )
    .await;
    match (joined, ended) {
        (Err(e), _) => Outcome::Fail(format!("joining the probe meeting {id}: {e}")),
        (Ok(body), _) if !has_text(&body, "session_token") => Outcome::Fail(format!(
            "joining the probe meeting {id}: the answer holds no session_token"
        )),
        (Ok(_), Err(e)) => Outcome::Fail(format!("ending the probe meeting {id}: {e}")),
        (Ok(_), Ok(_)) => Outcome::Ok(format!("meeting {id} created, joined, ended")),
    }
}

/// Calls the API and returns its answer when `returncode` is SUCCESS; else a
/// message with BBB's messageKey and what it means.
pub async fn call(
    check: &Check,
    target: &Target,
    name: &str,
    params: &[(&str, &str)],
) -> Result<String, String> {
    let (client, base) = http::client(check, target, &target.service_name)?;
    let url = bbb::url(
        &format!("{base}{API_PATH}"),
        name,
        params,
        &check.secrets.bbb,
        check.checksum,
    );
    let shown = format!("{base}{API_PATH}/{name}");
    let resp = client
        .get(&url)
        .send()
        .await
        .map_err(|e| format!("{shown}: {}", http::cause(&e)))?;
    let status = resp.status();
    let body = resp
        .text()
        .await
        .map_err(|e| format!("{shown}: {}", http::cause(&e)))?;
    if !status.is_success() {
        return Err(format!("{shown} answered HTTP {status}"));
    }
    let (code, key, message) = {
        let doc = roxmltree::Document::parse(&body)
            .map_err(|e| format!("{shown} answered something that is not XML: {e}"))?;
        (
            text(&doc, "returncode"),
            text(&doc, "messageKey").unwrap_or_default(),
            text(&doc, "message").unwrap_or_default(),
        )
    };
    match code.as_deref() {
        Some("SUCCESS") => Ok(body),
        Some(code) => {
            let meaning = match key.as_str() {
                "checksumError" => format!(
                    ": the host has another secret (or does not accept {} checksums)",
                    check.checksum.as_str()
                ),
                _ => String::new(),
            };
            Err(format!("{name} answered {code} {key}{meaning} ({message})"))
        }
        None => Err(format!("{shown} answered XML without a returncode")),
    }
}

/// The text of the first element named `tag`.
pub fn text(doc: &roxmltree::Document<'_>, tag: &str) -> Option<String> {
    doc.descendants()
        .find(|n| n.has_tag_name(tag))
        .map(|n| n.text().unwrap_or_default().trim().to_owned())
}

/// A meeting in a getMeetings answer: its id and participant count, and of
/// them the webcam streams (`videoCount`) and the listen-only
/// (`listenerCount`), which the autopilot weighs.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Meeting {
    pub id: String,
    pub participants: u64,
    pub video: u64,
    pub listeners: u64,
}

/// Whether an answer holds a non-empty `tag`.
pub fn has_text(body: &str, tag: &str) -> bool {
    roxmltree::Document::parse(body)
        .ok()
        .and_then(|d| text(&d, tag))
        .is_some_and(|t| !t.is_empty())
}

/// The meetings of a getMeetings answer (none when it is not XML).
pub fn meetings(body: &str) -> Vec<Meeting> {
    let Ok(doc) = roxmltree::Document::parse(body) else {
        return Vec::new();
    };
    doc.descendants()
        .filter(|n| n.has_tag_name("meeting"))
        .map(|m| {
            let child = |tag: &str| {
                m.children()
                    .find(|c| c.has_tag_name(tag))
                    .and_then(|c| c.text())
                    .unwrap_or_default()
                    .trim()
                    .to_owned()
            };
            Meeting {
                id: child("meetingID"),
                participants: child("participantCount").parse().unwrap_or(0),
                video: child("videoCount").parse().unwrap_or(0),
                listeners: child("listenerCount").parse().unwrap_or(0),
            }
        })
        .collect()
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    let _ = getrandom::fill(&mut b);
    conference::protocol::hex(&b)
}
