//! venue's labels. Everything venue creates carries `venue/event=<id>`;
//! servers and their primary IPs also `venue/role=<role>`. The cloud's labels
//! are the truth about what an event holds: `status` and `down` find
//! resources by them, and `down` deletes nothing without this event's label.

use std::collections::BTreeMap;

pub const EVENT: &str = "venue/event";
pub const ROLE: &str = "venue/role";

pub type Labels = BTreeMap<String, String>;

/// The label selector for everything of one event.
pub fn selector(event: &str) -> String {
    format!("{EVENT}={event}")
}

pub fn event(event: &str) -> Labels {
    Labels::from([(EVENT.to_owned(), event.to_owned())])
}

pub fn role(event: &str, role: &str) -> Labels {
    Labels::from([
        (EVENT.to_owned(), event.to_owned()),
        (ROLE.to_owned(), role.to_owned()),
    ])
}

/// Whether a resource belongs to `event`: checked again on our side before
/// anything is deleted, whatever the API's filter said.
pub fn belongs(labels: &Labels, event: &str) -> bool {
    labels.get(EVENT).map(String::as_str) == Some(event)
}

/// Hetzner's label values: at most 63 of `[a-zA-Z0-9._-]`, alphanumeric at
/// both ends. An event id that is no valid value cannot label anything.
pub fn check_value(v: &str) -> Result<(), String> {
    let ok_chars = v
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    let ok_ends = v.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && v.chars().last().is_some_and(|c| c.is_ascii_alphanumeric());
    if v.len() <= 63 && ok_chars && ok_ends {
        Ok(())
    } else {
        Err(format!("{v:?} cannot be a Hetzner label value (at most 63 letters, digits, '.', '_', '-', alphanumeric at both ends)"))
    }
}
