//! The event's one firewall: what each role needs from the internet, and
//! what only the event's own servers may reach. Everything else inbound is
//! dropped by Hetzner's firewall; outbound is open.

use std::collections::BTreeSet;

use conference::Event;

use crate::cloud::types::{Rule, RuleSeen};

/// coturn's default relay range (`min-port`/`max-port` in turnserver.conf):
/// the modules keep coturn at its default, so the firewall opens exactly this.
pub const TURN_RELAY: &str = "49152-65535";

/// The main Jitsi host's prosody, where extra videobridges (`jvb` hosts) log
/// in as XMPP clients (modules/jvb.nix). Nobody else needs it.
pub const XMPP_CLIENT: &str = "5222";
/// The stream origin's RTMP ingest, where the stages' captures push
/// (modules/stream.nix). Nobody else may publish.
pub const RTMP_INGEST: &str = "1935";

/// Ports only the event's own servers reach.
const OWN_ONLY: [(&str, &str); 2] = [
    (
        XMPP_CLIENT,
        "XMPP: extra videobridges join the main Jitsi host (event's servers only)",
    ),
    (
        RTMP_INGEST,
        "RTMP: stages push to the stream origin (event's servers only)",
    ),
];

/// Matrix server-server API on the chat host (modules/chat.nix: nginx
/// listens there only with `[chat] federation = true`).
pub const MATRIX_FEDERATION: &str = "8448";

const ANYWHERE: [&str; 2] = ["0.0.0.0/0", "::/0"];

/// The rules for `event`, given the addresses of its own servers (rented and
/// static; bare addresses or CIDR). Before any server exists there are none,
/// and the XMPP rule waits for them: Hetzner takes no rule without a source.
/// The chat is served on 443 (Element, the client API, and federation
/// through the server name's delegation); 8448 only with federation.
pub fn rules(event: &Event, own: &[String]) -> Vec<Rule> {
    let r = |protocol: &'static str, port: &str, why: &str| Rule {
        direction: "in",
        protocol,
        port: port.to_owned(),
        source_ips: ANYWHERE.iter().map(|s| s.to_string()).collect(),
        description: why.to_owned(),
    };
    let mut rules = vec![
        r("tcp", "22", "SSH: deploy"),
        r("tcp", "80", "HTTP: ACME challenges, redirect"),
        r(
            "tcp",
            "443",
            "HTTPS: portal, BigBlueButton, Jitsi Meet, chat",
        ),
        r("tcp", "3478", "TURN/STUN"),
        r("udp", "3478", "TURN/STUN"),
        r("tcp", "5349", "TURN over TLS"),
        r("udp", "5349", "TURN over DTLS"),
        r("udp", TURN_RELAY, "TURN relay ports (coturn default)"),
        r("udp", "10000", "Jitsi videobridge media"),
        r("tcp", "4443", "Jitsi videobridge media over TCP (fallback)"),
        r(
            "udp",
            "16384-32768",
            "BigBlueButton media (FreeSWITCH, Kurento/mediasoup)",
        ),
    ];
    if event.homeserver.is_some_and(|h| h.federation) {
        rules.push(r(
            "tcp",
            MATRIX_FEDERATION,
            "Matrix federation: other homeservers reach the chat",
        ));
    }
    let sources = own_sources(own);
    if !sources.is_empty() {
        for (port, why) in OWN_ONLY {
            rules.push(Rule {
                direction: "in",
                protocol: "tcp",
                port: port.to_owned(),
                source_ips: sources.iter().cloned().collect(),
                description: why.to_owned(),
            });
        }
    }
    rules
}

/// Each address as the single-host network Hetzner's rules take.
fn own_sources(own: &[String]) -> BTreeSet<String> {
    own.iter()
        .map(|a| a.trim())
        .filter(|a| !a.is_empty())
        .map(|a| {
            if a.contains('/') {
                a.to_owned()
            } else if a.contains(':') {
                format!("{a}/128")
            } else {
                format!("{a}/32")
            }
        })
        .collect()
}

/// Whether the rules a firewall has open exactly what [`rules`] opens, to
/// the same sources.
pub fn same_rules(seen: &[RuleSeen], event: &Event, own: &[String]) -> bool {
    type Key = (String, String, String, BTreeSet<String>);
    let have: BTreeSet<Key> = seen
        .iter()
        .map(|r| {
            (
                r.direction.clone(),
                r.protocol.clone(),
                r.port.clone().unwrap_or_default(),
                r.source_ips.iter().cloned().collect(),
            )
        })
        .collect();
    let want: BTreeSet<Key> = rules(event, own)
        .into_iter()
        .map(|r| {
            (
                r.direction.to_owned(),
                r.protocol.to_owned(),
                r.port,
                r.source_ips.into_iter().collect(),
            )
        })
        .collect();
    have == want
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An event, with `chat_table` as its `[chat]` (empty: none).
    fn event(chat_table: &str) -> Event {
        let src = format!(
            "id = \"fw\"\nname = \"F\"\ntimezone = \"UTC\"\ndomain = \"fw.example.org\"\nattendees = 10\n{chat_table}\n\
             [[day]]\ndate = \"2024-06-01\"\nopen = \"09:00\"\nclose = \"17:00\"\n\
             [[room]]\nname = \"R\"\nkind = \"session\"\npeak = 5\n"
        );
        Event::parse(std::path::Path::new("event.toml"), &src).unwrap()
    }

    fn find<'a>(rules: &'a [Rule], protocol: &str, port: &str) -> Option<&'a Rule> {
        rules
            .iter()
            .find(|r| r.protocol == protocol && r.port == port)
    }

    #[test]
    fn media_fallbacks_are_open_to_everyone() {
        let rules = rules(&event(""), &[]);
        for (protocol, port) in [("tcp", "4443"), ("udp", "5349"), ("udp", "10000")] {
            let rule = find(&rules, protocol, port)
                .unwrap_or_else(|| panic!("{protocol}/{port} is not open"));
            assert_eq!(rule.source_ips, ANYWHERE.map(String::from).to_vec());
        }
    }

    #[test]
    fn xmpp_and_rtmp_are_open_only_to_the_events_own_servers() {
        for port in [XMPP_CLIENT, RTMP_INGEST] {
            assert!(
                find(&rules(&event(""), &[]), "tcp", port).is_none(),
                "{port}: no servers yet, no rule (and never one open to the internet)"
            );
        }
        let own = vec![
            "203.0.113.9".to_owned(),
            "2001:db8:2::1".to_owned(),
            "198.51.100.0/24".to_owned(),
        ];
        let rules = rules(&event(""), &own);
        let xmpp = find(&rules, "tcp", XMPP_CLIENT).expect("a rule for 5222");
        assert_eq!(
            xmpp.source_ips,
            vec!["198.51.100.0/24", "2001:db8:2::1/128", "203.0.113.9/32"]
        );
        assert!(!xmpp.source_ips.iter().any(|s| s.ends_with("/0")));
        let rtmp = find(&rules, "tcp", RTMP_INGEST).expect("a rule for 1935");
        assert_eq!(rtmp.source_ips, xmpp.source_ips);
    }

    #[test]
    fn a_changed_source_list_is_not_the_same_firewall() {
        let seen_of = |own: &[String]| -> Vec<RuleSeen> {
            rules(&event(""), own)
                .into_iter()
                .map(|r| RuleSeen {
                    direction: r.direction.into(),
                    protocol: r.protocol.into(),
                    port: Some(r.port),
                    source_ips: r.source_ips,
                })
                .collect()
        };
        let one = vec!["203.0.113.9".to_owned()];
        let two = vec!["203.0.113.9".to_owned(), "203.0.113.10".to_owned()];
        let ev = event("");
        assert!(same_rules(&seen_of(&one), &ev, &one));
        assert!(
            !same_rules(&seen_of(&one), &ev, &two),
            "a new server must be let in"
        );
        assert!(!same_rules(&seen_of(&[]), &ev, &one));
        // Federation switched on: 8448 is missing, so not the same.
        let federated = event("[chat]\nenable = true\nfederation = true");
        assert!(!same_rules(&seen_of(&one), &federated, &one));
    }

    #[test]
    fn the_chat_needs_only_https_and_federation_alone_opens_8448() {
        let own = vec!["203.0.113.9".to_owned()];
        for chat in [
            "",
            "[chat]\nenable = true",
            "chat = \"https://matrix.to/#/#fw:example.org\"",
        ] {
            let rules = rules(&event(chat), &own);
            for port in ["80", "443"] {
                let rule = find(&rules, "tcp", port).expect("80 and 443 are open");
                assert_eq!(rule.source_ips, ANYWHERE.map(String::from).to_vec());
            }
            assert!(
                find(&rules, "tcp", MATRIX_FEDERATION).is_none(),
                "{chat:?}: no federation, no 8448"
            );
        }
        let plain = rules(&event("[chat]\nenable = true"), &own);
        let federated = rules(&event("[chat]\nenable = true\nfederation = true"), &own);
        assert_eq!(federated.len(), plain.len() + 1);
        let rule = find(&federated, "tcp", MATRIX_FEDERATION).expect("8448 with federation");
        assert_eq!(rule.source_ips, ANYWHERE.map(String::from).to_vec());
        assert!(find(&federated, "udp", MATRIX_FEDERATION).is_none());
    }
}
