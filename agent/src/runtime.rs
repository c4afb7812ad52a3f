//! The async runtime for the blocking callers (`main`, per-host threads).

/// Runs an async command on a runtime of its own: `main` stays synchronous.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}
