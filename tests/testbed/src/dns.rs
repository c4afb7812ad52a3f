//! The fake's authoritative DNS: answers A, AAAA, TXT, NS and SOA questions
//! for the fake's zones from the same state the API serves, over UDP and
//! TCP on one port, so that real resolvers (dig, Pebble's DNS-01 validation)
//! see exactly what venue wrote through `/zones/…/rrsets`. Names outside
//! every zone are REFUSED, as an authoritative server does.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{Metadata, ResponseCode};
use hickory_server::proto::rr::rdata::{A, AAAA, NS, TXT};
use hickory_server::proto::rr::{Name, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use hickory_server::Server;

use crate::fake::state::DnsLookup;
use crate::FakeHandle;

struct ZonesDns {
    fake: FakeHandle,
}

/// TXT values are stored quoted (`"abc"`, as Hetzner takes them); a long
/// value may be several quoted strings.
fn txt_strings(v: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut inside = false;
    let mut escaped = false;
    for c in v.chars() {
        match (inside, escaped, c) {
            (true, false, '\\') => escaped = true,
            (true, false, '"') => {
                out.push(std::mem::take(&mut cur));
                inside = false;
            }
            (true, _, c) => {
                cur.push(c);
                escaped = false;
            }
            (false, _, '"') => inside = true,
            _ => {}
        }
    }
    if out.is_empty() {
        out.push(v.to_owned());
    }
    out
}

fn rdata(ty: RecordType, value: &str) -> Option<RData> {
    Some(match ty {
        RecordType::A => RData::A(A(value.parse().ok()?)),
        RecordType::AAAA => RData::AAAA(AAAA(value.parse().ok()?)),
        RecordType::TXT => RData::TXT(TXT::new(txt_strings(value))),
        RecordType::NS => RData::NS(NS(Name::from_str(value).ok()?)),
        _ => return None,
    })
}

#[async_trait::async_trait]
impl RequestHandler for ZonesDns {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let builder = MessageResponseBuilder::from_message_request(request);
        let mut metadata = Metadata::response_from_request(&request.metadata);
        let Ok(info) = request.request_info() else {
            let resp = builder.error_msg(&request.metadata, ResponseCode::FormErr);
            return send(&mut response_handle, resp, &request.metadata).await;
        };
        let qname: Name = info.query.name().into();
        let qtype = info.query.query_type();
        let lookup = self
            .fake
            .with_state(|s| s.dns_lookup(&qname.to_ascii(), &qtype.to_string()));
        tracing::debug!(name = %qname, ty = %qtype, ?lookup, "dns question");
        let records: Vec<Record> = match lookup {
            DnsLookup::NotOurs => {
                let resp = builder.error_msg(&request.metadata, ResponseCode::Refused);
                return send(&mut response_handle, resp, &request.metadata).await;
            }
            DnsLookup::NoName => {
                metadata.authoritative = true;
                metadata.response_code = ResponseCode::NXDomain;
                Vec::new()
            }
            DnsLookup::NoData => Vec::new(),
            DnsLookup::Records(rs) => rs
                .iter()
                .filter_map(|(ttl, v)| {
                    rdata(qtype, v).map(|d| Record::from_rdata(qname.clone(), *ttl, d))
                })
                .collect(),
        };
        metadata.authoritative = true;
        let resp = builder.build(
            metadata,
            records.iter(),
            std::iter::empty(),
            std::iter::empty(),
            std::iter::empty(),
        );
        send(&mut response_handle, resp, &request.metadata).await
    }
}

async fn send<'a, R: ResponseHandler>(
    handle: &mut R,
    resp: hickory_server::zone_handler::MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
    req: &Metadata,
) -> ResponseInfo {
    match handle.send_response(resp).await {
        Ok(info) => info,
        Err(e) => {
            tracing::warn!(error = %e, "dns: cannot send the answer");
            let mut metadata = Metadata::response_from_request(req);
            metadata.response_code = ResponseCode::ServFail;
            hickory_server::proto::op::Header {
                metadata,
                counts: Default::default(),
            }
            .into()
        }
    }
}

/// Binds UDP and TCP on the same port of `addr` (port 0: a free one).
async fn bind(
    addr: SocketAddr,
) -> std::io::Result<(tokio::net::UdpSocket, tokio::net::TcpListener)> {
    let mut last = None;
    for _ in 0..20 {
        let udp = tokio::net::UdpSocket::bind(addr).await?;
        let port = udp.local_addr()?.port();
        match tokio::net::TcpListener::bind(SocketAddr::new(addr.ip(), port)).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if addr.port() == 0 => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free port for UDP and TCP")))
}

/// Serves DNS for the fake's zones on `addr` until the runtime ends;
/// returns the address it listens on (UDP and TCP).
pub async fn serve(fake: FakeHandle, addr: SocketAddr) -> anyhow::Result<SocketAddr> {
    let (udp, tcp) = bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("fake-hcloud: cannot serve DNS on {addr}: {e}"))?;
    let local = udp.local_addr()?;
    let mut server = Server::new(ZonesDns { fake });
    server.register_socket(udp);
    server.register_listener(tcp, Duration::from_secs(5), 64);
    tokio::spawn(async move {
        if let Err(e) = server.block_until_done().await {
            tracing::error!(error = %e, "fake-hcloud DNS stopped");
        }
    });
    Ok(local)
}

impl FakeHandle {
    /// Starts the DNS server in a thread of its own (for synchronous tests);
    /// returns its address.
    pub fn start_dns(&self) -> SocketAddr {
        let fake = self.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("tokio runtime");
            rt.block_on(async move {
                let addr = serve(fake, "127.0.0.1:0".parse().expect("address"))
                    .await
                    .expect("fake DNS binds");
                tx.send(addr).expect("caller waits");
                std::future::pending::<()>().await;
            });
        });
        rx.recv().expect("fake DNS started")
    }
}

#[cfg(test)]
mod tests {
    use super::txt_strings;

    #[test]
    fn quoted_txt_values_become_their_strings() {
        assert_eq!(txt_strings("\"abc\""), vec!["abc"]);
        assert_eq!(txt_strings("\"a\" \"b\\\"c\""), vec!["a", "b\"c"]);
        assert_eq!(txt_strings("bare"), vec!["bare"]);
    }
}
