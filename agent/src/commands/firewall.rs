//! The event's one firewall: what each role needs from the internet.
//! Everything else inbound is dropped by Hetzner's firewall; outbound is open.

use std::collections::BTreeSet;

use crate::cloud::types::{Rule, RuleSeen};

/// coturn's default relay range (`min-port`/`max-port` in turnserver.conf):
/// the modules keep coturn at its default, so the firewall opens exactly this.
pub const TURN_RELAY: &str = "49152-65535";

pub fn rules() -> Vec<Rule> {
    let r = |protocol: &'static str, port: &str, why: &str| Rule {
        direction: "in",
        protocol,
        port: port.to_owned(),
        source_ips: vec!["0.0.0.0/0", "::/0"],
        description: why.to_owned(),
    };
    vec![
        r("tcp", "22", "SSH: deploy"),
        r("tcp", "80", "HTTP: ACME challenges, redirect"),
        r("tcp", "443", "HTTPS: portal, BigBlueButton, Jitsi Meet"),
        r("tcp", "3478", "TURN/STUN"),
        r("udp", "3478", "TURN/STUN"),
        r("tcp", "5349", "TURN over TLS"),
        r("udp", TURN_RELAY, "TURN relay ports (coturn default)"),
        r("udp", "10000", "Jitsi videobridge media"),
        r(
            "udp",
            "16384-32768",
            "BigBlueButton media (FreeSWITCH, Kurento/mediasoup)",
        ),
    ]
}

/// Whether the rules a firewall has open exactly what [`rules`] opens.
pub fn same_rules(seen: &[RuleSeen]) -> bool {
    let have: BTreeSet<(String, String, String)> = seen
        .iter()
        .map(|r| {
            (
                r.direction.clone(),
                r.protocol.clone(),
                r.port.clone().unwrap_or_default(),
            )
        })
        .collect();
    let want: BTreeSet<(String, String, String)> = rules()
        .into_iter()
        .map(|r| (r.direction.to_owned(), r.protocol.to_owned(), r.port))
        .collect();
    have == want
}
