//! The BigBlueButton pool beyond the static configuration: `venue autopilot`
//! writes `pool_file` (JSON) on the portal host to add servers, drain them
//! and take them away; the portal re-reads it at every poll tick
//! (crate::bbb) and tells the agent, through `GET /pool/api/servers`, when a
//! draining server is empty.

pub mod api;
pub mod file;
