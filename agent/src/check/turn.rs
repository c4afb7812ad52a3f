//! TURN: a real allocation (RFC 8656 Allocate with long-term credentials:
//! the unauthenticated request, the 401 with REALM and NONCE, the request
//! again with USERNAME, REALM, NONCE and MESSAGE-INTEGRITY), over UDP 3478
//! and over TLS 5349, with REST credentials made from the event's TURN
//! secret; and credentials from a wrong secret must be refused (401). A
//! granted allocation is released at once (Refresh, LIFETIME 0).
//!
//! A small client of our own: the crates.io TURN crates are servers or
//! whole WebRTC stacks; an Allocate is a few dozen bytes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha1::Sha1;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UdpSocket;

use super::{probe, Check, Outcome, Probe, Target};

const MAGIC: u32 = 0x2112_A442;
const ALLOCATE: u16 = 0x0003;
const REFRESH: u16 = 0x0004;
const SUCCESS: u16 = 0x0100;
const ERROR: u16 = 0x0110;
const ATTR_USERNAME: u16 = 0x0006;
const ATTR_INTEGRITY: u16 = 0x0008;
const ATTR_ERROR_CODE: u16 = 0x0009;
const ATTR_LIFETIME: u16 = 0x000D;
const ATTR_REALM: u16 = 0x0014;
const ATTR_NONCE: u16 = 0x0015;
const ATTR_RELAYED: u16 = 0x0016;
const ATTR_TRANSPORT: u16 = 0x0019;

/// The user part of the probe's REST username.
const USER: &str = "venue-check";

pub async fn probes(check: &Check, target: &Target) -> Vec<Probe> {
    let expires = chrono::Utc::now().timestamp() + 600;
    let good = conference::protocol::turn::credentials(&check.secrets.turn, USER, expires);
    // Not the event's secret: a server that lets this in checks nothing.
    let wrong = conference::protocol::turn::credentials(
        &format!("not-{}", check.secrets.turn),
        USER,
        expires,
    );
    let udp = target.socket(target.ports.turn);
    let tls = target.socket(target.ports.turns);
    let udp_what = format!("UDP {}", udp.port());
    let tls_what = format!("TLS {}", tls.port());
    let (a, b, c) = tokio::join!(
        probe(check, target, "turn udp", &udp_what, async {
            judge(&udp_what, allocate_udp(udp, &good).await, true)
        }),
        probe(check, target, "turn tls", &tls_what, async {
            let result = match super::tls::connect(check, tls, &target.service_name).await {
                Ok(mut s) => allocate_stream(&mut s, &good).await,
                Err(e) => Err(Error::Transport(e)),
            };
            judge(&tls_what, result, true)
        }),
        probe(check, target, "turn wrong secret", &udp_what, async {
            judge(&udp_what, allocate_udp(udp, &wrong).await, false)
        }),
    );
    vec![a, b, c]
}

/// What an Allocate ended with.
#[derive(Debug)]
pub enum Error {
    /// The server answered with a STUN error (code, reason).
    Refused(u16, String),
    /// No STUN exchange happened: cannot connect, no answer, a bad answer.
    Transport(String),
}

/// A granted allocation's relayed address.
pub type Relayed = SocketAddr;

fn judge(what: &str, result: Result<Relayed, Error>, should_pass: bool) -> Outcome {
    match (result, should_pass) {
        (Ok(relay), true) => Outcome::Ok(format!("{what}: allocated relay {relay}")),
        (Err(Error::Refused(401, reason)), true) => Outcome::Fail(format!(
            "{what} refused the event's TURN credentials (401 {reason}): the host has another TURN secret"
        )),
        (Err(Error::Refused(code, reason)), true) => {
            Outcome::Fail(format!("{what} refused the allocation: {code} {reason}"))
        }
        (Err(Error::Transport(e)), _) => Outcome::Fail(e),
        (Err(Error::Refused(401, _)), false) => {
            Outcome::Ok(format!("{what}: credentials from a wrong secret refused (401)"))
        }
        (Err(Error::Refused(code, reason)), false) => Outcome::Fail(format!(
            "{what} answered a wrong secret with {code} {reason}, not 401"
        )),
        (Ok(relay), false) => Outcome::Fail(format!(
            "{what} granted a relay ({relay}) to credentials from a wrong secret: it checks no secret"
        )),
    }
}

/// How many client ports an Allocate is tried from when the server answers
/// 437: RFC 8656 §7.4 says three, and a browser's TURN client (libwebrtc's
/// TurnPort) does the same.
pub const MISMATCH_TRIES: usize = 3;

/// Allocate over UDP, retransmitting a lost request (RFC 8489's RTO,
/// shortened). A 437 (Allocation Mismatch) means the server still holds a
/// session for this client address: coturn keeps a released one for a while,
/// and the kernel may hand the next probe the same port. The Allocate is then
/// tried from another port, as RFC 8656 §7.4 asks of a client.
pub async fn allocate_udp(
    server: SocketAddr,
    creds: &conference::protocol::turn::TurnCredentials,
) -> Result<Relayed, Error> {
    allocate_udp_from(bind_udp(server).await?, server, creds).await
}

/// [`allocate_udp`], starting from `first`: then from new ports after a 437.
pub async fn allocate_udp_from(
    first: UdpSocket,
    server: SocketAddr,
    creds: &conference::protocol::turn::TurnCredentials,
) -> Result<Relayed, Error> {
    let mut sock = first;
    let mut tries = 1;
    loop {
        match allocate_udp_on(sock, server, creds).await {
            Err(Error::Refused(437, reason)) if tries < MISMATCH_TRIES => {
                tracing::debug!(%server, %reason, tries, "437: trying from another client port");
            }
            Err(Error::Refused(437, reason)) => {
                return Err(Error::Refused(
                    437,
                    format!("{reason} (from {MISMATCH_TRIES} client ports)"),
                ))
            }
            other => return other,
        }
        sock = bind_udp(server).await?;
        tries += 1;
    }
}

/// A UDP socket of the server's address family on a port the kernel picks.
pub async fn bind_udp(server: SocketAddr) -> Result<UdpSocket, Error> {
    let bind: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    UdpSocket::bind(bind)
        .await
        .map_err(|e| Error::Transport(format!("no UDP socket: {e}")))
}

/// One Allocate (and its release) from `sock`, with no second port.
pub async fn allocate_udp_on(
    sock: UdpSocket,
    server: SocketAddr,
    creds: &conference::protocol::turn::TurnCredentials,
) -> Result<Relayed, Error> {
    let what = format!("UDP {}", server.port());
    // Connected: a closed port's ICMP error comes back as "refused".
    sock.connect(server)
        .await
        .map_err(|e| Error::Transport(format!("{what}: {e}")))?;
    let mut io = UdpIo { sock, what };
    exchange(&mut io, creds).await
}

/// Allocate over a stream (TLS or TCP): messages are self-delimiting.
pub async fn allocate_stream<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    creds: &conference::protocol::turn::TurnCredentials,
) -> Result<Relayed, Error> {
    let mut io = StreamIo { stream };
    exchange(&mut io, creds).await
}

/// One request, one answer.
trait Transport {
    async fn call(&mut self, request: &[u8], id: &[u8; 12]) -> Result<Vec<u8>, Error>;
}

struct UdpIo {
    sock: UdpSocket,
    what: String,
}

impl Transport for UdpIo {
    async fn call(&mut self, request: &[u8], id: &[u8; 12]) -> Result<Vec<u8>, Error> {
        let mut buf = vec![0u8; 2048];
        let mut wait = std::time::Duration::from_millis(250);
        for _ in 0..5 {
            self.sock
                .send(request)
                .await
                .map_err(|e| Error::Transport(format!("{}: {e}", self.what)))?;
            match tokio::time::timeout(wait, self.sock.recv(&mut buf)).await {
                Err(_) => wait *= 2,
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    return Err(Error::Transport(format!(
                        "{}: connection refused (nothing listens)",
                        self.what
                    )))
                }
                Ok(Err(e)) => return Err(Error::Transport(format!("{}: {e}", self.what))),
                Ok(Ok(n)) if n >= 20 && buf[8..20] == id[..] => return Ok(buf[..n].to_vec()),
                Ok(Ok(_)) => {}
            }
        }
        Err(Error::Transport(format!("{}: no answer", self.what)))
    }
}

struct StreamIo<'a, S> {
    stream: &'a mut S,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Transport for StreamIo<'_, S> {
    async fn call(&mut self, request: &[u8], _id: &[u8; 12]) -> Result<Vec<u8>, Error> {
        let io = |e: std::io::Error| Error::Transport(format!("TURN over a stream: {e}"));
        self.stream.write_all(request).await.map_err(io)?;
        self.stream.flush().await.map_err(io)?;
        let mut header = [0u8; 20];
        self.stream.read_exact(&mut header).await.map_err(io)?;
        let len = u16::from_be_bytes([header[2], header[3]]) as usize;
        let mut msg = header.to_vec();
        msg.resize(20 + len, 0);
        self.stream.read_exact(&mut msg[20..]).await.map_err(io)?;
        Ok(msg)
    }
}

/// The long-term credential dance for an Allocate, then its release.
async fn exchange(
    io: &mut impl Transport,
    creds: &conference::protocol::turn::TurnCredentials,
) -> Result<Relayed, Error> {
    let transport = [17u8, 0, 0, 0]; // REQUESTED-TRANSPORT: UDP
    let first = Message::new(ALLOCATE).attr(ATTR_TRANSPORT, &transport);
    let answer = Answer::parse(&io.call(&first.bytes(None), &first.id).await?)?;
    let (mut realm, mut nonce) = match answer.error {
        Some((401, _)) => (answer.realm, answer.nonce),
        Some((code, reason)) => return Err(Error::Refused(code, reason)),
        None => {
            return Err(Error::Transport(
                "the server granted an allocation without credentials: it checks no secret".into(),
            ))
        }
    };
    // A stale nonce (438) is answered once more with the new one.
    for _ in 0..2 {
        let (Some(r), Some(n)) = (realm.clone(), nonce.clone()) else {
            return Err(Error::Transport(
                "the 401 answer carries no REALM or NONCE".into(),
            ));
        };
        let key = long_term_key(&creds.username, &r, &creds.password);
        let msg = Message::new(ALLOCATE)
            .attr(ATTR_TRANSPORT, &transport)
            .attr(ATTR_USERNAME, creds.username.as_bytes())
            .attr(ATTR_REALM, r.as_bytes())
            .attr(ATTR_NONCE, n.as_bytes());
        let answer = Answer::parse(&io.call(&msg.bytes(Some(&key)), &msg.id).await?)?;
        match answer.error {
            None => {
                let relay = answer.relayed.ok_or_else(|| {
                    Error::Transport("the allocation answer has no relayed address".into())
                })?;
                // Give the relay back; a lost release only waits for its lifetime.
                let release = Message::new(REFRESH)
                    .attr(ATTR_LIFETIME, &0u32.to_be_bytes())
                    .attr(ATTR_USERNAME, creds.username.as_bytes())
                    .attr(ATTR_REALM, r.as_bytes())
                    .attr(ATTR_NONCE, n.as_bytes());
                let _ = io.call(&release.bytes(Some(&key)), &release.id).await;
                return Ok(relay);
            }
            Some((438, _)) => {
                realm = answer.realm.or(Some(r));
                nonce = answer.nonce;
            }
            Some((code, reason)) => return Err(Error::Refused(code, reason)),
        }
    }
    Err(Error::Refused(438, "Stale Nonce, twice".into()))
}

/// MD5(username ":" realm ":" password), RFC 8489 §9.2.2.
fn long_term_key(username: &str, realm: &str, password: &str) -> Vec<u8> {
    Md5::digest(format!("{username}:{realm}:{password}").as_bytes()).to_vec()
}

/// A STUN request being built.
struct Message {
    kind: u16,
    id: [u8; 12],
    attrs: Vec<u8>,
}

impl Message {
    fn new(kind: u16) -> Message {
        let mut id = [0u8; 12];
        getrandom::fill(&mut id).unwrap_or_else(|_| {
            // Any id works for a probe; randomness only avoids crossed answers.
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            id.copy_from_slice(&t.to_be_bytes()[4..]);
        });
        Message {
            kind,
            id,
            attrs: Vec::new(),
        }
    }

    fn attr(mut self, kind: u16, value: &[u8]) -> Message {
        self.attrs.extend_from_slice(&kind.to_be_bytes());
        self.attrs
            .extend_from_slice(&(value.len() as u16).to_be_bytes());
        self.attrs.extend_from_slice(value);
        while !self.attrs.len().is_multiple_of(4) {
            self.attrs.push(0);
        }
        self
    }

    /// The wire bytes; with a key, MESSAGE-INTEGRITY last: HMAC-SHA1 over
    /// the message up to it, its header length already counting it.
    fn bytes(&self, key: Option<&[u8]>) -> Vec<u8> {
        let integrity_len = if key.is_some() { 24 } else { 0 };
        let mut out = Vec::with_capacity(20 + self.attrs.len() + integrity_len);
        out.extend_from_slice(&self.kind.to_be_bytes());
        out.extend_from_slice(&((self.attrs.len() + integrity_len) as u16).to_be_bytes());
        out.extend_from_slice(&MAGIC.to_be_bytes());
        out.extend_from_slice(&self.id);
        out.extend_from_slice(&self.attrs);
        if let Some(key) = key {
            let mut mac = Hmac::<Sha1>::new_from_slice(key).expect("HMAC takes any key");
            mac.update(&out);
            out.extend_from_slice(&ATTR_INTEGRITY.to_be_bytes());
            out.extend_from_slice(&20u16.to_be_bytes());
            out.extend_from_slice(&mac.finalize().into_bytes());
        }
        out
    }
}

/// What an answer says.
#[derive(Debug, Default)]
struct Answer {
    error: Option<(u16, String)>,
    realm: Option<String>,
    nonce: Option<String>,
    relayed: Option<SocketAddr>,
}

impl Answer {
    fn parse(msg: &[u8]) -> Result<Answer, Error> {
        let bad = |why: &str| Error::Transport(format!("not a STUN answer: {why}"));
        if msg.len() < 20 || u32::from_be_bytes([msg[4], msg[5], msg[6], msg[7]]) != MAGIC {
            return Err(bad("no magic cookie"));
        }
        let kind = u16::from_be_bytes([msg[0], msg[1]]);
        let class = kind & 0x0110;
        if class != SUCCESS && class != ERROR {
            return Err(bad("neither a success nor an error answer"));
        }
        let mut answer = Answer::default();
        let mut at = 20;
        while at + 4 <= msg.len() {
            let t = u16::from_be_bytes([msg[at], msg[at + 1]]);
            let len = u16::from_be_bytes([msg[at + 2], msg[at + 3]]) as usize;
            let Some(v) = msg.get(at + 4..at + 4 + len) else {
                return Err(bad("an attribute runs past the end"));
            };
            match t {
                ATTR_ERROR_CODE if len >= 4 => {
                    let code = (v[2] & 0x07) as u16 * 100 + v[3] as u16;
                    // coturn counts NUL padding into some reason phrases.
                    let reason = String::from_utf8_lossy(&v[4..]);
                    let reason = reason.trim_end_matches(['\0', ' ']).to_owned();
                    answer.error = Some((code, reason));
                }
                ATTR_REALM => answer.realm = Some(String::from_utf8_lossy(v).into_owned()),
                ATTR_NONCE => answer.nonce = Some(String::from_utf8_lossy(v).into_owned()),
                ATTR_RELAYED => answer.relayed = xor_address(v, &msg[4..20]),
                _ => {}
            }
            at += 4 + len.div_ceil(4) * 4;
        }
        if class == ERROR && answer.error.is_none() {
            return Err(bad("an error answer without ERROR-CODE"));
        }
        Ok(answer)
    }
}

/// An XOR-*-ADDRESS value (`cookie_and_id`: header bytes 4..20).
fn xor_address(v: &[u8], cookie_and_id: &[u8]) -> Option<SocketAddr> {
    let port = u16::from_be_bytes([v.get(2)?.to_owned(), *v.get(3)?]) ^ (MAGIC >> 16) as u16;
    let ip = match v.get(1)? {
        0x01 => {
            let mut b = [0u8; 4];
            for (i, x) in b.iter_mut().enumerate() {
                *x = v.get(4 + i)? ^ cookie_and_id[i];
            }
            IpAddr::V4(Ipv4Addr::from(b))
        }
        0x02 => {
            let mut b = [0u8; 16];
            for (i, x) in b.iter_mut().enumerate() {
                *x = v.get(4 + i)? ^ cookie_and_id[i];
            }
            IpAddr::V6(Ipv6Addr::from(b))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integrity_is_the_last_attribute_and_counted_in_the_length() {
        let m = Message::new(ALLOCATE).attr(ATTR_TRANSPORT, &[17, 0, 0, 0]);
        let b = m.bytes(Some(b"key"));
        assert_eq!(b.len(), 20 + 8 + 24);
        assert_eq!(u16::from_be_bytes([b[2], b[3]]) as usize, b.len() - 20);
        assert_eq!(u16::from_be_bytes([b[28], b[29]]), ATTR_INTEGRITY);
        let mut mac = Hmac::<Sha1>::new_from_slice(b"key").unwrap();
        mac.update(&b[..28]);
        assert_eq!(&b[32..], &mac.finalize().into_bytes()[..]);
    }

    #[test]
    fn reads_an_error_with_realm_and_nonce() {
        // 401 Unauthorized, REALM "r", NONCE "n1".
        let mut msg = vec![0x01, 0x13, 0, 0];
        msg.extend_from_slice(&MAGIC.to_be_bytes());
        msg.extend_from_slice(&[7; 12]);
        let attrs = [
            &[0x00, 0x09, 0x00, 0x10, 0, 0, 4, 1][..],
            b"Unauthorized",
            &[0x00, 0x14, 0x00, 0x01, b'r', 0, 0, 0],
            &[0x00, 0x15, 0x00, 0x02, b'n', b'1', 0, 0],
        ]
        .concat();
        msg[2..4].copy_from_slice(&(attrs.len() as u16).to_be_bytes());
        msg.extend_from_slice(&attrs);
        let a = Answer::parse(&msg).unwrap();
        assert_eq!(a.error, Some((401, "Unauthorized".into())));
        assert_eq!(a.realm.as_deref(), Some("r"));
        assert_eq!(a.nonce.as_deref(), Some("n1"));
    }

    #[test]
    fn a_reason_with_nul_padding_counted_in_its_length_is_read_without_it() {
        // 437 as coturn 4.6 sends it: the NULs are inside the attribute's length.
        let reason = b"Allocation mismatch: wrong credentials\0\0";
        let mut msg = vec![0x01, 0x13, 0, 0];
        msg.extend_from_slice(&MAGIC.to_be_bytes());
        msg.extend_from_slice(&[7; 12]);
        let mut attrs = vec![0x00, 0x09, 0x00, (4 + reason.len()) as u8, 0, 0, 4, 37];
        attrs.extend_from_slice(reason);
        msg[2..4].copy_from_slice(&(attrs.len() as u16).to_be_bytes());
        msg.extend_from_slice(&attrs);
        let a = Answer::parse(&msg).unwrap();
        assert_eq!(
            a.error,
            Some((437, "Allocation mismatch: wrong credentials".into()))
        );
    }
}
