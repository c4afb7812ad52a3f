//! The fake cloud's state and its answers: a synchronous function from a
//! request (method, path, query, body) to (status, JSON), with no HTTP in it.
//! Resources are kept as JSON in the spec's response shapes, so what is
//! stored is what is served.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use conference::clock::Clock;
use serde_json::{json, Map, Value};

use super::ServerHook;
use crate::catalogue::{self, Location};
use crate::selector::Selector;

pub mod bill;
mod images;
mod zones;
pub use zones::DnsLookup;

pub type Answer = (u16, Value);

pub fn error(status: u16, code: &str, message: impl Into<String>) -> Answer {
    (
        status,
        json!({"error": {"code": code, "message": message.into(), "details": {}}}),
    )
}

fn not_found(what: &str) -> Answer {
    error(404, "not_found", format!("{what} not found"))
}

fn invalid(message: impl Into<String>) -> Answer {
    error(400, "invalid_input", message)
}

fn now_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, false)
}

/// What a finished action does to the state.
#[derive(Debug, Clone)]
enum Effect {
    ServerUp(u64),
    ServerGone(u64),
    PowerOn(u64),
    PowerOff(u64),
    /// A snapshot image becomes available (or, if the action fails, goes).
    ImageReady(u64, f64),
    Nothing,
}

struct Action {
    json: Value,
    done_at: Instant,
    /// The same moment in real (wall-clock) time, for the clock's reading of
    /// when the action finished, however late a tick notices it.
    done_real: DateTime<Utc>,
    fails: bool,
    effect: Effect,
}

pub struct State {
    next_id: u64,
    servers: BTreeMap<u64, Value>,
    actions: BTreeMap<u64, Action>,
    ssh_keys: BTreeMap<u64, Value>,
    firewalls: BTreeMap<u64, Value>,
    primary_ips: BTreeMap<u64, Value>,
    /// Snapshot images made with create_image (system images are the catalogue's).
    images: BTreeMap<u64, Value>,
    /// DNS zones by id, and their record sets by (zone id, name, type).
    zones: BTreeMap<u64, Value>,
    rrsets: BTreeMap<(u64, String, String), Value>,
    /// Every billable resource ever made, deleted ones included: the bill.
    ledger: BTreeMap<u64, bill::Lifetime>,
    /// The time every timestamp the fake writes comes from (real, or the
    /// rehearsal's accelerated clock shared with the agent through
    /// `VENUE_CLOCK`). Actions still run for `action_duration` of real time.
    pub clock: Clock,
    /// How long an action runs before it succeeds.
    pub action_duration: Duration,
    /// The next this many actions end in an error.
    pub failing_actions: u32,
    /// Answer lists as if no label selector had been given: a broken API,
    /// to show that the agent checks labels itself before deleting.
    pub ignore_label_selectors: bool,
    hook: Arc<dyn ServerHook>,
}

/// The query string as (key, value) pairs; keys may repeat (`id=1&id=2`).
pub type Query = Vec<(String, String)>;

fn q<'a>(query: &'a Query, key: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn labels_of(v: &Value) -> BTreeMap<String, String> {
    v["labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// Label keys and values as Hetzner accepts them (prefix/name, 63 chars).
fn check_labels(v: &Value) -> Result<Value, Answer> {
    match v {
        Value::Null => Ok(json!({})),
        Value::Object(m) => {
            for (k, val) in m {
                let name = k.rsplit('/').next().unwrap_or("");
                let ok_name = !name.is_empty()
                    && name.len() <= 63
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
                let ok_val = val.as_str().is_some_and(|s| {
                    s.len() <= 63
                        && s.chars()
                            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
                });
                if !ok_name || !ok_val {
                    return Err(invalid(format!("invalid label {k:?}={val}")));
                }
            }
            Ok(v.clone())
        }
        _ => Err(invalid("labels must be an object")),
    }
}

/// Filters by name and label_selector, then pages (`meta.pagination`).
fn list(
    items: impl Iterator<Item = Value>,
    query: &Query,
    key: &str,
    extra: impl Fn(&Value) -> bool,
) -> Answer {
    let selector = match q(query, "label_selector").map(Selector::parse).transpose() {
        Ok(s) => s,
        Err(e) => return invalid(e),
    };
    let name = q(query, "name");
    let all: Vec<Value> = items
        .filter(|v| name.is_none_or(|n| v["name"].as_str() == Some(n)))
        .filter(|v| selector.as_ref().is_none_or(|s| s.matches(&labels_of(v))))
        .filter(|v| extra(v))
        .collect();
    let page = q(query, "page")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let per_page = q(query, "per_page")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(25)
        .clamp(1, 50);
    let total = all.len();
    let last = total.div_ceil(per_page).max(1);
    let items: Vec<Value> = all
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect();
    let mut body = Map::new();
    body.insert(key.into(), Value::Array(items));
    body.insert(
        "meta".into(),
        json!({"pagination": {
            "page": page, "per_page": per_page, "previous_page": if page > 1 { json!(page - 1) } else { Value::Null },
            "next_page": if page < last { json!(page + 1) } else { Value::Null }, "last_page": last, "total_entries": total,
        }}),
    );
    (200, Value::Object(body))
}

impl State {
    pub fn new(action_duration: Duration, hook: Arc<dyn ServerHook>) -> State {
        State {
            next_id: 1000,
            servers: BTreeMap::new(),
            actions: BTreeMap::new(),
            ssh_keys: BTreeMap::new(),
            firewalls: BTreeMap::new(),
            primary_ips: BTreeMap::new(),
            images: BTreeMap::new(),
            zones: BTreeMap::new(),
            rrsets: BTreeMap::new(),
            ledger: BTreeMap::new(),
            clock: Clock::real(),
            action_duration,
            failing_actions: 0,
            ignore_label_selectors: false,
            hook,
        }
    }

    /// The clock's time now.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Counts of what exists, for tests: (servers, primary IPs, firewalls, SSH keys).
    pub fn servers(&self) -> Vec<Value> {
        self.servers.values().cloned().collect()
    }
    pub fn primary_ips(&self) -> Vec<Value> {
        self.primary_ips.values().cloned().collect()
    }
    pub fn firewalls(&self) -> Vec<Value> {
        self.firewalls.values().cloned().collect()
    }
    pub fn ssh_keys(&self) -> Vec<Value> {
        self.ssh_keys.values().cloned().collect()
    }

    fn action(&mut self, command: &str, resources: &[(u64, &str)], effect: Effect) -> Value {
        let id = self.id();
        let fails = if self.failing_actions > 0 {
            self.failing_actions -= 1;
            true
        } else {
            false
        };
        let json = json!({
            "id": id, "command": command, "status": "running", "progress": 0,
            "started": now_text(self.now()), "finished": null, "error": null,
            "resources": resources.iter().map(|(id, t)| json!({"id": id, "type": t})).collect::<Vec<_>>(),
        });
        self.actions.insert(
            id,
            Action {
                json: json.clone(),
                done_at: Instant::now() + self.action_duration,
                done_real: Utc::now()
                    + chrono::Duration::from_std(self.action_duration)
                        .unwrap_or(chrono::Duration::zero()),
                fails,
                effect,
            },
        );
        json
    }

    /// Finishes the actions whose time has come and applies what they do.
    pub fn tick(&mut self) {
        let now = Instant::now();
        let due: Vec<u64> = self
            .actions
            .iter()
            .filter(|(_, a)| a.json["status"] == "running" && a.done_at <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let finished = self.clock.at(self.actions[&id].done_real);
            let a = self.actions.get_mut(&id).expect("due action exists");
            a.json["progress"] = json!(100);
            a.json["finished"] = json!(now_text(finished));
            let (fails, effect) = (a.fails, a.effect.clone());
            if fails {
                a.json["status"] = json!("error");
                a.json["error"] = json!({"code": "action_failed", "message": "Action failed"});
            } else {
                a.json["status"] = json!("success");
            }
            match (effect, fails) {
                (Effect::ServerUp(s), false) | (Effect::PowerOn(s), false) => {
                    self.set_status(s, "running")
                }
                (Effect::ServerUp(s), true) => self.set_status(s, "off"),
                (Effect::ServerGone(s), false) => self.remove_server(s, finished),
                (Effect::ServerGone(s), true) => self.set_status(s, "running"),
                (Effect::PowerOff(s), false) => self.set_status(s, "off"),
                (Effect::PowerOff(s), true) => self.set_status(s, "running"),
                (Effect::ImageReady(i, gb), false) => self.image_ready(i, gb),
                (Effect::ImageReady(i, _), true) => self.image_failed(i),
                _ => {}
            }
        }
    }

    fn set_status(&mut self, server: u64, status: &str) {
        if let Some(s) = self.servers.get_mut(&server) {
            s["status"] = json!(status);
        }
    }

    fn remove_server(&mut self, id: u64, at: DateTime<Utc>) {
        let Some(server) = self.servers.remove(&id) else {
            return;
        };
        self.billed_until(&server, at);
        self.hook.deleted(server["name"].as_str().unwrap_or(""));
        // Primary IPs go with the server when auto_delete; others are unassigned.
        let ips: Vec<u64> = self
            .primary_ips
            .iter()
            .filter(|(_, ip)| ip["assignee_id"] == json!(id))
            .map(|(k, _)| *k)
            .collect();
        for ip in ips {
            if self.primary_ips[&ip]["auto_delete"] == json!(true) {
                if let Some(p) = self.primary_ips.remove(&ip) {
                    self.billed_until(&p, at);
                }
            } else if let Some(p) = self.primary_ips.get_mut(&ip) {
                p["assignee_id"] = Value::Null;
            }
        }
        for fw in self.firewalls.values_mut() {
            if let Some(applied) = fw["applied_to"].as_array_mut() {
                applied.retain(|r| r["server"]["id"] != json!(id));
            }
        }
    }

    /// Routes one request. `path` is below `/v1`, e.g. `/servers/7`.
    pub fn answer(&mut self, method: &str, path: &str, query: &Query, body: &Value) -> Answer {
        self.tick();
        let stripped: Query;
        let query = if self.ignore_label_selectors {
            stripped = query
                .iter()
                .filter(|(k, _)| k != "label_selector")
                .cloned()
                .collect();
            &stripped
        } else {
            query
        };
        let seg: Vec<&str> = path.trim_matches('/').split('/').collect();
        let id = |i: usize| seg.get(i).and_then(|s| s.parse::<u64>().ok());
        match (method, seg.as_slice()) {
            ("GET", ["locations"]) => list(
                catalogue::LOCATIONS.iter().map(catalogue::location_json),
                query,
                "locations",
                |_| true,
            ),
            ("GET", ["datacenters"]) => {
                let (status, mut v) = list(
                    catalogue::LOCATIONS.iter().map(catalogue::datacenter_json),
                    query,
                    "datacenters",
                    |_| true,
                );
                if status == 200 {
                    v["recommendation"] = json!(catalogue::LOCATIONS[0].id);
                }
                (status, v)
            }
            ("GET", ["server_types"]) => list(
                catalogue::SERVER_TYPES
                    .iter()
                    .map(catalogue::server_type_json),
                query,
                "server_types",
                |_| true,
            ),
            (_, ["images", ..]) => self.answer_images(method, &seg, query, body),
            ("GET", ["pricing"]) => (200, catalogue::pricing_json()),
            ("GET", ["actions"]) => {
                let ids: Vec<u64> = query
                    .iter()
                    .filter(|(k, _)| k == "id")
                    .filter_map(|(_, v)| v.parse().ok())
                    .collect();
                if ids.is_empty() {
                    return invalid("at least one id is required");
                }
                let actions: Vec<Value> = ids
                    .iter()
                    .filter_map(|i| self.actions.get(i))
                    .map(|a| a.json.clone())
                    .collect();
                (200, json!({"actions": actions}))
            }
            ("GET", ["actions", _]) => match id(1).and_then(|i| self.actions.get(&i)) {
                Some(a) => (200, json!({"action": a.json})),
                None => not_found("action"),
            },
            ("GET", ["servers"]) => {
                let statuses: Vec<String> = query
                    .iter()
                    .filter(|(k, _)| k == "status")
                    .map(|(_, v)| v.clone())
                    .collect();
                list(self.servers.values().cloned(), query, "servers", move |v| {
                    statuses.is_empty() || statuses.iter().any(|s| v["status"] == s.as_str())
                })
            }
            ("POST", ["servers"]) => self.create_server(body),
            ("GET", ["servers", _]) => match id(1).and_then(|i| self.servers.get(&i)) {
                Some(s) => (200, json!({"server": s})),
                None => not_found("server"),
            },
            ("DELETE", ["servers", _]) => {
                let Some(sid) = id(1).filter(|i| self.servers.contains_key(i)) else {
                    return not_found("server");
                };
                if self.imaging(sid) {
                    return error(
                        423,
                        "locked",
                        "server is locked by a running create_image action",
                    );
                }
                self.set_status(sid, "deleting");
                let action =
                    self.action("delete_server", &[(sid, "server")], Effect::ServerGone(sid));
                (200, json!({"action": action}))
            }
            ("POST", ["servers", _, "actions", "poweroff"]) => {
                let Some(sid) = id(1).filter(|i| self.servers.contains_key(i)) else {
                    return not_found("server");
                };
                self.set_status(sid, "stopping");
                let action = self.action("stop_server", &[(sid, "server")], Effect::PowerOff(sid));
                (201, json!({"action": action}))
            }
            ("POST", ["servers", _, "actions", "create_image"]) => match id(1) {
                Some(sid) => self.create_image(sid, body),
                None => not_found("server"),
            },
            ("POST", ["servers", _, "actions", "poweron"]) => {
                let Some(sid) = id(1).filter(|i| self.servers.contains_key(i)) else {
                    return not_found("server");
                };
                self.set_status(sid, "starting");
                let action = self.action("start_server", &[(sid, "server")], Effect::PowerOn(sid));
                (201, json!({"action": action}))
            }
            ("GET", ["ssh_keys"]) => {
                let fp = q(query, "fingerprint").map(str::to_owned);
                list(
                    self.ssh_keys.values().cloned(),
                    query,
                    "ssh_keys",
                    move |v| fp.as_deref().is_none_or(|f| v["fingerprint"] == f),
                )
            }
            ("POST", ["ssh_keys"]) => self.create_ssh_key(body),
            ("GET", ["ssh_keys", _]) => match id(1).and_then(|i| self.ssh_keys.get(&i)) {
                Some(k) => (200, json!({"ssh_key": k})),
                None => not_found("ssh_key"),
            },
            ("DELETE", ["ssh_keys", _]) => match id(1).and_then(|i| self.ssh_keys.remove(&i)) {
                Some(_) => (204, Value::Null),
                None => not_found("ssh_key"),
            },
            ("GET", ["firewalls"]) => {
                list(self.firewalls.values().cloned(), query, "firewalls", |_| {
                    true
                })
            }
            ("POST", ["firewalls"]) => self.create_firewall(body),
            ("GET", ["firewalls", _]) => match id(1).and_then(|i| self.firewalls.get(&i)) {
                Some(f) => (200, json!({"firewall": f})),
                None => not_found("firewall"),
            },
            ("DELETE", ["firewalls", _]) => {
                let Some(fid) = id(1).filter(|i| self.firewalls.contains_key(i)) else {
                    return not_found("firewall");
                };
                if self.firewalls[&fid]["applied_to"]
                    .as_array()
                    .is_some_and(|a| !a.is_empty())
                {
                    return error(
                        409,
                        "resource_in_use",
                        "firewall is still applied to resources",
                    );
                }
                self.firewalls.remove(&fid);
                (204, Value::Null)
            }
            ("POST", ["firewalls", _, "actions", "set_rules"]) => {
                let Some(fid) = id(1).filter(|i| self.firewalls.contains_key(i)) else {
                    return not_found("firewall");
                };
                let rules = match parse_rules(body) {
                    Ok(r) => r,
                    Err(e) => return e,
                };
                self.firewalls.get_mut(&fid).expect("checked")["rules"] = json!(rules);
                let action =
                    self.action("set_firewall_rules", &[(fid, "firewall")], Effect::Nothing);
                (201, json!({"actions": [action]}))
            }
            ("GET", ["primary_ips"]) => {
                let ip = q(query, "ip").map(str::to_owned);
                list(
                    self.primary_ips.values().cloned(),
                    query,
                    "primary_ips",
                    move |v| ip.as_deref().is_none_or(|i| v["ip"] == i),
                )
            }
            ("POST", ["primary_ips"]) => self.create_primary_ip(body),
            ("GET", ["primary_ips", _]) => match id(1).and_then(|i| self.primary_ips.get(&i)) {
                Some(p) => (200, json!({"primary_ip": p})),
                None => not_found("primary_ip"),
            },
            ("PUT", ["primary_ips", _]) => {
                let Some(pid) = id(1).filter(|i| self.primary_ips.contains_key(i)) else {
                    return not_found("primary_ip");
                };
                let labels = match body.get("labels").map(check_labels).transpose() {
                    Ok(l) => l,
                    Err(e) => return e,
                };
                let p = self.primary_ips.get_mut(&pid).expect("checked");
                if let Some(l) = labels {
                    p["labels"] = l;
                }
                if let Some(n) = body.get("name").and_then(Value::as_str) {
                    p["name"] = json!(n);
                }
                if let Some(a) = body.get("auto_delete").and_then(Value::as_bool) {
                    p["auto_delete"] = json!(a);
                }
                (200, json!({"primary_ip": p}))
            }
            ("DELETE", ["primary_ips", _]) => {
                let Some(pid) = id(1).filter(|i| self.primary_ips.contains_key(i)) else {
                    return not_found("primary_ip");
                };
                if !self.primary_ips[&pid]["assignee_id"].is_null() {
                    return error(409, "resource_in_use", "primary IP is assigned to a server");
                }
                if let Some(p) = self.primary_ips.remove(&pid) {
                    let now = self.now();
                    self.billed_until(&p, now);
                }
                (204, Value::Null)
            }
            (_, ["zones", ..]) => self.answer_zones(method, &seg, query, body),
            _ => error(404, "not_found", format!("no route for {method} /v1{path}")),
        }
    }

    fn name_taken<'a>(mut items: impl Iterator<Item = &'a Value>, name: &str) -> bool {
        items.any(|v| v["name"] == name)
    }

    fn create_server(&mut self, body: &Value) -> Answer {
        let Some(name) = body["name"].as_str() else {
            return invalid("name is required");
        };
        let valid_name = !name.is_empty()
            && name.len() <= 63
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
        if !valid_name {
            return invalid(format!("invalid server name {name:?}"));
        }
        let Some(st) = body["server_type"]
            .as_str()
            .and_then(catalogue::server_type)
        else {
            return invalid("unknown server_type");
        };
        let image_ref = body["image"].as_str().unwrap_or("");
        let (image, snapshot) = match self.image_for_server(image_ref, st.architecture) {
            Ok(i) => i,
            Err(e) => return e,
        };
        let loc: &Location = match body["location"].as_str() {
            None => &catalogue::LOCATIONS[0],
            Some(l) => match catalogue::location(l) {
                Some(l) => l,
                None => return invalid(format!("unknown location {l:?}")),
            },
        };
        let labels = match check_labels(&body["labels"]) {
            Ok(l) => l,
            Err(e) => return e,
        };
        if body["user_data"]
            .as_str()
            .is_some_and(|u| u.len() > 32 * 1024)
        {
            return invalid("user_data is longer than 32 KiB");
        }
        let mut keys = Vec::new();
        let mut authorized_keys = Vec::new();
        for k in body["ssh_keys"].as_array().into_iter().flatten() {
            let k = k.as_str().unwrap_or("");
            match self.ssh_keys.values().find(|v| {
                v["name"] == k
                    || v["id"].as_u64().is_some_and(|id| id.to_string() == k)
                    || v["fingerprint"] == k
            }) {
                Some(v) => {
                    keys.push(k.to_owned());
                    authorized_keys.extend(v["public_key"].as_str().map(str::to_owned));
                }
                None => return invalid(format!("ssh key {k:?} not found")),
            }
        }
        let mut firewalls = Vec::new();
        for f in body["firewalls"].as_array().into_iter().flatten() {
            let fid = f["firewall"].as_u64().unwrap_or(0);
            if !self.firewalls.contains_key(&fid) {
                return invalid(format!("firewall {fid} not found"));
            }
            firewalls.push(fid);
        }
        if Self::name_taken(self.servers.values(), name) {
            return error(409, "uniqueness_error", "server name is already used");
        }
        let serial = self.id();
        let new = super::NewServer {
            name: name.to_owned(),
            serial,
            server_type: st.name.to_owned(),
            location: loc.name.to_owned(),
            image: image["name"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| image["id"].to_string()),
            snapshot,
            user_data: body["user_data"].as_str().map(str::to_owned),
            authorized_keys,
            labels: labels.as_object().cloned().unwrap_or_default(),
        };
        let addresses = match self.hook.create(&new) {
            Ok(a) => a,
            Err(e) => return error(503, "resource_unavailable", e),
        };
        let id = self.id();
        let created_at = self.now();
        let created = now_text(created_at);
        let public_net = &body["public_net"];
        let ip_json = |this: &mut State, ty: &str, ip: &str| -> u64 {
            let pid = this.id();
            let ip = if ty == "ipv6" {
                format!("{ip}/64")
            } else {
                ip.to_owned()
            };
            this.primary_ips.insert(
                pid,
                json!({
                    "id": pid, "name": format!("primary_ip-{pid}"), "labels": {}, "created": created, "ip": ip, "type": ty,
                    "assignee_id": id, "assignee_type": "server", "auto_delete": true, "blocked": false,
                    "dns_ptr": if ty == "ipv4" { json!([{"ip": ip, "dns_ptr": format!("static.{}.clients.your-server.de", ip)}]) } else { json!([]) },
                    "datacenter": catalogue::datacenter_json(loc), "location": catalogue::location_json(loc), "protection": {"delete": false},
                }),
            );
            let p = this.primary_ips[&pid].clone();
            this.bill_primary_ip(&p, created_at);
            pid
        };
        let ipv4 = (public_net["enable_ipv4"] != json!(false)).then(|| {
            let pid = ip_json(self, "ipv4", &addresses.ipv4);
            json!({"id": pid, "ip": addresses.ipv4, "blocked": false, "dns_ptr": format!("static.{}.clients.your-server.de", addresses.ipv4)})
        });
        let ipv6 = (public_net["enable_ipv6"] != json!(false)).then(|| {
            let pid = ip_json(self, "ipv6", &addresses.ipv6_net);
            json!({"id": pid, "ip": format!("{}/64", addresses.ipv6_net), "blocked": false, "dns_ptr": []})
        });
        let server = json!({
            "id": id, "name": name, "status": "initializing", "created": created,
            "public_net": {"ipv4": ipv4, "ipv6": ipv6, "floating_ips": [], "firewalls": firewalls.iter().map(|f| json!({"id": f, "status": "applied"})).collect::<Vec<_>>()},
            "private_net": [], "server_type": catalogue::server_type_json(st), "datacenter": catalogue::datacenter_json(loc),
            "location": catalogue::location_json(loc), "image": image, "iso": null,
            "rescue_enabled": false, "locked": false, "backup_window": null, "outgoing_traffic": null, "ingoing_traffic": null,
            "included_traffic": 21_990_232_555_520u64, "protection": {"delete": false, "rebuild": false}, "labels": labels,
            "volumes": [], "load_balancers": [], "primary_disk_size": st.disk, "placement_group": null,
        });
        for f in &firewalls {
            if let Some(fw) = self.firewalls.get_mut(f) {
                fw["applied_to"]
                    .as_array_mut()
                    .expect("applied_to is an array")
                    .push(json!({"type": "server", "server": {"id": id}}));
            }
        }
        self.servers.insert(id, server.clone());
        self.bill_server(&server, created_at);
        let start = body["start_after_create"] != json!(false);
        let action = self.action(
            "create_server",
            &[(id, "server")],
            if start {
                Effect::ServerUp(id)
            } else {
                Effect::Nothing
            },
        );
        let next_actions = if start {
            vec![self.action("start_server", &[(id, "server")], Effect::Nothing)]
        } else {
            vec![]
        };
        (
            201,
            json!({"server": server, "action": action, "next_actions": next_actions, "root_password": null}),
        )
    }

    fn create_ssh_key(&mut self, body: &Value) -> Answer {
        let (Some(name), Some(public_key)) = (body["name"].as_str(), body["public_key"].as_str())
        else {
            return invalid("name and public_key are required");
        };
        let Some(fingerprint) = md5_fingerprint(public_key) else {
            return invalid("invalid public_key");
        };
        let labels = match check_labels(&body["labels"]) {
            Ok(l) => l,
            Err(e) => return e,
        };
        if Self::name_taken(self.ssh_keys.values(), name) {
            return error(
                409,
                "uniqueness_error",
                "SSH key with the same name already exists",
            );
        }
        if self
            .ssh_keys
            .values()
            .any(|k| k["fingerprint"] == fingerprint.as_str())
        {
            return error(
                409,
                "uniqueness_error",
                "SSH key with the same fingerprint already exists",
            );
        }
        let id = self.id();
        let key = json!({"id": id, "name": name, "fingerprint": fingerprint, "public_key": public_key.trim(), "labels": labels, "created": now_text(self.now())});
        self.ssh_keys.insert(id, key.clone());
        (201, json!({"ssh_key": key}))
    }

    fn create_firewall(&mut self, body: &Value) -> Answer {
        let Some(name) = body["name"].as_str() else {
            return invalid("name is required");
        };
        let labels = match check_labels(&body["labels"]) {
            Ok(l) => l,
            Err(e) => return e,
        };
        if Self::name_taken(self.firewalls.values(), name) {
            return error(409, "uniqueness_error", "firewall name is already used");
        }
        let rules = match parse_rules(body) {
            Ok(r) => r,
            Err(e) => return e,
        };
        let id = self.id();
        let fw = json!({"id": id, "name": name, "labels": labels, "created": now_text(self.now()), "rules": rules, "applied_to": []});
        self.firewalls.insert(id, fw.clone());
        (201, json!({"firewall": fw, "actions": []}))
    }

    fn create_primary_ip(&mut self, body: &Value) -> Answer {
        let (Some(name), Some(ty)) = (body["name"].as_str(), body["type"].as_str()) else {
            return invalid("name and type are required");
        };
        if !["ipv4", "ipv6"].contains(&ty) {
            return invalid("type must be ipv4 or ipv6");
        }
        let loc = match body["location"]
            .as_str()
            .or_else(|| {
                body["datacenter"]
                    .as_str()
                    .and_then(|d| d.split('-').next())
            })
            .map(catalogue::location)
        {
            Some(Some(l)) => l,
            _ => return invalid("a known location is required"),
        };
        let labels = match check_labels(&body["labels"]) {
            Ok(l) => l,
            Err(e) => return e,
        };
        if Self::name_taken(self.primary_ips.values(), name) {
            return error(409, "uniqueness_error", "primary IP name is already used");
        }
        let id = self.id();
        let created = self.now();
        let addr = super::Addresses::from_serial(id);
        let ip = if ty == "ipv4" {
            addr.ipv4
        } else {
            format!("{}/64", addr.ipv6_net)
        };
        let p = json!({
            "id": id, "name": name, "labels": labels, "created": now_text(created), "ip": ip, "type": ty,
            "assignee_id": null, "assignee_type": "server", "auto_delete": body["auto_delete"].as_bool().unwrap_or(false),
            "blocked": false, "dns_ptr": [], "datacenter": catalogue::datacenter_json(loc), "location": catalogue::location_json(loc),
            "protection": {"delete": false},
        });
        self.primary_ips.insert(id, p.clone());
        self.bill_primary_ip(&p, created);
        (201, json!({"primary_ip": p}))
    }
}

/// Firewall rules from a request, as the API stores and shows them.
fn parse_rules(body: &Value) -> Result<Vec<Value>, Answer> {
    let mut rules = Vec::new();
    for r in body["rules"].as_array().into_iter().flatten() {
        let proto = r["protocol"].as_str().unwrap_or("");
        let direction = r["direction"].as_str().unwrap_or("");
        if !["tcp", "udp", "icmp", "esp", "gre"].contains(&proto)
            || !["in", "out"].contains(&direction)
        {
            return Err(invalid(format!("invalid firewall rule {r}")));
        }
        let port = r["port"].as_str();
        if matches!(proto, "tcp" | "udp") && !port.is_some_and(valid_port) {
            return Err(invalid(format!(
                "tcp and udp rules need a port or range: {r}"
            )));
        }
        rules.push(json!({
            "direction": direction, "protocol": proto, "port": port,
            "source_ips": r.get("source_ips").cloned().unwrap_or(json!([])),
            "destination_ips": r.get("destination_ips").cloned().unwrap_or(json!([])),
            "description": r.get("description").cloned().unwrap_or(Value::Null),
        }));
    }
    Ok(rules)
}

fn valid_port(p: &str) -> bool {
    let ok = |s: &str| s.parse::<u16>().is_ok_and(|n| n > 0);
    match p.split_once('-') {
        Some((a, b)) => ok(a) && ok(b) && a.parse::<u16>().ok() <= b.parse::<u16>().ok(),
        None => ok(p),
    }
}

/// Hetzner's SSH key fingerprint: MD5 of the key blob, hex pairs joined by `:`.
pub fn md5_fingerprint(public_key: &str) -> Option<String> {
    use base64::Engine;
    use md5::{Digest, Md5};
    let blob = public_key.split_whitespace().nth(1)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(blob)
        .ok()?;
    let digest = Md5::digest(&bytes);
    Some(
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":"),
    )
}
