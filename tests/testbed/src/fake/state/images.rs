//! Images: the catalogue's public system images and the snapshots made with
//! `POST /servers/{id}/actions/create_image` (`/images`, `/images/{id}`), in
//! the spec's shapes. A snapshot is `creating` until its action ends, then
//! `available` with its `image_size` (what Hetzner bills per GB-month); a
//! failed action leaves no image. Servers can be created from an available
//! snapshot of their type's architecture. Deleting a snapshot that servers
//! were created from is allowed (they keep running, their `image` turns null).

use serde_json::{json, Value};

use super::{
    check_labels, error, invalid, list, not_found, now_text, q, Answer, Effect, Query, State,
};
use crate::catalogue;

/// Image size when the server hook does not measure one (doc addresses): a
/// small installed system, compressed, in GB.
const ESTIMATED_GB: f64 = 1.2;

impl State {
    /// Every snapshot image, as served.
    pub fn images(&self) -> Vec<Value> {
        self.images.values().cloned().collect()
    }

    fn all_images(&self) -> Vec<Value> {
        catalogue::IMAGES
            .iter()
            .map(catalogue::image_json)
            .chain(self.images.values().cloned())
            .collect()
    }

    fn image(&self, id: u64) -> Option<Value> {
        catalogue::IMAGES
            .iter()
            .find(|i| i.0 == id)
            .map(catalogue::image_json)
            .or_else(|| self.images.get(&id).cloned())
    }

    /// Whether a create_image action of this server still runs (the server
    /// is locked meanwhile, as on Hetzner).
    pub(super) fn imaging(&self, server: u64) -> bool {
        self.actions.values().any(|a| {
            a.json["command"] == "create_image"
                && a.json["status"] == "running"
                && a.json["resources"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|r| r["type"] == "server" && r["id"] == json!(server))
        })
    }

    /// The image a new server boots: by id (system or snapshot) or by name
    /// (system images, in the type's architecture). Also the snapshot's id.
    pub(super) fn image_for_server(
        &self,
        reference: &str,
        architecture: &str,
    ) -> Result<(Value, Option<u64>), Answer> {
        let image = match reference.parse::<u64>() {
            Ok(id) => self.image(id),
            Err(_) => catalogue::IMAGES
                .iter()
                .find(|i| i.1 == reference && i.5 == architecture)
                .map(catalogue::image_json),
        };
        let Some(image) = image else {
            return Err(invalid(format!("image {reference:?} not found")));
        };
        if image["status"] != "available" {
            return Err(invalid(format!(
                "image {reference} is {}, not available",
                image["status"].as_str().unwrap_or("?")
            )));
        }
        if image["architecture"] != architecture {
            return Err(invalid(format!(
                "image {reference} is for {} servers, the server type is {architecture}",
                image["architecture"].as_str().unwrap_or("?")
            )));
        }
        let snapshot = (image["type"] != "system")
            .then(|| image["id"].as_u64())
            .flatten();
        Ok((image, snapshot))
    }

    pub(super) fn answer_images(
        &mut self,
        method: &str,
        seg: &[&str],
        query: &Query,
        body: &Value,
    ) -> Answer {
        let id = seg.get(1).and_then(|s| s.parse::<u64>().ok());
        match (method, seg.len()) {
            ("GET", 1) => self.list_images(query),
            ("GET", 2) => match id.and_then(|i| self.image(i)) {
                Some(i) => (200, json!({"image": i})),
                None => not_found("image"),
            },
            ("PUT", 2) => self.update_image(id, body),
            ("DELETE", 2) => self.delete_image(id),
            _ => error(
                404,
                "not_found",
                format!("no route for {method} /v1/{}", seg.join("/")),
            ),
        }
    }

    /// `type` and `status` may repeat (any of them matches); `architecture`,
    /// `name` and `label_selector` narrow; `sort` orders (first key wins).
    fn list_images(&self, query: &Query) -> Answer {
        let many = |key: &str| -> Vec<String> {
            query
                .iter()
                .filter(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
                .collect()
        };
        let (types, statuses) = (many("type"), many("status"));
        let arch = q(query, "architecture").map(str::to_owned);
        if arch.as_deref().is_some_and(|a| a != "x86" && a != "arm") {
            return invalid("architecture must be x86 or arm");
        }
        let mut items = self.all_images();
        if let Some(sort) = q(query, "sort") {
            let (field, desc) = match sort.split_once(':') {
                Some((f, d)) => (f, d == "desc"),
                None => (sort, false),
            };
            if !["id", "name", "created"].contains(&field) {
                return invalid(format!("cannot sort by {sort:?}"));
            }
            // RFC 3339 times in one offset sort as text; ids as numbers.
            items.sort_by(|a, b| {
                let o = match field {
                    "id" => a["id"].as_u64().cmp(&b["id"].as_u64()),
                    f => a[f].as_str().cmp(&b[f].as_str()),
                };
                if desc {
                    o.reverse()
                } else {
                    o
                }
            });
        }
        list(items.into_iter(), query, "images", move |v| {
            (types.is_empty() || types.iter().any(|t| v["type"] == t.as_str()))
                && (statuses.is_empty() || statuses.iter().any(|s| v["status"] == s.as_str()))
                && arch.as_deref().is_none_or(|a| v["architecture"] == a)
        })
    }

    fn update_image(&mut self, id: Option<u64>, body: &Value) -> Answer {
        let Some(id) = id.filter(|i| self.image(*i).is_some()) else {
            return not_found("image");
        };
        if !self.images.contains_key(&id) {
            return error(403, "forbidden", "system images cannot be changed");
        }
        let labels = match body.get("labels").map(check_labels).transpose() {
            Ok(l) => l,
            Err(e) => return e,
        };
        match body.get("type").and_then(Value::as_str) {
            None | Some("snapshot") => {}
            Some(t) => return invalid(format!("an image can only become a snapshot, not {t:?}")),
        }
        let image = self.images.get_mut(&id).expect("checked");
        if let Some(l) = labels {
            image["labels"] = l;
        }
        if let Some(d) = body.get("description").and_then(Value::as_str) {
            image["description"] = json!(d);
        }
        if body.get("type").is_some() {
            image["type"] = json!("snapshot");
            image["bound_to"] = Value::Null;
        }
        (200, json!({"image": image}))
    }

    fn delete_image(&mut self, id: Option<u64>) -> Answer {
        let Some(id) = id.filter(|i| self.image(*i).is_some()) else {
            return not_found("image");
        };
        let Some(image) = self.images.get(&id) else {
            return error(
                403,
                "forbidden",
                "only snapshot and backup images can be deleted",
            );
        };
        if image["status"] == "creating" {
            return error(423, "locked", "the image is still being created");
        }
        if let Some(image) = self.images.remove(&id) {
            let now = self.now();
            self.billed_until(&image, now);
        }
        for s in self.servers.values_mut() {
            if s["image"]["id"] == json!(id) {
                s["image"] = Value::Null;
            }
        }
        self.hook.image_deleted(id);
        (204, Value::Null)
    }

    /// `POST /servers/{id}/actions/create_image`: the disk is copied now (the
    /// hook), the image is `creating` until the action ends.
    pub(super) fn create_image(&mut self, server: u64, body: &Value) -> Answer {
        let Some(s) = self.servers.get(&server).cloned() else {
            return not_found("server");
        };
        let ty = body["type"].as_str().unwrap_or("snapshot");
        match ty {
            "snapshot" => {}
            // Backups need the server's backup option, which the fake never enables.
            "backup" => return invalid("backups are not enabled for this server"),
            other => return invalid(format!("unknown image type {other:?}")),
        }
        let labels = match check_labels(&body["labels"]) {
            Ok(l) => l,
            Err(e) => return e,
        };
        let busy = [
            "initializing",
            "starting",
            "stopping",
            "deleting",
            "migrating",
        ];
        if busy.contains(&s["status"].as_str().unwrap_or("")) || self.imaging(server) {
            return error(423, "locked", "server is locked by a running action");
        }
        let id = self.id();
        let name = s["name"].as_str().unwrap_or("").to_owned();
        let bytes = match self.hook.snapshot(&name, id) {
            Ok(b) => b,
            Err(e) => return error(503, "resource_unavailable", e),
        };
        let gb = bytes
            .map(|b| ((b as f64 / 1e9) * 100.0).ceil().max(1.0) / 100.0)
            .unwrap_or(ESTIMATED_GB);
        let created = self.now();
        let description = body["description"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("{name}-{}", created.format("%Y%m%d%H%M%S")));
        let source = &s["image"];
        let image = json!({
            "id": id, "type": "snapshot", "status": "creating", "name": null, "description": description,
            "image_size": null, "disk_size": s["primary_disk_size"], "created": now_text(created),
            "created_from": {"id": server, "name": name}, "bound_to": null,
            "os_flavor": source["os_flavor"].as_str().unwrap_or("unknown"),
            "os_version": source["os_version"], "rapid_deploy": false, "protection": {"delete": false},
            "deprecated": null, "deleted": null, "labels": labels,
            "architecture": s["server_type"]["architecture"],
        });
        self.images.insert(id, image.clone());
        self.bill_snapshot(&image, created);
        let action = self.action(
            "create_image",
            &[(server, "server"), (id, "image")],
            Effect::ImageReady(id, gb),
        );
        (201, json!({"image": image, "action": action}))
    }

    pub(super) fn image_ready(&mut self, id: u64, gb: f64) {
        if let Some(i) = self.images.get_mut(&id) {
            i["status"] = json!("available");
            i["image_size"] = json!(gb);
        }
        self.snapshot_size(id, gb);
    }

    /// A failed create_image leaves no image behind.
    pub(super) fn image_failed(&mut self, id: u64) {
        if self.images.remove(&id).is_some() {
            self.unbill(id);
            self.hook.image_deleted(id);
        }
    }
}
