//! The install phase's summary table.

use super::HostReport;
use crate::model::table::render;

pub fn table(reports: &[HostReport]) -> String {
    let mut rows = vec![
        ["HOST", "INSTALL", "ADDRESS", "SECONDS", "PHASES", "MESSAGE"]
            .map(String::from)
            .to_vec(),
    ];
    for r in reports {
        rows.push(vec![
            r.host.clone(),
            serde_json::to_value(r.install)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            r.address.clone(),
            format!("{:.1}", r.seconds),
            r.phases
                .iter()
                .map(|(p, s)| format!("{p} {s:.1}"))
                .collect::<Vec<_>>()
                .join(", "),
            r.message.clone(),
        ]);
    }
    render(&rows)
}
