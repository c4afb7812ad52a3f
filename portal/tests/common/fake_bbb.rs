//! A fake BigBlueButton API for tests and the benchmark. It checks every
//! call's checksum as BigBlueButton does (the query as received, the
//! checksum parameter taken out, the algorithm chosen by the checksum's
//! length and refused unless enabled), keeps meetings and answers with the
//! XML of BigBlueButton's API reference.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use conference::protocol::bbb::{self, Checksum};

#[derive(Debug, Clone)]
pub struct FakeAttendee {
    pub user_id: String,
    pub name: String,
    pub moderator: bool,
    pub listen_only: bool,
    pub voice: bool,
    pub video: bool,
}

#[derive(Debug, Clone)]
pub struct FakeMeeting {
    pub id: String,
    pub name: String,
    pub create_time: i64,
    pub attendee_pw: String,
    pub moderator_pw: String,
    /// Every parameter of the `create` call.
    pub create_params: HashMap<String, String>,
    pub attendees: Vec<FakeAttendee>,
}

#[derive(Default)]
pub struct FakeState {
    pub secret: String,
    pub supported: Vec<Checksum>,
    pub meetings: BTreeMap<String, FakeMeeting>,
    /// Accepted calls by name.
    pub calls: HashMap<String, u64>,
    /// Calls refused for their checksum.
    pub rejected: u64,
    /// Every join accepted: (meetingID, fullName, role).
    pub joins: Vec<(String, String, String)>,
    /// Answer 503 to everything.
    pub down: bool,
    tokens: HashMap<String, (String, String, String)>,
}

#[derive(Clone)]
pub struct FakeBbb {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<FakeState>>,
}

impl FakeBbb {
    /// Starts on 127.0.0.1 with a free port, in the current tokio runtime.
    pub async fn start(secret: &str, supported: &[Checksum]) -> FakeBbb {
        Self::start_on("127.0.0.1:0", secret, supported).await
    }

    pub async fn start_on(listen: &str, secret: &str, supported: &[Checksum]) -> FakeBbb {
        let state = Arc::new(Mutex::new(FakeState {
            secret: secret.to_owned(),
            supported: supported.to_vec(),
            ..FakeState::default()
        }));
        let app = Router::new()
            .route("/bigbluebutton/api", get(version))
            .route("/bigbluebutton/api/", get(version))
            .route("/bigbluebutton/api/{call}", get(api))
            .route("/html5client/join", get(client))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .expect("bind the fake BBB");
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeBbb { addr, state }
    }

    /// The API endpoint, as a portal config's `url`.
    pub fn url(&self) -> String {
        format!("http://{}/bigbluebutton/api", self.addr)
    }

    pub fn calls(&self, call: &str) -> u64 {
        self.state
            .lock()
            .unwrap()
            .calls
            .get(call)
            .copied()
            .unwrap_or(0)
    }

    pub fn rejected(&self) -> u64 {
        self.state.lock().unwrap().rejected
    }

    pub fn set_down(&self, down: bool) {
        self.state.lock().unwrap().down = down;
    }

    pub fn meeting(&self, id: &str) -> Option<FakeMeeting> {
        self.state.lock().unwrap().meetings.get(id).cloned()
    }

    /// Adds a running meeting with `people` attendees, `age_ms` old.
    pub fn add_meeting(
        &self,
        id: &str,
        people: usize,
        listeners: usize,
        video: usize,
        age_ms: i64,
    ) {
        let now = chrono::Utc::now().timestamp_millis();
        let attendees = (0..people)
            .map(|i| FakeAttendee {
                user_id: format!("w_{i}"),
                name: format!("Person {i}"),
                moderator: i == 0,
                listen_only: i < listeners,
                voice: i >= listeners,
                video: i < video,
            })
            .collect();
        self.state.lock().unwrap().meetings.insert(
            id.to_owned(),
            FakeMeeting {
                id: id.to_owned(),
                name: id.to_owned(),
                create_time: now - age_ms,
                attendee_pw: "ap".into(),
                moderator_pw: "mp".into(),
                create_params: HashMap::new(),
                attendees,
            },
        );
    }
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
        format!("<response>\n  <returncode>FAILED</returncode>\n  <messageKey>{key}</messageKey>\n  <message>{message}</message>\n</response>"),
    )
        .into_response()
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn version() -> Response {
    xml("  <version>2.0</version>\n  <apiVersion>2.0</apiVersion>\n  <bbbVersion>2.7.0</bbbVersion>\n".into())
}

async fn api(
    State(state): State<Arc<Mutex<FakeState>>>,
    Path(call): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let query = query.unwrap_or_default();
    let mut st = state.lock().unwrap();
    if st.down {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    if let Err(e) = bbb::verify(&call, &query, &st.secret, &st.supported) {
        st.rejected += 1;
        return failed("checksumError", &format!("Checksums do not match ({e})"));
    }
    *st.calls.entry(call.clone()).or_default() += 1;
    let params: HashMap<String, String> = bbb::parse_query(&query).into_iter().collect();
    let p = |k: &str| params.get(k).cloned().unwrap_or_default();
    match call.as_str() {
        "getMeetings" => {
            if st.meetings.is_empty() {
                return xml("  <meetings/>\n  <messageKey>noMeetings</messageKey>\n  <message>no meetings were found on this server</message>\n".into());
            }
            let mut out = String::from("  <meetings>\n");
            for m in st.meetings.values() {
                out.push_str(&meeting_xml(m));
            }
            out.push_str("  </meetings>\n");
            xml(out)
        }
        "create" => {
            let id = p("meetingID");
            if id.is_empty() {
                return failed("missingParamMeetingID", "You must specify a meeting ID for the meeting.");
            }
            let duplicate = st.meetings.contains_key(&id);
            let m = st.meetings.entry(id.clone()).or_insert_with(|| FakeMeeting {
                id: id.clone(),
                name: params.get("name").cloned().unwrap_or_else(|| id.clone()),
                create_time: chrono::Utc::now().timestamp_millis(),
                attendee_pw: p("attendeePW"),
                moderator_pw: p("moderatorPW"),
                create_params: params.clone(),
                attendees: Vec::new(),
            });
            let mut out = format!(
                "  <meetingID>{}</meetingID>\n  <internalMeetingID>{:x}-{}</internalMeetingID>\n  <parentMeetingID>bbb-none</parentMeetingID>\n  <attendeePW>{}</attendeePW>\n  <moderatorPW>{}</moderatorPW>\n  <createTime>{}</createTime>\n  <voiceBridge>70757</voiceBridge>\n  <dialNumber>613-555-1234</dialNumber>\n  <createDate>Mon Nov 23 18:00:00 UTC 2026</createDate>\n  <hasUserJoined>false</hasUserJoined>\n  <duration>0</duration>\n  <hasBeenForciblyEnded>false</hasBeenForciblyEnded>\n",
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
            let id = p("meetingID");
            let Some(m) = st.meetings.get(&id) else {
                return failed("notFound", "We could not find a meeting with that meeting ID - perhaps the meeting is not yet running?");
            };
            let role = match p("role").to_ascii_uppercase().as_str() {
                "MODERATOR" => "MODERATOR",
                "VIEWER" => "VIEWER",
                _ if p("password") == m.moderator_pw => "MODERATOR",
                _ if p("password") == m.attendee_pw => "VIEWER",
                _ => return failed("invalidPassword", "You either did not supply a password or the password supplied is neither the attendee or moderator password for this conference."),
            }
            .to_owned();
            let name = p("fullName");
            let token = format!("t{:016x}", st.joins.len() as u64 * 7919 + 1);
            let listen_only = p("userdata-bbb_listen_only_mode") == "true";
            let m = st.meetings.get_mut(&id).unwrap();
            m.attendees.push(FakeAttendee {
                user_id: p("userID"),
                name: name.clone(),
                moderator: role == "MODERATOR",
                listen_only,
                voice: !listen_only,
                video: false,
            });
            st.joins.push((id.clone(), name.clone(), role.clone()));
            st.tokens.insert(token.clone(), (id.clone(), name.clone(), role.clone()));
            if p("redirect") != "false" {
                (StatusCode::FOUND, [(header::LOCATION, format!("/html5client/join?sessionToken={token}"))]).into_response()
            } else {
                xml(format!("  <messageKey>successfullyJoined</messageKey>\n  <message>You have joined successfully.</message>\n  <meeting_id>{}</meeting_id>\n  <user_id>{}</user_id>\n  <auth_token>x</auth_token>\n  <session_token>{token}</session_token>\n  <url>/html5client/join?sessionToken={token}</url>\n", esc(&id), esc(&p("userID"))))
            }
        }
        "end" => match st.meetings.remove(&p("meetingID")) {
            Some(_) => xml("  <messageKey>sentEndMeetingRequest</messageKey>\n  <message>A request to end the meeting was sent.</message>\n".into()),
            None => failed("notFound", "We could not find a meeting with that meeting ID"),
        },
        _ => failed("unsupportedRequest", "This request is not supported."),
    }
}

fn meeting_xml(m: &FakeMeeting) -> String {
    let count = |f: fn(&FakeAttendee) -> bool| m.attendees.iter().filter(|a| f(a)).count();
    let mut out = format!(
        "    <meeting>\n      <meetingName>{}</meetingName>\n      <meetingID>{}</meetingID>\n      <internalMeetingID>{:x}-{}</internalMeetingID>\n      <createTime>{}</createTime>\n      <createDate>Mon Nov 23 18:00:00 UTC 2026</createDate>\n      <voiceBridge>70066</voiceBridge>\n      <dialNumber>613-555-1234</dialNumber>\n      <attendeePW>{}</attendeePW>\n      <moderatorPW>{}</moderatorPW>\n      <running>{}</running>\n      <duration>0</duration>\n      <hasUserJoined>{}</hasUserJoined>\n      <recording>false</recording>\n      <hasBeenForciblyEnded>false</hasBeenForciblyEnded>\n      <startTime>{}</startTime>\n      <endTime>0</endTime>\n      <participantCount>{}</participantCount>\n      <listenerCount>{}</listenerCount>\n      <voiceParticipantCount>{}</voiceParticipantCount>\n      <videoCount>{}</videoCount>\n      <maxUsers>0</maxUsers>\n      <moderatorCount>{}</moderatorCount>\n      <attendees>\n",
        esc(&m.name), esc(&m.id), m.id.len(), m.create_time, m.create_time,
        esc(&m.attendee_pw), esc(&m.moderator_pw),
        !m.attendees.is_empty(), !m.attendees.is_empty(), m.create_time,
        m.attendees.len(), count(|a| a.listen_only), count(|a| a.voice), count(|a| a.video), count(|a| a.moderator),
    );
    for a in &m.attendees {
        out.push_str(&format!(
            "        <attendee>\n          <userID>{}</userID>\n          <fullName>{}</fullName>\n          <role>{}</role>\n          <isPresenter>false</isPresenter>\n          <isListeningOnly>{}</isListeningOnly>\n          <hasJoinedVoice>{}</hasJoinedVoice>\n          <hasVideo>{}</hasVideo>\n          <clientType>HTML5</clientType>\n        </attendee>\n",
            esc(&a.user_id), esc(&a.name), if a.moderator { "MODERATOR" } else { "VIEWER" }, a.listen_only, a.voice, a.video
        ));
    }
    out.push_str("      </attendees>\n      <metadata/>\n      <isBreakout>false</isBreakout>\n    </meeting>\n");
    out
}

/// A synthetic stage under the meeting's name: a picture that moves and a
/// 440 Hz tone, what a stage capture films and records.
const STAGE: &str = "<canvas id=\"stage\" width=\"640\" height=\"360\"></canvas><script>\
var c=document.getElementById('stage').getContext('2d'),n=0;\
(function f(){n++;c.fillStyle='hsl('+(n*3%360)+',80%,50%)';c.fillRect(0,0,640,360);requestAnimationFrame(f);})();\
try{var a=new AudioContext(),o=a.createOscillator();o.frequency.value=440;o.connect(a.destination);o.start();}catch(e){}\
</script>";

/// Where a join redirects: a page naming the meeting and the role, over a
/// synthetic stage.
async fn client(State(state): State<Arc<Mutex<FakeState>>>, RawQuery(query): RawQuery) -> Response {
    let q = query.unwrap_or_default();
    let token = q.strip_prefix("sessionToken=").unwrap_or("");
    let st = state.lock().unwrap();
    match st.tokens.get(token) {
        Some((id, name, role)) => (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            format!("<!DOCTYPE html><html><head><title>BBB fake client</title></head><body><h1 id=\"joined\">Joined {} as {} ({})</h1>{STAGE}</body></html>", esc(id), esc(role), esc(name)),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such session token").into_response(),
    }
}
