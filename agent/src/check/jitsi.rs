//! Jitsi: the web page answers; XMPP over BOSH (`/http-bind`, XEP-0124/0206)
//! opens a session; and login goes as Jitsi's token authentication has it:
//! the token in the URL of the session's first request (`?token=`), then
//! SASL ANONYMOUS (the protocol of hosts/testbed/services/
//! mod_auth_venue_token.lua, the way Jitsi's mod_auth_token works). A
//! venue-signed token must be accepted; no token, and the guest host
//! (`guest.<host>`, where Jitsi lets anonymous guests in), must be refused.

use conference::protocol::jwt::{jitsi_token, JitsiGrant, JitsiUser};

use super::{http, probe, Check, Outcome, Probe, Target};

const HTTPBIND: &str = "http://jabber.org/protocol/httpbind";
/// The room the probe's token names; it never enters it.
const ROOM: &str = "venue-check";

pub async fn probes(check: &Check, target: &Target) -> Vec<Probe> {
    let host = target.service_name.clone();
    let guest = format!("guest.{host}");
    let what = format!("HTTPS {}", target.ports.https);
    let token = token(check, &host);
    let (web, bosh, with, without, on_guest) = tokio::join!(
        probe(check, target, "jitsi web", &what, web(check, target)),
        probe(check, target, "jitsi bosh", &what, async {
            match Session::open(check, target, &host, None).await {
                Ok(s) => {
                    let mechanisms = s.mechanisms.join(" ");
                    s.close().await;
                    Outcome::Ok(format!("BOSH session opened (SASL {mechanisms})"))
                }
                Err(e) => Outcome::Fail(e),
            }
        }),
        probe(check, target, "jitsi token", &what, async {
            match login(check, target, &host, Some(&token)).await {
                Ok(Ok(())) => Outcome::Ok("a venue-signed token is accepted".into()),
                Ok(Err(why)) => Outcome::Fail(format!(
                    "prosody refused a venue-signed token ({why}): the host has another JWT secret or app id"
                )),
                Err(e) => Outcome::Fail(e),
            }
        }),
        probe(check, target, "jitsi no token", &what, async {
            match login(check, target, &host, None).await {
                Ok(Ok(())) => Outcome::Fail(
                    "prosody let in a session without a token: anyone can open rooms".into(),
                ),
                Ok(Err(why)) => Outcome::Ok(format!("no token: refused ({why})")),
                Err(e) => Outcome::Fail(e),
            }
        }),
        probe(check, target, "jitsi guest", &what, async {
            match login(check, target, &guest, Some(&token)).await {
                Ok(Ok(())) => Outcome::Fail(format!(
                    "prosody let a guest in on {guest}: guest access must be off"
                )),
                Ok(Err(why)) => Outcome::Ok(format!("{guest}: refused ({why})")),
                Err(e) => Outcome::Fail(format!("{guest}: {e}")),
            }
        }),
    );
    vec![web, bosh, with, without, on_guest]
}

fn token(check: &Check, host: &str) -> String {
    jitsi_token(
        check.secrets.jwt.as_bytes(),
        &JitsiGrant {
            app_id: &check.jitsi_app_id,
            domain: host,
            room: ROOM,
            user: JitsiUser {
                id: "venue-check".into(),
                name: "venue check".into(),
                email: "check@venue.invalid".into(),
                moderator: false,
            },
            now: chrono::Utc::now().timestamp(),
            ttl: 120,
        },
    )
}

async fn web(check: &Check, target: &Target) -> Outcome {
    let (client, base) = match http::client(check, target, &target.service_name) {
        Ok(c) => c,
        Err(e) => return Outcome::Fail(e),
    };
    match client.get(format!("{base}/")).send().await {
        Ok(r) if r.status().is_success() => Outcome::Ok(format!("{base}/ answers {}", r.status())),
        Ok(r) => Outcome::Fail(format!("{base}/ answered HTTP {}", r.status())),
        Err(e) => Outcome::Fail(format!("{base}/: {}", http::cause(&e))),
    }
}

/// Opens a session and authenticates: Ok(Ok) on `<success/>`, Ok(Err(why))
/// on a SASL failure, Err when BOSH itself did not work.
async fn login(
    check: &Check,
    target: &Target,
    host: &str,
    token: Option<&str>,
) -> Result<Result<(), String>, String> {
    let mut s = Session::open(check, target, host, token).await?;
    if !s.mechanisms.iter().any(|m| m == "ANONYMOUS") {
        let offered = s.mechanisms.join(" ");
        s.close().await;
        return Ok(Err(format!(
            "SASL ANONYMOUS not offered (offered: {offered})"
        )));
    }
    let answer = s
        .send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='ANONYMOUS'/>")
        .await?;
    let result = sasl_result(&answer);
    s.close().await;
    match result {
        Some(r) => Ok(r),
        None => Err(format!(
            "no SASL answer in BOSH's reply: {}",
            short(&answer)
        )),
    }
}

/// `<success/>` → Ok, `<failure>` → Err(condition and text); None: neither.
fn sasl_result(body: &str) -> Option<Result<(), String>> {
    let doc = roxmltree::Document::parse(body).ok()?;
    if doc.descendants().any(|n| n.has_tag_name("success")) {
        return Some(Ok(()));
    }
    let failure = doc.descendants().find(|n| n.has_tag_name("failure"))?;
    let condition = failure
        .children()
        .find(|c| c.is_element() && !c.has_tag_name("text"))
        .map(|c| c.tag_name().name().to_owned())
        .unwrap_or_else(|| "failure".into());
    let text = failure
        .children()
        .find(|c| c.has_tag_name("text"))
        .and_then(|c| c.text())
        .map(|t| format!(": {t}"))
        .unwrap_or_default();
    Some(Err(format!("{condition}{text}")))
}

fn short(s: &str) -> String {
    let s: String = s.chars().take(200).collect();
    s.replace('\n', " ")
}

/// A BOSH session: its id, next request id, and the SASL mechanisms offered.
struct Session {
    client: reqwest::Client,
    url: String,
    sid: String,
    rid: u64,
    mechanisms: Vec<String>,
}

impl Session {
    async fn open(
        check: &Check,
        target: &Target,
        host: &str,
        token: Option<&str>,
    ) -> Result<Session, String> {
        let (client, base) = http::client(check, target, &target.service_name)?;
        let url = format!("{base}/http-bind");
        let first_url = match token {
            Some(t) => format!("{url}?token={t}"),
            None => url.clone(),
        };
        let mut rid: u64 = {
            let mut b = [0u8; 4];
            let _ = getrandom::fill(&mut b);
            u32::from_be_bytes(b) as u64 + 1
        };
        let body = format!(
            "<body content='text/xml; charset=utf-8' hold='1' rid='{rid}' to='{host}' ver='1.6' wait='10' xml:lang='en' xmlns='{HTTPBIND}' xmlns:xmpp='urn:xmpp:xbosh' xmpp:version='1.0'/>"
        );
        let answer = post(&client, &first_url, &url, body).await?;
        rid += 1;
        let (sid, mut mechanisms) = read_session(&answer)?;
        let mut s = Session {
            client,
            url,
            sid,
            rid,
            mechanisms: Vec::new(),
        };
        // The stream features may come with the next poll.
        if mechanisms.is_none() {
            let answer = s.send("").await?;
            mechanisms = Some(read_mechanisms(&answer));
        }
        s.mechanisms = mechanisms.unwrap_or_default();
        Ok(s)
    }

    /// Sends `payload` (XML stanzas, or nothing: a poll) in the session.
    async fn send(&mut self, payload: &str) -> Result<String, String> {
        let body = format!(
            "<body rid='{}' sid='{}' xmlns='{HTTPBIND}'>{payload}</body>",
            self.rid, self.sid
        );
        self.rid += 1;
        post(&self.client, &self.url, &self.url, body).await
    }

    async fn close(mut self) {
        let body = format!(
            "<body rid='{}' sid='{}' type='terminate' xmlns='{HTTPBIND}'/>",
            self.rid, self.sid
        );
        self.rid += 1;
        let _ = post(&self.client, &self.url, &self.url, body).await;
    }
}

/// POSTs a BOSH body; `shown` is the URL for messages (without the token).
async fn post(
    client: &reqwest::Client,
    url: &str,
    shown: &str,
    body: String,
) -> Result<String, String> {
    let resp = client
        .post(url)
        .header("content-type", "text/xml; charset=utf-8")
        .body(body)
        .send()
        .await
        .map_err(|e| format!("{shown}: {}", http::cause(&e)))?;
    let status = resp.status();
    let text = resp
        .text()
        .await
        .map_err(|e| format!("{shown}: {}", http::cause(&e)))?;
    if !status.is_success() {
        return Err(format!("{shown} answered HTTP {status}"));
    }
    Ok(text)
}

/// The session id and, if already sent, the SASL mechanisms.
fn read_session(answer: &str) -> Result<(String, Option<Vec<String>>), String> {
    let doc = roxmltree::Document::parse(answer)
        .map_err(|e| format!("BOSH answered something that is not XML: {e}"))?;
    let body = doc.root_element();
    if body.attribute("type") == Some("terminate") {
        let why = body.attribute("condition").unwrap_or("no condition given");
        return Err(format!("BOSH refused the session: {why}"));
    }
    let sid = body
        .attribute("sid")
        .ok_or_else(|| format!("BOSH answered without a session id: {}", short(answer)))?
        .to_owned();
    let has_features = doc.descendants().any(|n| n.has_tag_name("mechanisms"));
    Ok((sid, has_features.then(|| read_mechanisms(answer))))
}

fn read_mechanisms(answer: &str) -> Vec<String> {
    let Ok(doc) = roxmltree::Document::parse(answer) else {
        return Vec::new();
    };
    doc.descendants()
        .filter(|n| n.has_tag_name("mechanism"))
        .filter_map(|n| n.text().map(|t| t.trim().to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_sasl_answers() {
        let ok = "<body xmlns='http://jabber.org/protocol/httpbind'><success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/></body>";
        assert_eq!(sasl_result(ok), Some(Ok(())));
        let no = "<body xmlns='http://jabber.org/protocol/httpbind'><failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/><text>no token</text></failure></body>";
        assert_eq!(
            sasl_result(no),
            Some(Err("not-authorized: no token".into()))
        );
        assert_eq!(sasl_result("<body/>"), None);
    }
}
