//! The `venue` agent as a library, so that tests can drive it in-process.

pub mod plan;
