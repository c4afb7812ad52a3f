//! Which names a venue has, and the records they get: every host at
//! `<host>.<domain>` (as the NixOS hosts call themselves, nix/lib.nix's
//! publicName), the portal also at the event's domain itself, and the chat
//! host also at `chat.<domain>` (Synapse's public_baseurl and Element,
//! modules/chat.nix; the Matrix server name, the domain, is delegated to it
//! by the portal's `/.well-known/matrix/*`). Jitsi,
//! each BigBlueButton server and TURN are served at their host's name, so
//! the host names are the names the roles serve.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::model::fleet::Fleet;

/// One record set venue wants: `rel` relative to the zone (`@`: its apex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Wanted {
    pub rel: String,
    pub fqdn: String,
    pub kind: &'static str,
    pub values: Vec<String>,
}

/// `fqdn` relative to `zone` (`@` for the apex), None when outside it.
pub fn relative(zone: &str, fqdn: &str) -> Option<String> {
    let fqdn = fqdn.trim_end_matches('.').to_ascii_lowercase();
    if fqdn == zone {
        Some("@".into())
    } else {
        fqdn.strip_suffix(&format!(".{zone}")).map(str::to_owned)
    }
}

/// Whether `fqdn` is the event's domain or a name below it: the only names
/// venue ever writes (and so the only ones `down` deletes).
pub fn in_domain(domain: &str, fqdn: &str) -> bool {
    let fqdn = fqdn.trim_end_matches('.').to_ascii_lowercase();
    fqdn == domain || fqdn.ends_with(&format!(".{domain}"))
}

/// The public name of the event's homeserver and Element.
pub fn chat_name(domain: &str) -> String {
    format!("chat.{domain}").to_ascii_lowercase()
}

/// The names of hosts `(name, role)`: each host's, the domain for a portal,
/// and `chat.<domain>` for the chat host.
pub fn names<'a>(domain: &str, hosts: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<String> {
    let mut out = BTreeSet::new();
    for (name, role) in hosts {
        out.insert(format!("{name}.{domain}").to_ascii_lowercase());
        match role {
            "portal" => {
                out.insert(domain.to_ascii_lowercase());
            }
            "chat" => {
                out.insert(chat_name(domain));
            }
            _ => {}
        }
    }
    out.into_iter().collect()
}

/// The A and AAAA record sets for a fleet, in `zone`. Names outside the zone
/// (impossible while the domain is in it, which event.toml checks) are skipped.
pub fn wanted(zone: &str, fleet: &Fleet) -> Vec<Wanted> {
    let mut sets: BTreeMap<(String, &'static str), BTreeSet<String>> = BTreeMap::new();
    for s in &fleet.servers {
        for fqdn in names(&fleet.domain, [(s.name.as_str(), s.role.as_str())]) {
            for (kind, addr) in [("A", &s.ipv4), ("AAAA", &s.ipv6)] {
                if let Some(a) = addr {
                    sets.entry((fqdn.clone(), kind))
                        .or_default()
                        .insert(a.clone());
                }
            }
        }
    }
    sets.into_iter()
        .filter_map(|((fqdn, kind), values)| {
            relative(zone, &fqdn).map(|rel| Wanted {
                rel,
                fqdn,
                kind,
                values: values.into_iter().collect(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fleet::FleetServer;

    fn server(name: &str, role: &str, v4: &str, v6: Option<&str>) -> FleetServer {
        FleetServer {
            name: name.into(),
            role: role.into(),
            server_type: "cx23".into(),
            location: "fsn1".into(),
            ipv4: Some(v4.into()),
            ipv6: v6.map(str::to_owned),
            is_static: false,
            configuration: None,
        }
    }

    #[test]
    fn every_host_by_name_and_the_portal_at_the_domain() {
        let fleet = Fleet {
            event: "ev".into(),
            domain: "ev.example.org".into(),
            acme_email: None,
            tls: true,
            servers: vec![
                server("ev-portal-1", "portal", "192.0.2.1", Some("2001:db8::1")),
                server("ev-bbb-1", "bbb", "192.0.2.2", None),
                server("coop", "jitsi", "192.0.2.3", None),
                server("coop", "coturn", "192.0.2.3", None),
            ],
            schedule: None,
            chat_federation: false,
        };
        let w = wanted("example.org", &fleet);
        let got: Vec<(&str, &str, Vec<&str>)> = w
            .iter()
            .map(|w| {
                (
                    w.rel.as_str(),
                    w.kind,
                    w.values.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("coop.ev", "A", vec!["192.0.2.3"]),
                ("ev-bbb-1.ev", "A", vec!["192.0.2.2"]),
                ("ev-portal-1.ev", "A", vec!["192.0.2.1"]),
                ("ev-portal-1.ev", "AAAA", vec!["2001:db8::1"]),
                ("ev", "A", vec!["192.0.2.1"]),
                ("ev", "AAAA", vec!["2001:db8::1"]),
            ]
        );
        // The domain at the zone's apex.
        let apex: Vec<Wanted> = wanted("ev.example.org", &fleet)
            .into_iter()
            .filter(|w| w.fqdn == "ev.example.org")
            .collect();
        assert_eq!(apex.len(), 2);
        assert!(apex.iter().all(|w| w.rel == "@"));
    }

    #[test]
    fn the_chat_host_is_also_chat_at_the_domain() {
        let fleet = Fleet {
            event: "ev".into(),
            domain: "ev.example.org".into(),
            acme_email: None,
            tls: true,
            servers: vec![
                server("ev-portal-1", "portal", "192.0.2.1", None),
                server("ev-chat-1", "chat", "192.0.2.4", Some("2001:db8::4")),
            ],
            schedule: None,
            chat_federation: false,
        };
        let got: Vec<(String, &str, Vec<String>)> = wanted("example.org", &fleet)
            .into_iter()
            .map(|w| (w.rel, w.kind, w.values))
            .collect();
        let set =
            |rel: &str, kind: &'static str, v: &str| (rel.to_owned(), kind, vec![v.to_owned()]);
        assert_eq!(
            got,
            vec![
                set("chat.ev", "A", "192.0.2.4"),
                set("chat.ev", "AAAA", "2001:db8::4"),
                set("ev-chat-1.ev", "A", "192.0.2.4"),
                set("ev-chat-1.ev", "AAAA", "2001:db8::4"),
                set("ev-portal-1.ev", "A", "192.0.2.1"),
                set("ev", "A", "192.0.2.1"),
            ]
        );
        // Only the chat role has that name.
        assert_eq!(
            names("ev.example.org", [("ev-bbb-1", "bbb")]),
            vec!["ev-bbb-1.ev.example.org"]
        );
        assert_eq!(chat_name("Ev.Example.org"), "chat.ev.example.org");
    }

    #[test]
    fn names_outside_the_domain_are_not_ours() {
        assert!(in_domain("ev.example.org", "ev.example.org."));
        assert!(in_domain(
            "ev.example.org",
            "_acme-challenge.ev.example.org"
        ));
        assert!(!in_domain("ev.example.org", "www.example.org"));
        assert!(!in_domain("ev.example.org", "xev.example.org"));
        assert_eq!(relative("example.org", "a.example.org"), Some("a".into()));
        assert_eq!(relative("example.org", "example.org"), Some("@".into()));
        assert_eq!(relative("example.org", "example.com"), None);
    }
}
