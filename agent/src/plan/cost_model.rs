//! How much server a room needs, per backend. Loads are integer "units" so
//! that sums are exact and more people can never round into fewer servers.
//!
//! Sources:
//! - BigBlueButton FAQ and install docs (docs.bigbluebutton.org/support/faq,
//!   "How many simultaneous users can BigBlueButton support?"): a server of
//!   the minimum spec (8 cores, 16 GB) carries about 200 simultaneous users;
//!   keep a single session at or below about 100 users. We plan 150 users per
//!   8-dedicated-core server to keep headroom. The FAQ names webcams as the
//!   main load; we count a user in a room with webcams as two listen-only
//!   users (our assumption, to calibrate with measurements).
//! - LPC 2020, the organisers' public account of running the conference
//!   online: seven large BigBlueButton servers for ~950 registered; a status
//!   snapshot showed 462 people on 6 servers; "don't go nuts with the server
//!   sizing". The LPC example plans 6 (hosts/lpc-2020).
//! - Jitsi: a hosting co-op ran a public Jitsi Meet for 1000 concurrent users
//!   and measured about 5% of a CPU core per participant. We plan 75% of the
//!   cores (videobridge headroom), and count a participant in a room without
//!   webcams as half (audio only forwards far fewer streams; our assumption).
//! - coturn and the portal are light: one small shared-core server each.

use conference::{Backend, Room};

/// Dedicated cores, for BigBlueButton's FreeSWITCH and media stack.
pub const BBB_SERVER_TYPE: &str = "ccx33";
pub const BBB_SERVER_CORES: u32 = 8;
/// Users per 8-core server, with headroom.
pub const BBB_USERS_PER_SERVER: u32 = 150;
/// BigBlueButton's advice for one session.
pub const BBB_ADVISED_SESSION_MAX: u32 = 100;
const BBB_UNITS_LISTENER: u64 = 2;
const BBB_UNITS_WEBCAM_USER: u64 = 4;
/// Capacity of one BigBlueButton server, in units.
pub const BBB_SERVER_UNITS: u64 = BBB_USERS_PER_SERVER as u64 * BBB_UNITS_LISTENER;

pub const JITSI_SERVER_TYPE: &str = "ccx33";
pub const JITSI_SERVER_CORES: u32 = 8;
/// 5% of a core per participant, 75% of cores usable: 15 participants per core.
pub const JITSI_PARTICIPANTS_PER_CORE: u64 = 15;
const JITSI_UNITS_WEBCAM: u64 = 2;
const JITSI_UNITS_AUDIO: u64 = 1;
pub const JITSI_SERVER_UNITS: u64 =
    JITSI_SERVER_CORES as u64 * JITSI_PARTICIPANTS_PER_CORE * JITSI_UNITS_WEBCAM;

/// The TURN server relays media for attendees behind strict firewalls.
pub const COTURN_SERVER_TYPE: &str = "cx23";
pub const PORTAL_SERVER_TYPE: &str = "cx23";
/// Above this many registered attendees the portal gets twice the cores.
pub const PORTAL_LARGE_ATTENDEES: u32 = 2000;
pub const PORTAL_LARGE_SERVER_TYPE: &str = "cx33";

/// A room's load on its backend, in that backend's units.
pub fn room_units(room: &Room) -> u64 {
    let people = u64::from(room.peak);
    match (room.backend, room.webcams) {
        (Backend::Bbb, false) => people * BBB_UNITS_LISTENER,
        (Backend::Bbb, true) => people * BBB_UNITS_WEBCAM_USER,
        (Backend::Jitsi, true) => people * JITSI_UNITS_WEBCAM,
        (Backend::Jitsi, false) => people * JITSI_UNITS_AUDIO,
    }
}

/// Capacity of a long-lived host with `cores` cores for `backend`, in units.
pub fn static_units(backend: Backend, cores: u32) -> u64 {
    match backend {
        Backend::Bbb => BBB_SERVER_UNITS * u64::from(cores) / u64::from(BBB_SERVER_CORES),
        Backend::Jitsi => u64::from(cores) * JITSI_PARTICIPANTS_PER_CORE * JITSI_UNITS_WEBCAM,
    }
}

pub fn server_units(backend: Backend) -> u64 {
    match backend {
        Backend::Bbb => BBB_SERVER_UNITS,
        Backend::Jitsi => JITSI_SERVER_UNITS,
    }
}

// ----- Rooms bigger than a meeting: a stage and a stream -----
//
// Sources and assumptions:
// - One meeting cannot span servers: BigBlueButton advises at most
//   BBB_ADVISED_SESSION_MAX per session (above), a Jitsi meeting lives on one
//   videobridge (no cascading here): one ccx33's worth of webcam participants.
//   Above that, a room is staged and streamed unless event.toml says
//   `audience = "interactive"`.
// - 2.5 Mbit/s per viewer: a 720p30 H.264 stream, inside the 1.5-4 Mbit/s
//   YouTube Live recommends for 720p30 (support.google.com/youtube/answer/2853702).
// - 1 Gbit/s per server link, used to 70%: our planning figure for one cloud
//   server (Hetzner publishes no per-server bandwidth figure for cloud
//   servers; to calibrate with the testbed's and a real event's measurements).

/// People on a stage when event.toml does not say: speakers and moderators.
pub const STAGE_DEFAULT_PEAK: u32 = 10;
/// A viewer's share of the stream, kbit/s.
pub const STREAM_BITRATE_KBIT: u64 = 2_500;
pub const SERVER_LINK_KBIT: u64 = 1_000_000;
pub const LINK_USE_PERCENT: u64 = 70;
/// The origin (RTMP ingest, HLS packaging) and the caching edges.
pub const STREAM_SERVER_TYPE: &str = "cx33";
pub const EDGE_SERVER_TYPE: &str = "cx33";

/// Viewers one server's link serves.
pub const fn viewers_per_server() -> u64 {
    SERVER_LINK_KBIT * LINK_USE_PERCENT / 100 / STREAM_BITRATE_KBIT
}

/// The most people one meeting of `backend` holds (conference's, which the
/// portal shares; the test below keeps it equal to this model's figures).
pub fn meeting_limit(backend: Backend) -> u32 {
    backend.meeting_limit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_meeting_holds_what_the_cost_model_says() {
        assert_eq!(meeting_limit(Backend::Bbb), BBB_ADVISED_SESSION_MAX);
        assert_eq!(
            u64::from(meeting_limit(Backend::Jitsi)),
            JITSI_SERVER_UNITS / JITSI_UNITS_WEBCAM
        );
    }
}
