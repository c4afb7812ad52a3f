//! The `venue` agent as a library, so that tests can drive it in-process.

pub mod archive;
pub mod autopilot;
pub mod check;
pub mod cloud;
pub mod commands;
pub mod converge;
pub mod deploy;
pub mod images;
pub mod install;
pub mod model;
pub mod parallel;
pub mod plan;
pub mod runtime;
pub mod tls;
