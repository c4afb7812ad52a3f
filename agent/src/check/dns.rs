//! DNS: each of a host's names resolves to the address fleet.json gives it,
//! through `--resolver` when given (asked directly, A and AAAA over UDP),
//! else through the system's resolver, as a browser would.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::net::UdpSocket;

use super::{probe, Check, Outcome, Probe, Target};

pub async fn probes(check: &Check, target: &Target) -> Vec<Probe> {
    let mut out = Vec::new();
    for name in &target.names {
        let via = match check.resolver {
            Some(r) => format!("resolver {r}"),
            None => "the system resolver".into(),
        };
        let p = probe(check, target, format!("dns {name}"), &via, async {
            let found = match check.resolver {
                Some(r) => ask(r, name, check.timeout).await,
                None => system(name).await,
            };
            // Of the fleet address's family, the name must give exactly it: a
            // stale second address sends some browsers elsewhere.
            let same_family = |a: &IpAddr| a.is_ipv4() == target.address.is_ipv4();
            match found {
                Err(e) => Outcome::Fail(format!("{name}: {e} ({via})")),
                Ok(addrs) if addrs.is_empty() => Outcome::Fail(format!(
                    "{name} has no address ({via}); fleet.json says {}",
                    target.address
                )),
                Ok(addrs)
                    if addrs.contains(&target.address)
                        && addrs.iter().filter(|a| same_family(a)).count() == 1 =>
                {
                    Outcome::Ok(format!("{name} → {}", target.address))
                }
                Ok(addrs) => Outcome::Fail(format!(
                    "{name} resolves to {}, not only to {} as fleet.json says ({via})",
                    join(&addrs.into_iter().filter(same_family).collect::<Vec<_>>()),
                    target.address
                )),
            }
        })
        .await;
        out.push(p);
    }
    out
}

fn join(addrs: &[IpAddr]) -> String {
    addrs
        .iter()
        .map(IpAddr::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

async fn system(name: &str) -> Result<Vec<IpAddr>, String> {
    let addrs = tokio::net::lookup_host((name, 0))
        .await
        .map_err(|e| format!("does not resolve: {e}"))?;
    let mut out: Vec<IpAddr> = addrs.map(|a| a.ip()).collect();
    out.sort();
    out.dedup();
    Ok(out)
}

/// The A and AAAA answers of `server` for `name`.
pub async fn ask(server: SocketAddr, name: &str, timeout: Duration) -> Result<Vec<IpAddr>, String> {
    let mut out = Vec::new();
    for kind in [RecordType::A, RecordType::AAAA] {
        out.extend(ask_one(server, name, kind, timeout).await?);
    }
    Ok(out)
}

async fn ask_one(
    server: SocketAddr,
    name: &str,
    kind: RecordType,
    timeout: Duration,
) -> Result<Vec<IpAddr>, String> {
    let fqdn = Name::from_ascii(format!("{}.", name.trim_end_matches('.')))
        .map_err(|e| format!("not a DNS name: {e}"))?;
    let mut query = Message::query();
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(fqdn, kind));
    let id = query.metadata.id;
    let bytes = query
        .to_vec()
        .map_err(|e| format!("cannot encode a query: {e}"))?;
    let bind: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse().expect("address")
    } else {
        "[::]:0".parse().expect("address")
    };
    let sock = UdpSocket::bind(bind)
        .await
        .map_err(|e| format!("no UDP socket: {e}"))?;
    sock.connect(server)
        .await
        .map_err(|e| format!("resolver {server}: {e}"))?;
    // UDP may lose a packet: ask up to three times within the timeout.
    let wait = timeout / 3;
    let mut buf = vec![0u8; 4096];
    for _ in 0..3 {
        sock.send(&bytes)
            .await
            .map_err(|e| format!("resolver {server}: {e}"))?;
        let n = match tokio::time::timeout(wait, sock.recv(&mut buf)).await {
            Err(_) => continue,
            Ok(Err(e)) => return Err(format!("resolver {server}: {e}")),
            Ok(Ok(n)) => n,
        };
        let answer = Message::from_vec(&buf[..n])
            .map_err(|e| format!("resolver {server}: bad answer: {e}"))?;
        if answer.metadata.id != id {
            continue;
        }
        let code = answer.metadata.response_code;
        if code == hickory_proto::op::ResponseCode::NXDomain {
            return Ok(Vec::new());
        }
        if code != hickory_proto::op::ResponseCode::NoError {
            return Err(format!("resolver {server} answered {code}"));
        }
        return Ok(answer
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                _ => None,
            })
            .collect());
    }
    Err(format!(
        "resolver {server} did not answer in {:.0} s",
        timeout.as_secs_f64()
    ))
}
