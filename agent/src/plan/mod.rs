//! `venue plan`: how many servers of which kind, for which hours, at what
//! cost. Pure: the same event and prices always give the same plan.

pub mod cost_model;
pub mod hours;
pub mod measured;
pub mod prices;
pub mod report;
pub mod stream;

use anyhow::{anyhow, Result};
use conference::{Backend, Event, Role, Room};
use serde::Serialize;

use cost_model::*;
use hours::Window;
use prices::{Price, PriceTable};

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub event: String,
    pub servers: Vec<ServerGroup>,
    /// Rooms served as a stage and a stream, and what their audience costs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub streams: Option<stream::StreamPlan>,
    /// The servers' cost plus the streams' traffic beyond what they include.
    pub total_micro_eur: u64,
    pub warnings: Vec<String>,
    /// Each room's people: declared in event.toml, or measured by the
    /// autopilot in an earlier run (measured.json).
    pub peaks: Vec<measured::PeakUsed>,
    pub price_source: String,
    pub price_date: String,
}

/// Servers of one role, all alike.
#[derive(Debug, Clone, Serialize)]
pub struct ServerGroup {
    pub role: Role,
    pub server_type: String,
    pub location: String,
    pub count: u32,
    /// Billed hours per server.
    pub hours: u32,
    pub windows: Vec<Window>,
    pub price: Price,
    /// count × hours × hourly price.
    pub cost_micro_eur: u64,
}

/// One server to rent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedServer {
    /// `<event>-<role>-<n>`, n counting from 1.
    pub name: String,
    pub role: Role,
    pub server_type: String,
    pub location: String,
}

impl Plan {
    pub fn fleet(&self) -> Vec<PlannedServer> {
        self.servers
            .iter()
            .flat_map(|g| {
                (1..=g.count).map(move |n| PlannedServer {
                    name: format!("{}-{}-{n}", self.event, g.role),
                    role: g.role,
                    server_type: g.server_type.clone(),
                    location: g.location.clone(),
                })
            })
            .collect()
    }

    pub fn server_count(&self) -> u32 {
        self.servers.iter().map(|g| g.count).sum()
    }
}

/// Sizes and prices the venue for `event` as declared.
pub fn plan(event: &Event, prices: &PriceTable) -> Result<Plan> {
    plan_measured(event, prices, None)
}

/// Sizes and prices the venue for `event`, each room by its measured peak
/// where `measured` has a usable one (see [`measured::apply`]).
pub fn plan_measured(
    event: &Event,
    prices: &PriceTable,
    measured: Option<&measured::Measured>,
) -> Result<Plan> {
    let (event, peaks) = measured::apply(event, measured);
    let mut plan = plan_rooms(&event, prices)?;
    plan.peaks = peaks;
    Ok(plan)
}

fn plan_rooms(event: &Event, prices: &PriceTable) -> Result<Plan> {
    let mut warnings = Vec::new();
    let mut wanted: Vec<(Role, &str, u32, Vec<Window>)> = Vec::new();
    let media = hours::media_windows(event);
    let always = hours::portal_windows(event);

    // A streamed room meets on its stage: that is what the media servers carry.
    let staged = stream::staged(event);
    warnings.extend(staged.notes.iter().cloned());
    let (bbb, bbb_warnings) = media_servers(event, &staged.rooms, Backend::Bbb);
    warnings.extend(bbb_warnings);
    wanted.push((Role::Bbb, BBB_SERVER_TYPE, bbb, media.clone()));

    let (bridges, jitsi_warnings) = media_servers(event, &staged.rooms, Backend::Jitsi);
    warnings.extend(jitsi_warnings);
    // The first bridge is the main Jitsi host, unless a long-lived host is.
    let (main, extra) = if bridges == 0 || has_static(event, Role::Jitsi) {
        (0, bridges)
    } else {
        (1, bridges - 1)
    };
    wanted.push((Role::Jitsi, JITSI_SERVER_TYPE, main, media.clone()));
    wanted.push((Role::Jvb, JITSI_SERVER_TYPE, extra, media.clone()));

    let streams = stream::plan(event, &staged, &media, prices)?;
    if let Some(sp) = &streams {
        // No origin for streams served elsewhere only.
        let origin = u32::from(sp.viewers > 0 && !has_static(event, Role::Stream));
        wanted.push((Role::Stream, STREAM_SERVER_TYPE, origin, media.clone()));
        wanted.push((Role::Edge, EDGE_SERVER_TYPE, sp.edges, media));
        warnings.extend(sp.warnings.iter().cloned());
    }

    let portal_type = if event.attendees > PORTAL_LARGE_ATTENDEES {
        PORTAL_LARGE_SERVER_TYPE
    } else {
        PORTAL_SERVER_TYPE
    };
    wanted.push((
        Role::Coturn,
        COTURN_SERVER_TYPE,
        u32::from(!has_static(event, Role::Coturn)),
        always.clone(),
    ));
    wanted.push((
        Role::Portal,
        portal_type,
        u32::from(!has_static(event, Role::Portal)),
        always.clone(),
    ));
    // The event's one homeserver, up as long as the portal (its login).
    if let Some(hs) = event.homeserver {
        let (chat_type, note) = chat_server(event.attendees, hs.federation);
        warnings.extend(note);
        wanted.push((
            Role::Chat,
            chat_type,
            u32::from(!has_static(event, Role::Chat)),
            always,
        ));
    }

    let total_peak: u64 = event.rooms.iter().map(|r| u64::from(r.peak)).sum();
    if total_peak > u64::from(event.attendees) {
        warnings.push(format!(
            "the rooms' peaks add up to {total_peak}, more than the {} registered attendees: the plan is sized for the rooms",
            event.attendees
        ));
    }

    let location = &event.cloud.location;
    let mut servers = Vec::new();
    for (role, server_type, count, windows) in wanted {
        if count == 0 {
            continue;
        }
        let price = prices.get(server_type, location).ok_or_else(|| {
            anyhow!(
                "no price for server type {server_type} at {location} in the {} price table of {}",
                prices.source,
                prices.date
            )
        })?;
        let hours: u32 = windows.iter().map(Window::started_hours).sum();
        let per_server = u64::from(hours) * price.hourly_micro_eur;
        if per_server > price.monthly_micro_eur {
            warnings.push(format!(
                "{role} servers exist {hours} hours: Hetzner caps each at its monthly price, so the real bill is lower than planned"
            ));
        }
        servers.push(ServerGroup {
            role,
            server_type: server_type.to_owned(),
            location: location.clone(),
            count,
            hours,
            windows,
            price,
            cost_micro_eur: u64::from(count) * per_server,
        });
    }
    let traffic = streams.as_ref().map_or(0, |s| s.traffic_micro_eur);
    Ok(Plan {
        event: event.id.clone(),
        total_micro_eur: servers.iter().map(|g| g.cost_micro_eur).sum::<u64>() + traffic,
        servers,
        streams,
        warnings,
        peaks: Vec::new(),
        price_source: prices.source.clone(),
        price_date: prices.date.clone(),
    })
}

fn has_static(event: &Event, role: Role) -> bool {
    event.static_hosts.iter().any(|h| h.roles.contains(&role))
}

/// Cloud servers a backend needs: enough for the sum of its rooms' loads
/// beyond what long-lived hosts carry, and one server for each room too big
/// to share a server (a meeting cannot span servers). Both terms only grow
/// with load, so more people never means fewer servers.
fn media_servers(event: &Event, all_rooms: &[Room], backend: Backend) -> (u32, Vec<String>) {
    let rooms: Vec<_> = all_rooms.iter().filter(|r| r.backend == backend).collect();
    let mut warnings = Vec::new();
    if rooms.is_empty() {
        return (0, warnings);
    }
    let roles: &[Role] = match backend {
        Backend::Bbb => &[Role::Bbb],
        Backend::Jitsi => &[Role::Jitsi, Role::Jvb],
    };
    let statics: Vec<u64> = event
        .static_hosts
        .iter()
        .filter(|h| h.roles.iter().any(|r| roles.contains(r)))
        .map(|h| static_units(backend, h.cores))
        .collect();
    let capacity = server_units(backend);
    let load: u64 = rooms.iter().map(|r| room_units(r)).sum();
    let remaining = load.saturating_sub(statics.iter().sum());
    let by_load = remaining.div_ceil(capacity);
    let big_rooms = rooms
        .iter()
        .filter(|r| room_units(r) * 2 > capacity)
        .count() as u64;
    let big_statics = statics.iter().filter(|u| **u * 2 > capacity).count() as u64;
    let mut servers = by_load.max(big_rooms.saturating_sub(big_statics));
    if statics.is_empty() {
        // Rooms exist even when nobody is expected: they need a server to live on.
        servers = servers.max(1);
    }

    for room in &rooms {
        if backend == Backend::Bbb && room.peak > BBB_ADVISED_SESSION_MAX {
            warnings.push(format!(
                "room `{}` expects {} people in one BigBlueButton session; BigBlueButton advises at most {BBB_ADVISED_SESSION_MAX}: stream it to the rest (audience = \"stream\"), or split it",
                room.name, room.peak
            ));
        }
        if room_units(room) > capacity {
            warnings.push(format!(
                "room `{}` ({} people{}) is more than one {} server carries; a meeting cannot span servers",
                room.name,
                room.peak,
                if room.webcams { ", webcams on" } else { "" },
                match backend {
                    Backend::Bbb => "BigBlueButton",
                    Backend::Jitsi => "Jitsi videobridge",
                }
            ));
        }
    }
    (u32::try_from(servers).unwrap_or(u32::MAX), warnings)
}

#[cfg(test)]
mod tests;

/// A talk of the unit tests' events: `room` from `start` to `end`.
#[cfg(test)]
pub(crate) fn test_session(
    room: &str,
    start: chrono::DateTime<chrono::Utc>,
    end: chrono::DateTime<chrono::Utc>,
) -> conference::Session {
    conference::Session {
        guid: format!("{room}{start}"),
        title: "Talk".into(),
        room: room.into(),
        start,
        end,
        track: None,
        kind: None,
        persons: vec![],
        summary: None,
        url: None,
    }
}
