//! Stage capture: a streamed room's stage (its BBB or Jitsi meeting) is
//! filmed by a headless browser on a capture host and pushed as RTMP to the
//! stream origin (modules/capture.nix). The portal decides when (`schedule`:
//! the sessions with margins, and staff overrides) and hands the capture
//! hosts what they need (`api`); `controller` runs on a capture host and
//! starts and stops one capture per room (`runner`).

pub mod api;
pub mod controller;
pub mod runner;
pub mod schedule;
