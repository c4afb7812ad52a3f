//! The cloud verbs: `venue up`, `venue autopilot`, `venue status`, `venue down`, `venue image`,
//! `venue machine`, and what only they share (the inventory of what an event
//! holds in the cloud, its firewall rules, what it has cost). The event's
//! model they stand on is in `crate::model`.

pub mod autopilot;
pub mod cost;
pub mod down;
pub mod firewall;
pub mod image;
pub mod inventory;
pub mod machine;
pub mod status;
pub mod up;

/// Runs an async command on a runtime of its own: `main` stays synchronous.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}
