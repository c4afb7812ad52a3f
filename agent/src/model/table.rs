//! Plain text tables for humans, as every verb prints them.

/// Left-aligned columns, two spaces apart.
pub fn render(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, s)| format!("{s:<w$}", w = widths[i]))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_hosts_join_the_fleet_once_per_role() {
        let src = r#"
id = "ev"
name = "Ev"
timezone = "UTC"
domain = "ev.example.org"
attendees = 10
[cloud]
location = "fsn1"
image = "ubuntu-24.04"
[[day]]
date = "2026-05-01"
open = "09:00"
close = "17:00"
[[room]]
name = "Main"
kind = "session"
peak = 10
[[static_host]]
name = "coop-jitsi"
address = "192.0.2.10"
host_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGnUX4q4Re1CvIRm1C2ZSXTMeJkyVXv8zGu8w1DU2U2W"
roles = ["jitsi", "coturn"]
cores = 8
"#;
        let event = Event::parse(std::path::Path::new("event.toml"), src).unwrap();
        let fleet = build(&event, &[], &[]);
        assert_eq!(fleet.domain, "ev.example.org");
        let roles: Vec<(&str, &str, bool)> = fleet
            .servers
            .iter()
            .map(|s| (s.name.as_str(), s.role.as_str(), s.is_static))
            .collect();
        assert_eq!(
            roles,
            vec![
                ("coop-jitsi", "jitsi", true),
                ("coop-jitsi", "coturn", true)
            ]
        );
        let json = serde_json::to_value(&fleet).unwrap();
        assert_eq!(json["servers"][0]["static"], true);
        assert_eq!(json["servers"][0]["ipv4"], "192.0.2.10");
    }
}
