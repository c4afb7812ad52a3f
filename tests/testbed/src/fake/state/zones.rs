//! DNS zones and their record sets (`/zones`, `/zones/{id_or_name}/rrsets`),
//! in the spec's shapes, and what the fake's DNS server reads of them
//! ([`State::dns_lookup`]). Record changes are visible at once (as in the API:
//! the rrset shows the new records while its action runs); the action then
//! succeeds after `action_duration`.

use std::net::{Ipv4Addr, Ipv6Addr};

use serde_json::{json, Value};

use super::{
    check_labels, error, invalid, list, not_found, now_text, q, Answer, Effect, Query, State,
};

/// Record types the API knows.
const TYPES: [&str; 16] = [
    "A", "AAAA", "CAA", "CNAME", "DS", "HINFO", "HTTPS", "MX", "NS", "PTR", "RP", "SOA", "SRV",
    "SVCB", "TLSA", "TXT",
];

/// What the fake's DNS server answers for one question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsLookup {
    /// No zone of the fake holds the name: REFUSED (not authoritative).
    NotOurs,
    /// The name has no record of any type: NXDOMAIN.
    NoName,
    /// The name exists, but not with this type: NOERROR, no answers.
    NoData,
    /// (TTL, value as stored, e.g. `"\"token\""` for TXT).
    Records(Vec<(u32, String)>),
}

impl State {
    /// Creates a primary zone (`fake-hcloud --zone NAME`, tests).
    pub fn add_zone(&mut self, name: &str) -> Value {
        let (_, v) = self.create_zone(&json!({"name": name, "mode": "primary"}));
        v["zone"].clone()
    }

    /// Every zone, as served.
    pub fn zones(&self) -> Vec<Value> {
        self.zones.values().map(|z| self.zone_json(z)).collect()
    }

    /// Every rrset of the zone named `zone`, as served.
    pub fn rrsets(&self, zone: &str) -> Vec<Value> {
        self.zone_id(zone)
            .map(|id| {
                self.rrsets
                    .iter()
                    .filter(|((z, _, _), _)| *z == id)
                    .map(|(_, v)| v.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn zone_id(&self, id_or_name: &str) -> Option<u64> {
        match id_or_name.parse::<u64>() {
            Ok(id) => self.zones.contains_key(&id).then_some(id),
            Err(_) => self
                .zones
                .iter()
                .find(|(_, z)| z["name"] == id_or_name)
                .map(|(id, _)| *id),
        }
    }

    fn zone_json(&self, z: &Value) -> Value {
        let mut z = z.clone();
        let id = z["id"].as_u64().unwrap_or(0);
        z["record_count"] = json!(self.rrsets.keys().filter(|(zi, _, _)| *zi == id).count());
        z
    }

    /// The answer for one DNS question: the longest zone that holds `qname`.
    pub fn dns_lookup(&mut self, qname: &str, qtype: &str) -> DnsLookup {
        self.tick();
        let qname = qname.trim_end_matches('.').to_ascii_lowercase();
        let zone = self
            .zones
            .iter()
            .filter(|(_, z)| {
                let n = z["name"].as_str().unwrap_or("");
                qname == n || qname.ends_with(&format!(".{n}"))
            })
            .max_by_key(|(_, z)| z["name"].as_str().unwrap_or("").len());
        let Some((&zid, z)) = zone else {
            return DnsLookup::NotOurs;
        };
        let zname = z["name"].as_str().unwrap_or("");
        let rel = if qname == zname {
            "@".to_owned()
        } else {
            qname[..qname.len() - zname.len() - 1].to_owned()
        };
        let default_ttl = z["ttl"].as_u64().unwrap_or(3600) as u32;
        if !self.rrsets.keys().any(|(zi, n, _)| *zi == zid && *n == rel) {
            return DnsLookup::NoName;
        }
        match self.rrsets.get(&(zid, rel, qtype.to_owned())) {
            None => DnsLookup::NoData,
            Some(r) => {
                let ttl = r["ttl"].as_u64().map(|t| t as u32).unwrap_or(default_ttl);
                DnsLookup::Records(
                    r["records"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|x| x["value"].as_str())
                        .map(|v| (ttl, v.to_owned()))
                        .collect(),
                )
            }
        }
    }

    /// Routes `/zones…` (below `/v1`).
    pub(super) fn answer_zones(
        &mut self,
        method: &str,
        seg: &[&str],
        query: &Query,
        body: &Value,
    ) -> Answer {
        match (method, seg) {
            ("GET", ["zones"]) => {
                let mode = q(query, "mode").map(str::to_owned);
                let zones = self.zones();
                list(zones.into_iter(), query, "zones", move |v| {
                    mode.as_deref().is_none_or(|m| v["mode"] == m)
                })
            }
            ("POST", ["zones"]) => self.create_zone(body),
            ("GET", ["zones", "actions"]) => self.zone_actions(query),
            ("GET", ["zones", "actions", id]) => {
                match id.parse::<u64>().ok().and_then(|i| self.actions.get(&i)) {
                    Some(a) if a.json["command"].as_str().is_some_and(is_zone_command) => {
                        (200, json!({"action": a.json}))
                    }
                    _ => not_found("action"),
                }
            }
            (_, ["zones", z, rest @ ..]) => {
                let Some(zid) = self.zone_id(z) else {
                    return not_found("zone");
                };
                self.answer_zone(method, zid, rest, query, body)
            }
            _ => error(404, "not_found", "no such route"),
        }
    }

    fn answer_zone(
        &mut self,
        method: &str,
        zid: u64,
        rest: &[&str],
        query: &Query,
        body: &Value,
    ) -> Answer {
        match (method, rest) {
            ("GET", []) => (200, json!({"zone": self.zone_json(&self.zones[&zid])})),
            ("DELETE", []) => {
                if self.zones[&zid]["protection"]["delete"] == json!(true) {
                    return error(423, "protected", "zone is delete protected");
                }
                self.zones.remove(&zid);
                self.rrsets.retain(|(z, _, _), _| *z != zid);
                let action = self.action("delete_zone", &[(zid, "zone")], Effect::Nothing);
                (201, json!({"action": action}))
            }
            ("GET", ["rrsets"]) => {
                let types: Vec<String> = query
                    .iter()
                    .filter(|(k, _)| k == "type")
                    .map(|(_, v)| v.clone())
                    .collect();
                let sets: Vec<Value> = self
                    .rrsets
                    .iter()
                    .filter(|((z, _, _), _)| *z == zid)
                    .map(|(_, v)| v.clone())
                    .collect();
                list(sets.into_iter(), query, "rrsets", move |v| {
                    types.is_empty() || types.iter().any(|t| v["type"] == t.as_str())
                })
            }
            ("POST", ["rrsets"]) => {
                let name = body["name"].as_str().unwrap_or("").to_owned();
                let ty = body["type"].as_str().unwrap_or("").to_owned();
                if let Err(e) = self.check_rr_key(zid, &name, &ty) {
                    return e;
                }
                if self.rrsets.contains_key(&(zid, name.clone(), ty.clone())) {
                    return error(
                        409,
                        "uniqueness_error",
                        format!("rrset {name}/{ty} already exists"),
                    );
                }
                let records = match check_records(&ty, &body["records"], false) {
                    Ok(r) => r,
                    Err(e) => return e,
                };
                let labels = match check_labels(&body["labels"]) {
                    Ok(l) => l,
                    Err(e) => return e,
                };
                let ttl = match check_ttl(&body["ttl"]) {
                    Ok(t) => t,
                    Err(e) => return e,
                };
                let rrset = json!({
                    "id": format!("{name}/{ty}"), "name": name, "type": ty, "ttl": ttl,
                    "labels": labels, "protection": {"change": false}, "records": records, "zone": zid,
                });
                self.rrsets.insert((zid, name, ty), rrset.clone());
                let action = self.action("create_rrset", &[(zid, "zone")], Effect::Nothing);
                (201, json!({"rrset": rrset, "action": action}))
            }
            (_, ["rrsets", name, ty, more @ ..]) => {
                let key = (zid, (*name).to_owned(), (*ty).to_owned());
                if let Err(e) = self.check_rr_key(zid, name, ty) {
                    return e;
                }
                self.answer_rrset(method, key, more, body)
            }
            _ => error(404, "not_found", "no such route"),
        }
    }

    fn answer_rrset(
        &mut self,
        method: &str,
        key: (u64, String, String),
        more: &[&str],
        body: &Value,
    ) -> Answer {
        let zid = key.0;
        let ty = key.2.clone();
        let exists = self.rrsets.contains_key(&key);
        let protected = exists && self.rrsets[&key]["protection"]["change"] == json!(true);
        match (method, more) {
            ("GET", []) => match self.rrsets.get(&key) {
                Some(r) => (200, json!({"rrset": r})),
                None => not_found("rrset"),
            },
            ("PUT", []) => {
                let Some(r) = self.rrsets.get_mut(&key) else {
                    return not_found("rrset");
                };
                if !body["labels"].is_null() {
                    match check_labels(&body["labels"]) {
                        Ok(l) => r["labels"] = l,
                        Err(e) => return e,
                    }
                }
                (200, json!({"rrset": r}))
            }
            ("DELETE", []) => {
                if !exists {
                    return not_found("rrset");
                }
                if protected {
                    return error(423, "protected", "rrset is change protected");
                }
                self.rrsets.remove(&key);
                let action = self.action("delete_rrset", &[(zid, "zone")], Effect::Nothing);
                (201, json!({"action": action}))
            }
            ("POST", ["actions", act]) => {
                if protected {
                    return error(423, "protected", "rrset is change protected");
                }
                let command = match *act {
                    "set_records" | "add_records" | "remove_records" => {
                        let records =
                            match check_records(&ty, &body["records"], *act == "remove_records") {
                                Ok(r) => r,
                                Err(e) => return e,
                            };
                        let ttl = match check_ttl(&body["ttl"]) {
                            Ok(t) => t,
                            Err(e) => return e,
                        };
                        match *act {
                            "set_records" => {
                                let Some(r) = self.rrsets.get_mut(&key) else {
                                    return not_found("rrset");
                                };
                                r["records"] = records;
                                "set_rrset_records"
                            }
                            "add_records" => {
                                let r = self.rrsets.entry(key.clone()).or_insert_with(|| {
                                    json!({
                                        "id": format!("{}/{}", key.1, key.2), "name": key.1, "type": key.2,
                                        "ttl": ttl, "labels": {}, "protection": {"change": false},
                                        "records": [], "zone": zid,
                                    })
                                });
                                let list = r["records"].as_array_mut().expect("records array");
                                for rec in records.as_array().into_iter().flatten() {
                                    if !list.iter().any(|x| x["value"] == rec["value"]) {
                                        list.push(rec.clone());
                                    }
                                }
                                "add_rrset_records"
                            }
                            _ => {
                                let Some(r) = self.rrsets.get_mut(&key) else {
                                    return not_found("rrset");
                                };
                                let gone: Vec<Value> = records
                                    .as_array()
                                    .into_iter()
                                    .flatten()
                                    .map(|x| x["value"].clone())
                                    .collect();
                                if let Some(list) = r["records"].as_array_mut() {
                                    list.retain(|x| !gone.contains(&x["value"]));
                                }
                                // The API deletes an rrset left without records.
                                if r["records"].as_array().is_some_and(|l| l.is_empty()) {
                                    self.rrsets.remove(&key);
                                }
                                "remove_rrset_records"
                            }
                        }
                    }
                    "change_ttl" => {
                        let ttl = match check_ttl(&body["ttl"]) {
                            Ok(t) => t,
                            Err(e) => return e,
                        };
                        let Some(r) = self.rrsets.get_mut(&key) else {
                            return not_found("rrset");
                        };
                        r["ttl"] = ttl;
                        "change_rrset_ttl"
                    }
                    "change_protection" => {
                        let Some(r) = self.rrsets.get_mut(&key) else {
                            return not_found("rrset");
                        };
                        if let Some(c) = body["change"].as_bool() {
                            r["protection"]["change"] = json!(c);
                        }
                        "change_rrset_protection"
                    }
                    _ => return error(404, "not_found", format!("no action {act}")),
                };
                let action = self.action(command, &[(zid, "zone")], Effect::Nothing);
                (201, json!({"action": action}))
            }
            _ => error(404, "not_found", "no such route"),
        }
    }

    /// A record set's name and type as the API accepts them in paths and bodies.
    fn check_rr_key(&self, zid: u64, name: &str, ty: &str) -> Result<(), Answer> {
        let zone = self.zones[&zid]["name"].as_str().unwrap_or("").to_owned();
        if !TYPES.contains(&ty) {
            return Err(invalid(format!("unknown rrset type {ty:?}")));
        }
        let labels_ok = name == "@"
            || (!name.is_empty()
                && name.split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && (l == "*"
                            || l.chars().all(|c| {
                                c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_'
                            }))
                }));
        if !labels_ok || name.ends_with('.') || name == zone || name.ends_with(&format!(".{zone}"))
        {
            return Err(invalid(format!(
                "invalid rrset name {name:?}: lower case, relative to the zone {zone} (`@` for its apex)"
            )));
        }
        Ok(())
    }

    fn create_zone(&mut self, body: &Value) -> Answer {
        let Some(name) = body["name"].as_str() else {
            return invalid("name is required");
        };
        match body["mode"].as_str() {
            Some("primary") => {}
            Some("secondary") => return invalid("secondary zones are not faked: use mode primary"),
            _ => return invalid("mode is required: primary or secondary"),
        }
        if name != name.to_ascii_lowercase()
            || name.ends_with('.')
            || !name.contains('.')
            || !name
                .split('.')
                .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        {
            return invalid(format!("invalid zone name {name:?}"));
        }
        if self.zones.values().any(|z| z["name"] == name) {
            return error(
                409,
                "uniqueness_error",
                format!("zone {name} already exists"),
            );
        }
        let labels = match check_labels(&body["labels"]) {
            Ok(l) => l,
            Err(e) => return e,
        };
        let ttl = body["ttl"].as_u64().unwrap_or(3600);
        let id = self.id();
        let zone = json!({
            "id": id, "name": name, "created": now_text(self.now()), "mode": "primary",
            "labels": labels, "protection": {"delete": false}, "ttl": ttl, "status": "ok",
            "record_count": 0, "registrar": "other",
            "authoritative_nameservers": {
                "assigned": ["hydrogen.ns.hetzner.com.", "oxygen.ns.hetzner.com.", "helium.ns.hetzner.de."],
                "delegated": [], "delegation_last_check": null, "delegation_status": "unknown",
            },
        });
        self.zones.insert(id, zone);
        // Like the API: a default SOA and three NS records.
        self.rrsets.insert(
            (id, "@".into(), "SOA".into()),
            json!({"id": "@/SOA", "name": "@", "type": "SOA", "ttl": ttl, "labels": {}, "protection": {"change": false}, "zone": id,
                   "records": [{"value": format!("hydrogen.ns.hetzner.com. dns.hetzner.com. {} 86400 10800 3600000 3600", self.now().format("%Y%m%d01"))}]}),
        );
        self.rrsets.insert(
            (id, "@".into(), "NS".into()),
            json!({"id": "@/NS", "name": "@", "type": "NS", "ttl": ttl, "labels": {}, "protection": {"change": false}, "zone": id,
                   "records": [{"value": "hydrogen.ns.hetzner.com."}, {"value": "oxygen.ns.hetzner.com."}, {"value": "helium.ns.hetzner.de."}]}),
        );
        let action = self.action("create_zone", &[(id, "zone")], Effect::Nothing);
        (
            201,
            json!({"zone": self.zone_json(&self.zones[&id]), "action": action}),
        )
    }

    fn zone_actions(&self, query: &Query) -> Answer {
        let ids: Vec<u64> = query
            .iter()
            .filter(|(k, _)| k == "id")
            .filter_map(|(_, v)| v.parse().ok())
            .collect();
        let actions: Vec<Value> = self
            .actions
            .iter()
            .filter(|(id, a)| {
                (ids.is_empty() || ids.contains(id))
                    && a.json["command"].as_str().is_some_and(is_zone_command)
            })
            .map(|(_, a)| a.json.clone())
            .collect();
        list(actions.into_iter(), query, "actions", |_| true)
    }
}

fn is_zone_command(c: &str) -> bool {
    c.contains("zone") || c.contains("rrset")
}

fn check_ttl(v: &Value) -> Result<Value, Answer> {
    match v {
        Value::Null => Ok(Value::Null),
        Value::Number(n)
            if n.as_u64()
                .is_some_and(|t| (60..=2_147_483_647).contains(&t)) =>
        {
            Ok(v.clone())
        }
        _ => Err(invalid(format!("invalid ttl {v}: at least 60 seconds"))),
    }
}

/// Records as the API takes them: 1 to 50 distinct values, each valid for
/// the type (A: IPv4, AAAA: IPv6, TXT: a quoted string, as Hetzner asks).
fn check_records(ty: &str, v: &Value, for_removal: bool) -> Result<Value, Answer> {
    let Some(items) = v.as_array() else {
        return Err(invalid("records must be a list"));
    };
    if items.is_empty() || items.len() > 50 {
        return Err(invalid("records: between 1 and 50 records"));
    }
    let mut seen: Vec<&str> = Vec::new();
    for r in items {
        let Some(value) = r["value"].as_str() else {
            return Err(invalid("every record needs a value"));
        };
        if seen.contains(&value) {
            return Err(invalid(format!("record {value:?} is listed twice")));
        }
        seen.push(value);
        if for_removal {
            continue;
        }
        let ok = match ty {
            "A" => value.parse::<Ipv4Addr>().is_ok(),
            "AAAA" => value.parse::<Ipv6Addr>().is_ok(),
            "TXT" => value.len() >= 2 && value.starts_with('"') && value.ends_with('"'),
            _ => !value.is_empty(),
        };
        if !ok {
            return Err(invalid(format!(
                "{value:?} is not a valid {ty} record value"
            )));
        }
    }
    Ok(Value::Array(
        items
            .iter()
            .map(|r| {
                let mut x = json!({"value": r["value"]});
                if let Some(c) = r["comment"].as_str() {
                    x["comment"] = json!(c);
                }
                x
            })
            .collect(),
    ))
}
