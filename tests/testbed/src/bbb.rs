//! A BigBlueButton API server for the testbed's bbb hosts (`fake-bbb`):
//! no media, but the API as BigBlueButton answers it. Every call's checksum
//! is checked as BBB does (the query as received with the `checksum`
//! parameter taken out, the algorithm chosen by the checksum's length and
//! refused unless it is in the server's `supportedChecksumAlgorithms`);
//! meetings are kept in memory; answers are the XML of BBB's API reference.
//! Generalised from the portal tests' fake (portal/tests/common/fake_bbb.rs).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use conference::protocol::bbb::{self, Checksum};

#[derive(Debug, Clone)]
pub struct Attendee {
    pub user_id: String,
    pub name: String,
    pub moderator: bool,
    pub listen_only: bool,
}

#[derive(Debug, Clone)]
pub struct Meeting {
    pub id: String,
    pub name: String,
    pub create_time: i64,
    pub attendee_pw: String,
    pub moderator_pw: String,
    pub attendees: Vec<Attendee>,
}

/// What one server holds.
#[derive(Default)]
pub struct BbbState {
    secret: String,
    supported: Vec<Checksum>,
    pub meetings: BTreeMap<String, Meeting>,
    /// Calls refused for their checksum.
    pub rejected: u64,
    /// Session tokens of accepted joins: (meetingID, fullName, role).
    tokens: HashMap<String, (String, String, String)>,
}

/// The API under `/bigbluebutton/api`, and `/html5client/join` where a
/// join redirects.
pub fn router(secret: &str, supported: &[Checksum]) -> (Router, Arc<Mutex<BbbState>>) {
    let state = Arc::new(Mutex::new(BbbState {
        secret: secret.to_owned(),
        supported: supported.to_vec(),
        ..BbbState::default()
    }));
    let app = Router::new()
        .route("/bigbluebutton/api", get(version))
        .route("/bigbluebutton/api/", get(version))
        .route("/bigbluebutton/api/{call}", get(api))
        .route("/html5client/join", get(client))
        .with_state(state.clone());
    (app, state)
}

fn xml(body: String) -> Response {
    (
        [(header::CONTENT_TYPE, "text/xml;charset=utf-8")],
        format!("<response>\n  <returncode>SUCCESS</returncode>\n{body}</response>"),
    )
        .into_response()
}

fn failed(key: &str, message: &str) -> Response {
    (
        [(header::CONTENT_TYPE, "text/xml;charset=utf-8")],
        format!("<response>\n  <returncode>FAILED</returncode>\n  <messageKey>{key}</messageKey>\n  <message>{}</message>\n</response>", esc(message)),
    )
        .into_response()
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The API root needs no checksum (BBB answers its version to anyone).
async fn version() -> Response {
    xml("  <version>2.0</version>\n  <apiVersion>2.0</apiVersion>\n  <bbbVersion>2.7.0</bbbVersion>\n".into())
}

async fn api(
    State(state): State<Arc<Mutex<BbbState>>>,
    Path(call): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let query = query.unwrap_or_default();
    let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(e) = bbb::verify(&call, &query, &st.secret, &st.supported) {
        st.rejected += 1;
        tracing::info!(call, reason = %e, "checksum refused");
        // BBB's own words; the reason goes to the log only, as BBB does.
        return failed(
            "checksumError",
            "You did not pass the checksum security check",
        );
    }
    let params: HashMap<String, String> = bbb::parse_query(&query).into_iter().collect();
    let p = |k: &str| params.get(k).cloned().unwrap_or_default();
    tracing::info!(call, meeting = %p("meetingID"), "call");
    let id = p("meetingID");
    let needs_id = matches!(
        call.as_str(),
        "create" | "join" | "end" | "getMeetingInfo" | "isMeetingRunning"
    );
    if needs_id && id.is_empty() {
        return failed(
            "missingParamMeetingID",
            "You must specify a meeting ID for the meeting.",
        );
    }
    match call.as_str() {
        "getMeetings" => {
            if st.meetings.is_empty() {
                return xml("  <meetings/>\n  <messageKey>noMeetings</messageKey>\n  <message>no meetings were found on this server</message>\n".into());
            }
            let mut out = String::from("  <meetings>\n");
            for m in st.meetings.values() {
                out.push_str(&meeting_xml(m, "    "));
            }
            out.push_str("  </meetings>\n");
            xml(out)
        }
        "getMeetingInfo" => match st.meetings.get(&id) {
            Some(m) => xml(meeting_fields(m, "  ")),
            None => failed(
                "notFound",
                "We could not find a meeting with that meeting ID",
            ),
        },
        "isMeetingRunning" => {
            let running = st
                .meetings
                .get(&id)
                .is_some_and(|m| !m.attendees.is_empty());
            xml(format!("  <running>{running}</running>\n"))
        }
        "create" => {
            let duplicate = st.meetings.contains_key(&id);
            // BBB generates the passwords a create call leaves out.
            let generated = format!("{:x}", chrono::Utc::now().timestamp_micros());
            let m = st.meetings.entry(id.clone()).or_insert_with(|| Meeting {
                id: id.clone(),
                name: params.get("name").cloned().unwrap_or_else(|| id.clone()),
                create_time: chrono::Utc::now().timestamp_millis(),
                attendee_pw: params
                    .get("attendeePW")
                    .cloned()
                    .unwrap_or_else(|| format!("ap{generated}")),
                moderator_pw: params
                    .get("moderatorPW")
                    .cloned()
                    .unwrap_or_else(|| format!("mp{generated}")),
                attendees: Vec::new(),
            });
            let mut out = format!(
                "  <meetingID>{}</meetingID>\n  <internalMeetingID>{:x}-{}</internalMeetingID>\n  <parentMeetingID>bbb-none</parentMeetingID>\n  <attendeePW>{}</attendeePW>\n  <moderatorPW>{}</moderatorPW>\n  <createTime>{}</createTime>\n  <voiceBridge>70757</voiceBridge>\n  <dialNumber>613-555-1234</dialNumber>\n  <hasUserJoined>false</hasUserJoined>\n  <duration>0</duration>\n  <hasBeenForciblyEnded>false</hasBeenForciblyEnded>\n",
                esc(&m.id), m.id.len(), m.create_time, esc(&m.attendee_pw), esc(&m.moderator_pw), m.create_time
            );
            if duplicate {
                out.push_str("  <messageKey>duplicateWarning</messageKey>\n  <message>This conference was already in existence and may currently be in progress.</message>\n");
            } else {
                out.push_str("  <messageKey></messageKey>\n  <message></message>\n");
            }
            xml(out)
        }
        "join" => {
            let Some(m) = st.meetings.get(&id) else {
                return failed("notFound", "We could not find a meeting with that meeting ID - perhaps the meeting is not yet running?");
            };
            let role = match p("role").to_ascii_uppercase().as_str() {
                "MODERATOR" => "MODERATOR",
                "VIEWER" => "VIEWER",
                _ if !p("password").is_empty() && p("password") == m.moderator_pw => "MODERATOR",
                _ if !p("password").is_empty() && p("password") == m.attendee_pw => "VIEWER",
                _ => return failed("invalidPassword", "You either did not supply a password or the password supplied is neither the attendee or moderator password for this conference."),
            }
            .to_owned();
            let name = p("fullName");
            if name.is_empty() {
                return failed(
                    "missingParamFullName",
                    "You must specify a name for the attendee who will be joining the meeting.",
                );
            }
            let token = format!("t{:016x}", rand::random::<u64>());
            let listen_only = p("userdata-bbb_listen_only_mode") == "true";
            if let Some(m) = st.meetings.get_mut(&id) {
                m.attendees.push(Attendee {
                    user_id: p("userID"),
                    name: name.clone(),
                    moderator: role == "MODERATOR",
                    listen_only,
                });
            }
            st.tokens
                .insert(token.clone(), (id.clone(), name.clone(), role.clone()));
            if p("redirect") != "false" {
                (
                    StatusCode::FOUND,
                    [(
                        header::LOCATION,
                        format!("/html5client/join?sessionToken={token}"),
                    )],
                )
                    .into_response()
            } else {
                xml(format!("  <messageKey>successfullyJoined</messageKey>\n  <message>You have joined successfully.</message>\n  <meeting_id>{}</meeting_id>\n  <user_id>{}</user_id>\n  <session_token>{token}</session_token>\n  <url>/html5client/join?sessionToken={token}</url>\n", esc(&id), esc(&p("userID"))))
            }
        }
        "end" => match st.meetings.remove(&id) {
            Some(_) => {
                st.tokens.retain(|_, (m, _, _)| *m != id);
                xml("  <messageKey>sentEndMeetingRequest</messageKey>\n  <message>A request to end the meeting was sent.  Please wait a few seconds, and then use the getMeetingInfo or isMeetingRunning API calls to verify that it was ended.</message>\n".into())
            }
            None => failed(
                "notFound",
                "We could not find a meeting with that meeting ID - perhaps the meeting is not yet running?",
            ),
        },
        _ => failed("unsupportedRequest", "This request is not supported."),
    }
}

fn meeting_xml(m: &Meeting, indent: &str) -> String {
    let inner = format!("{indent}  ");
    format!(
        "{indent}<meeting>\n{}{indent}</meeting>\n",
        meeting_fields(m, &inner)
    )
}

/// The fields of `<meeting>` (getMeetings) and of getMeetingInfo's answer.
fn meeting_fields(m: &Meeting, i: &str) -> String {
    let count = |f: fn(&Attendee) -> bool| m.attendees.iter().filter(|a| f(a)).count();
    let joined = !m.attendees.is_empty();
    let mut out = format!(
        "{i}<meetingName>{}</meetingName>\n{i}<meetingID>{}</meetingID>\n{i}<internalMeetingID>{:x}-{}</internalMeetingID>\n{i}<createTime>{}</createTime>\n{i}<voiceBridge>70066</voiceBridge>\n{i}<dialNumber>613-555-1234</dialNumber>\n{i}<attendeePW>{}</attendeePW>\n{i}<moderatorPW>{}</moderatorPW>\n{i}<running>{joined}</running>\n{i}<duration>0</duration>\n{i}<hasUserJoined>{joined}</hasUserJoined>\n{i}<recording>false</recording>\n{i}<hasBeenForciblyEnded>false</hasBeenForciblyEnded>\n{i}<startTime>{}</startTime>\n{i}<endTime>0</endTime>\n{i}<participantCount>{}</participantCount>\n{i}<listenerCount>{}</listenerCount>\n{i}<voiceParticipantCount>{}</voiceParticipantCount>\n{i}<videoCount>0</videoCount>\n{i}<maxUsers>0</maxUsers>\n{i}<moderatorCount>{}</moderatorCount>\n{i}<attendees>\n",
        esc(&m.name), esc(&m.id), m.id.len(), m.create_time, m.create_time,
        esc(&m.attendee_pw), esc(&m.moderator_pw), m.create_time,
        m.attendees.len(), count(|a| a.listen_only), count(|a| !a.listen_only), count(|a| a.moderator),
    );
    for a in &m.attendees {
        out.push_str(&format!(
            "{i}  <attendee>\n{i}    <userID>{}</userID>\n{i}    <fullName>{}</fullName>\n{i}    <role>{}</role>\n{i}    <isPresenter>false</isPresenter>\n{i}    <isListeningOnly>{}</isListeningOnly>\n{i}    <hasJoinedVoice>{}</hasJoinedVoice>\n{i}    <hasVideo>false</hasVideo>\n{i}    <clientType>HTML5</clientType>\n{i}  </attendee>\n",
            esc(&a.user_id), esc(&a.name), if a.moderator { "MODERATOR" } else { "VIEWER" }, a.listen_only, !a.listen_only
        ));
    }
    out.push_str(&format!(
        "{i}</attendees>\n{i}<metadata/>\n{i}<isBreakout>false</isBreakout>\n"
    ));
    out
}

/// Where a join redirects: a page naming the meeting and the role (BBB's
/// HTML5 client, which cannot run here).
async fn client(State(state): State<Arc<Mutex<BbbState>>>, RawQuery(query): RawQuery) -> Response {
    let q = query.unwrap_or_default();
    let token = q.strip_prefix("sessionToken=").unwrap_or("");
    let st = state.lock().unwrap_or_else(|e| e.into_inner());
    match st.tokens.get(token) {
        Some((id, name, role)) => (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            format!("<!DOCTYPE html><html><head><title>BBB stand-in client</title></head><body><h1 id=\"joined\">Joined {} as {} ({})</h1></body></html>", esc(id), esc(role), esc(name)),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such session token").into_response(),
    }
}

/// Parses BBB's `supportedChecksumAlgorithms` list: `sha1,sha256`.
pub fn parse_checksums(list: &str) -> Result<Vec<Checksum>, String> {
    let v: Vec<Checksum> = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    if v.is_empty() {
        return Err("the list of checksum algorithms is empty".into());
    }
    Ok(v)
}
