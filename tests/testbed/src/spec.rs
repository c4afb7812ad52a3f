//! Checks requests and answers against the Hetzner Cloud OpenAPI document
//! (reference/hcloud-openapi.json in the shared folder), so that the fake
//! and the agent speak the published API and no private dialect.
//!
//! OpenAPI 3.0 schemas are JSON Schema with differences; before compiling we
//! turn `nullable: true` into a union with null, and close every object that
//! lists its properties (`unevaluatedProperties: false`), so that a field the
//! spec does not know is an error too.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use crate::fake::Exchange;

pub struct Spec {
    doc: Value,
    components: Value,
    cache: HashMap<String, jsonschema::Validator>,
}

/// The spec's default place: `shared/reference/` beside the repository.
pub fn default_path() -> PathBuf {
    if let Ok(p) = std::env::var("HCLOUD_OPENAPI") {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/reference/hcloud-openapi.json")
}

fn convert(v: &Value) -> Value {
    match v {
        Value::Array(a) => Value::Array(a.iter().map(convert).collect()),
        Value::Object(m) => {
            let mut out: Map<String, Value> = m
                .iter()
                .filter(|(k, _)| !matches!(k.as_str(), "nullable" | "example" | "examples"))
                .map(|(k, v)| (k.clone(), convert(v)))
                .collect();
            if let Some(Value::Object(props)) = m.get("properties") {
                // `properties` holds names, not schemas' keywords: convert each value only.
                out.insert(
                    "properties".into(),
                    Value::Object(props.iter().map(|(k, v)| (k.clone(), convert(v))).collect()),
                );
                if !m.contains_key("additionalProperties") {
                    out.insert("unevaluatedProperties".into(), json!(false));
                }
            }
            if m.get("nullable") == Some(&json!(true)) {
                if let Some(Value::String(t)) = out.get("type").cloned() {
                    out.insert("type".into(), json!([t, "null"]));
                    if let Some(Value::Array(e)) = out.get_mut("enum") {
                        e.push(Value::Null);
                    }
                } else {
                    return json!({"anyOf": [Value::Object(out), {"type": "null"}]});
                }
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

impl Spec {
    pub fn load(path: &Path) -> anyhow::Result<Spec> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading the OpenAPI spec {}: {e}", path.display()))?;
        let doc: Value = serde_json::from_str(&text)?;
        let components = convert(&doc["components"]);
        Ok(Spec {
            doc,
            components,
            cache: HashMap::new(),
        })
    }

    /// The spec path template for a concrete path (`/servers/7` → `/servers/{id}`).
    pub fn template(&self, path: &str) -> Option<String> {
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        let mut best: Option<(usize, &String)> = None;
        for t in self.doc["paths"].as_object()?.keys() {
            let ts: Vec<&str> = t.trim_matches('/').split('/').collect();
            if ts.len() != segs.len() {
                continue;
            }
            let fits = ts
                .iter()
                .zip(&segs)
                .all(|(a, b)| a == b || (a.starts_with('{') && a.ends_with('}')));
            let literal = ts.iter().filter(|a| !a.starts_with('{')).count();
            if fits && best.is_none_or(|(n, _)| literal > n) {
                best = Some((literal, t));
            }
        }
        best.map(|(_, t)| t.clone())
    }

    fn validator(&mut self, key: String, schema: &Value) -> anyhow::Result<&jsonschema::Validator> {
        if !self.cache.contains_key(&key) {
            let mut root = convert(schema);
            if let Value::Object(m) = &mut root {
                m.insert("components".into(), self.components.clone());
                m.insert(
                    "$schema".into(),
                    json!("https://json-schema.org/draft/2020-12/schema"),
                );
            }
            let v = jsonschema::options()
                .build(&root)
                .map_err(|e| anyhow::anyhow!("compiling the schema of {key}: {e}"))?;
            self.cache.insert(key.clone(), v);
        }
        Ok(&self.cache[&key])
    }

    fn check(&mut self, key: String, schema: &Value, instance: &Value) -> Result<(), String> {
        let v = self
            .validator(key.clone(), schema)
            .map_err(|e| e.to_string())?;
        let errors: Vec<String> = v
            .iter_errors(instance)
            .take(5)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!("{key}: {}", errors.join("; ")))
        }
    }

    /// The exchanges of `xs` that break the spec, each described; empty when
    /// all fit. A test asserts it is empty, with this list as its message.
    pub fn violations(&mut self, xs: &[Exchange]) -> Vec<String> {
        xs.iter()
            .filter_map(|x| self.check_exchange(x).err())
            .collect()
    }

    /// Checks one exchange: the path and method exist, the request body fits
    /// the operation's request schema, and the answer fits the schema of its
    /// status (exact code, else `4xx`/`5xx`). Dropped answers are skipped.
    pub fn check_exchange(&mut self, x: &Exchange) -> Result<(), String> {
        let template = self
            .template(&x.path)
            .ok_or_else(|| format!("{} {}: no such path in the spec", x.method, x.path))?;
        let method = x.method.to_lowercase();
        let op = self.doc["paths"][&template][&method].clone();
        if op.is_null() {
            return Err(format!(
                "{} {template}: no such operation in the spec",
                x.method
            ));
        }
        for (k, _) in &x.query {
            let known = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| p["in"] == "query" && p["name"] == k.as_str());
            if !known {
                return Err(format!(
                    "{} {template}: query parameter {k:?} is not in the spec",
                    x.method
                ));
            }
        }
        if let Some(body) = &x.request {
            let schema = &op["requestBody"]["content"]["application/json"]["schema"];
            if schema.is_null() {
                return Err(format!(
                    "{} {template}: the spec takes no request body",
                    x.method
                ));
            }
            self.check(
                format!("{} {template} request", x.method),
                &schema.clone(),
                body,
            )?;
        }
        if x.status == 0 {
            return Ok(());
        }
        let code = x.status.to_string();
        let class = format!("{}xx", x.status / 100);
        let resp = [code.as_str(), class.as_str(), "default"]
            .iter()
            .map(|c| op["responses"][*c].clone())
            .find(|r| !r.is_null());
        let Some(resp) = resp else {
            return Err(format!(
                "{} {template}: status {code} is not in the spec",
                x.method
            ));
        };
        let schema = resp["content"]["application/json"]["schema"].clone();
        match (&x.response, schema.is_null()) {
            (None, true) => Ok(()),
            (Some(_), true) => Err(format!(
                "{} {template} {code}: the spec has no body here",
                x.method
            )),
            (None, false) => Err(format!("{} {template} {code}: body missing", x.method)),
            (Some(body), false) => {
                self.check(format!("{} {template} {code}", x.method), &schema, body)
            }
        }
    }
}
