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
//! - The chat (one Synapse with its PostgreSQL, for the whole event): sized
//!   by Element's "ESS Sizing" (Element Server Suite documentation, LTS
//!   23.10, ems-docs.element.io), per number of users. Homeserver plus its
//!   database, closed federation: 1-500 users 2+1 CPU and 2000 MiB + 4 GiB;
//!   501-2500 users 6+2 CPU and 5650 MiB + 12 GiB; 2501-10000 users 10+4
//!   CPU and 8150 MiB + 16 GiB. Open federation: 1-500 users 5+3 CPU and
//!   4500 MiB + 8 GiB; 501-2500 users 9+5 CPU and 8150 MiB + 24 GiB. Every
//!   registered attendee can log in, so users = attendees. See
//!   [`chat_server`].

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

/// The chat up to [`CHAT_SMALL_USERS`] without federation: ESS's 3 CPU and
/// about 6 GiB fit 4 vCPU and 8 GB.
pub const CHAT_SERVER_TYPE: &str = "cx33";
/// Above: ESS's 8 CPU and about 17.5 GiB (or, federated, already 8 CPU and
/// about 12.5 GiB for 500 users) fit 8 dedicated vCPU and 32 GB.
pub const CHAT_LARGE_SERVER_TYPE: &str = "ccx33";
/// ESS's first tier.
pub const CHAT_SMALL_USERS: u32 = 500;
/// ESS's second tier: beyond it (or beyond the first, federated) ESS asks
/// for more than the large type has (14 CPU), with Synapse's workers that
/// venue does not run.
pub const CHAT_LARGE_USERS: u32 = 2500;

/// A room's load on its backend, in that backend's units.
pub fn room_units(room: &Room) -> u64 {
    people_units(room.backend, u64::from(room.peak), room.webcams)
}

/// `people` in a room of `backend`, with or without webcams, in that
/// backend's units.
pub fn people_units(backend: Backend, people: u64, webcams: bool) -> u64 {
    match (backend, webcams) {
        (Backend::Bbb, false) => people * BBB_UNITS_LISTENER,
        (Backend::Bbb, true) => people * BBB_UNITS_WEBCAM_USER,
        (Backend::Jitsi, true) => people * JITSI_UNITS_WEBCAM,
        (Backend::Jitsi, false) => people * JITSI_UNITS_AUDIO,
    }
}

/// A live BigBlueButton meeting's load in units, from what getMeetings
/// counts: every participant as a listener, and as many of them as there
/// are webcam streams (`videoCount`) as webcam users, who weigh double.
pub fn bbb_live_units(participants: u64, video: u64) -> u64 {
    participants * BBB_UNITS_LISTENER
        + video.min(participants) * (BBB_UNITS_WEBCAM_USER - BBB_UNITS_LISTENER)
}

/// The chat server's type for `users` who may log in, with or without
/// federation, and a note when the source sizes it beyond the largest type
/// the plan rents.
pub fn chat_server(users: u32, federation: bool) -> (&'static str, Option<String>) {
    let (fits_small, fits_large) = if federation {
        (false, users <= CHAT_SMALL_USERS)
    } else {
        (users <= CHAT_SMALL_USERS, users <= CHAT_LARGE_USERS)
    };
    if fits_small {
        (CHAT_SERVER_TYPE, None)
    } else if fits_large {
        (CHAT_LARGE_SERVER_TYPE, None)
    } else {
        let tier = if federation {
            format!("more than {CHAT_SMALL_USERS} users of a federated homeserver")
        } else {
            format!("more than {CHAT_LARGE_USERS} users")
        };
        (
            CHAT_LARGE_SERVER_TYPE,
            Some(format!(
                "the chat has {users} possible users: for {tier} Element's sizing asks more than one {CHAT_LARGE_SERVER_TYPE} has (Synapse split into workers, which venue does not run); expect a slow chat at the peak"
            )),
        )
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
    fn a_live_webcam_user_weighs_what_a_planned_one_does() {
        let planned = |people, webcams| people_units(Backend::Bbb, people, webcams);
        assert_eq!(bbb_live_units(10, 0), planned(10, false));
        assert_eq!(bbb_live_units(10, 10), planned(10, true));
        // More streams than people (a second camera) count no more.
        assert_eq!(bbb_live_units(3, 7), planned(3, true));
        assert_eq!(bbb_live_units(10, 4), planned(6, false) + planned(4, true));
    }

    #[test]
    fn the_chat_grows_with_its_users_and_federation_at_esss_tiers() {
        assert_eq!(chat_server(0, false), (CHAT_SERVER_TYPE, None));
        assert_eq!(chat_server(500, false), (CHAT_SERVER_TYPE, None));
        assert_eq!(chat_server(501, false), (CHAT_LARGE_SERVER_TYPE, None));
        assert_eq!(chat_server(2500, false), (CHAT_LARGE_SERVER_TYPE, None));
        let (t, note) = chat_server(2501, false);
        assert_eq!(t, CHAT_LARGE_SERVER_TYPE);
        assert!(note
            .unwrap()
            .contains("2501 possible users: for more than 2500 users"));
        // Federation needs the large type from the first user.
        assert_eq!(chat_server(10, true), (CHAT_LARGE_SERVER_TYPE, None));
        assert_eq!(chat_server(500, true), (CHAT_LARGE_SERVER_TYPE, None));
        let (t, note) = chat_server(501, true);
        assert_eq!(t, CHAT_LARGE_SERVER_TYPE);
        assert!(note.unwrap().contains("federated"));
    }

    #[test]
    fn a_meeting_holds_what_the_cost_model_says() {
        assert_eq!(meeting_limit(Backend::Bbb), BBB_ADVISED_SESSION_MAX);
        assert_eq!(
            u64::from(meeting_limit(Backend::Jitsi)),
            JITSI_SERVER_UNITS / JITSI_UNITS_WEBCAM
        );
    }
}
