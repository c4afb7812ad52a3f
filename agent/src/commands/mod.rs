//! The cloud verbs: `venue up`, `venue autopilot`, `venue status`, `venue down`, `venue image`,
//! `venue machine`. They stand on the convergence (`crate::converge`) and
//! the layers below it; the event's model is in `crate::model`.

pub mod autopilot;
pub mod down;
pub mod image;
pub mod machine;
pub mod status;
pub mod up;
