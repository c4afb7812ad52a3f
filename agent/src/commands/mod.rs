//! The cloud commands: `venue up`, `venue status`, `venue down`, and what
//! they share (the local state directory and journal, keys, the fleet file,
//! the inventory of what an event holds in the cloud).

pub mod cost;
pub mod down;
pub mod firewall;
pub mod fleet;
pub mod image;
pub mod inventory;
pub mod keys;
pub mod machine;
pub mod state;
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
