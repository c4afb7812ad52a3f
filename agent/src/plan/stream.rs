//! Rooms bigger than one meeting: speakers on a stage (a normal BBB or Jitsi
//! room, which the media servers carry) and the audience on a stream, served
//! by the venue's origin and, when one server's link is not enough, caching
//! edges. The arithmetic is in the plan's `--json`, so an organiser can check
//! it: viewers × bitrate against a server's link, and the traffic of every
//! streamed hour against what the servers include.

use anyhow::{anyhow, Result};
use conference::{Event, Room};
use serde::Serialize;

use super::cost_model::*;
use super::hours::Window;
use super::prices::PriceTable;

/// The event's rooms as the media servers see them: a streamed room by its stage.
pub struct Staged {
    pub rooms: Vec<Room>,
    /// One per streamed room: (the room as written, people on its stage, automatic?).
    pub streamed: Vec<(Room, u32, bool)>,
    pub notes: Vec<String>,
}

/// Decides each room's audience: as event.toml says, else a stream above what
/// one meeting of its backend holds (with a note saying so).
pub fn staged(event: &Event) -> Staged {
    let mut rooms = Vec::new();
    let mut streamed = Vec::new();
    let mut notes = Vec::new();
    for room in &event.rooms {
        let limit = meeting_limit(room.backend);
        let stream = room.streamed();
        let automatic = stream && room.audience.is_none();
        if !stream {
            rooms.push(room.clone());
            continue;
        }
        let stage = room.stage.unwrap_or(STAGE_DEFAULT_PEAK).min(room.peak);
        if automatic {
            notes.push(format!(
                "room `{}` expects {} people, more than one meeting holds (~{limit}): planned as a stage of {stage} and a stream for the rest (say `audience = \"interactive\"` to keep one meeting)",
                room.name, room.peak
            ));
        }
        // Speakers are on camera.
        rooms.push(Room {
            peak: stage,
            webcams: true,
            ..room.clone()
        });
        streamed.push((room.clone(), stage, automatic));
    }
    Staged {
        rooms,
        streamed,
        notes,
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StreamPlan {
    pub bitrate_kbit: u64,
    /// Viewers one server's link serves (link × use ÷ bitrate).
    pub viewers_per_server: u64,
    pub rooms: Vec<StreamRoom>,
    /// Viewers of the venue's own streams at once (all rooms at their peaks).
    pub viewers: u64,
    pub bandwidth_mbit: u64,
    /// Edges in front of the origin; none when the origin's link suffices.
    pub edges: u32,
    /// Outgoing bytes of every streamed hour.
    pub traffic_bytes: u64,
    /// What the stream servers include for the hours they exist.
    pub included_bytes: u64,
    /// Started TB beyond that, and their price.
    pub overage_tb: u64,
    pub traffic_micro_eur: u64,
    #[serde(skip)]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StreamRoom {
    pub room: String,
    pub peak: u32,
    pub stage: u32,
    pub viewers: u32,
    /// Decided by the plan (above a meeting's size), not by event.toml.
    pub automatic: bool,
    /// "venue", or the external URL that serves it (no venue traffic).
    pub served_by: String,
    /// Hours of sessions in the room (from the schedule; else the opening hours).
    pub hours: f64,
    pub traffic_bytes: u64,
}

const TB: u64 = 1 << 40;

/// The stream servers and traffic for `staged`'s streamed rooms; None when
/// no room is streamed by the venue or elsewhere.
pub fn plan(
    event: &Event,
    staged: &Staged,
    media: &[Window],
    prices: &PriceTable,
) -> Result<Option<StreamPlan>> {
    if staged.streamed.is_empty() {
        return Ok(None);
    }
    let per_server = viewers_per_server();
    // Viewers watch while the event is open (not the servers' warm-up and grace).
    let open_seconds: i64 = event
        .days
        .iter()
        .map(|d| (d.close - d.open).num_seconds())
        .sum();
    let mut rooms = Vec::new();
    for (room, stage, automatic) in &staged.streamed {
        let viewers = room.peak - stage;
        let sessions: i64 = event
            .sessions
            .iter()
            .filter(|s| s.room == room.name)
            .map(|s| (s.end - s.start).num_seconds())
            .sum();
        let seconds = if sessions > 0 { sessions } else { open_seconds }.max(0);
        let external = room.stream.clone();
        let traffic_bytes = if external.is_some() {
            0
        } else {
            u64::from(viewers) * STREAM_BITRATE_KBIT * 1000 / 8 * seconds as u64
        };
        rooms.push(StreamRoom {
            room: room.name.clone(),
            peak: room.peak,
            stage: *stage,
            viewers,
            automatic: *automatic,
            served_by: external.unwrap_or_else(|| "venue".into()),
            hours: seconds as f64 / 3600.0,
            traffic_bytes,
        });
    }
    let viewers: u64 = rooms
        .iter()
        .filter(|r| r.served_by == "venue")
        .map(|r| u64::from(r.viewers))
        .sum();
    // The origin serves viewers itself while its link suffices; beyond, it
    // serves only edges, and the edges serve everyone.
    let edges = if viewers <= per_server {
        0
    } else {
        u32::try_from(viewers.div_ceil(per_server)).unwrap_or(u32::MAX)
    };
    let traffic_bytes: u64 = rooms.iter().map(|r| r.traffic_bytes).sum();

    // Included traffic: each stream server's monthly allowance, for the share
    // of a month (730 hours) it exists (our reading of Hetzner's billing of
    // servers by the hour; the plan says so).
    let location = &event.cloud.location;
    let hours: u64 = media.iter().map(|w| u64::from(w.started_hours())).sum();
    let mut warnings = Vec::new();
    let origins = u64::from(viewers > 0);
    let servers = [
        (STREAM_SERVER_TYPE, origins),
        (EDGE_SERVER_TYPE, u64::from(edges)),
    ];
    let mut included_bytes = 0u64;
    let mut per_tb = None;
    for (server_type, count) in servers {
        match prices.traffic(server_type, location) {
            Some(t) => {
                included_bytes += count * (t.included_bytes_per_month / 730 * hours.min(730));
                per_tb = Some(per_tb.unwrap_or(0).max(t.per_tb_micro_eur));
            }
            None if count > 0 && traffic_bytes > 0 => warnings.push(format!(
                "no traffic price for {server_type} at {location} in the {} price table: the streams' traffic is not priced (set HCLOUD_TOKEN for live prices)",
                prices.source
            )),
            None => {}
        }
    }
    let overage_tb = traffic_bytes.saturating_sub(included_bytes).div_ceil(TB);
    let traffic_micro_eur = match per_tb {
        Some(p) => overage_tb
            .checked_mul(p)
            .ok_or_else(|| anyhow!("traffic cost overflows"))?,
        None => 0,
    };
    if overage_tb > 0 {
        warnings.push(format!(
            "the streams send {:.1} TB, {overage_tb} TB more than the stream servers include",
            traffic_bytes as f64 / TB as f64
        ));
    }
    Ok(Some(StreamPlan {
        bitrate_kbit: STREAM_BITRATE_KBIT,
        viewers_per_server: per_server,
        rooms,
        viewers,
        bandwidth_mbit: viewers * STREAM_BITRATE_KBIT / 1000,
        edges,
        traffic_bytes,
        included_bytes,
        overage_tb,
        traffic_micro_eur,
        warnings,
    }))
}
