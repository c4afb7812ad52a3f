//! The event's model as the agent keeps it, the ground floor that cloud,
//! install, deploy, tls, archive and the verbs stand on: the state directory
//! and its journal, the event's keys, fleet.json, and the tables every verb
//! prints. Nothing here imports from the layers above.

pub mod fleet;
pub mod keys;
pub mod state;
pub mod table;
