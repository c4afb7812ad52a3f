//! The event model of venue and the protocols of the conference services it
//! runs: what both the `venue` agent and `venue-portal` need to agree on.

pub mod clock;
pub mod error;
pub mod event;
pub mod protocol;
pub mod schedule;

pub use clock::Clock;
pub use error::InputError;
pub use event::{Audience, Backend, Event, Homeserver, Role, Room, RoomKind, StaticHost};
pub use schedule::Session;
