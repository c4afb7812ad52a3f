//! The cloud verbs: `venue up`, `venue autopilot`, `venue status`, `venue down`, `venue image`,
//! `venue machine`, and what only they share (the inventory of what an event
//! holds in the cloud, its firewall rules, what it has cost). The event's
//! model they stand on is in `crate::model`.

pub mod autopilot;
pub mod down;
pub mod image;
pub mod machine;
pub mod status;
pub mod up;

// Moved down a layer (cloud, runtime); kept here only while callers move.
pub use crate::cloud::{cost, firewall, inventory};
pub use crate::runtime::block_on;
