//! Per-host work, a bounded number of hosts at a time, one progress line
//! each: what deploy, install and archive share.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

/// Runs `work` on every item, `concurrency` at a time (at least one), each
/// with its own progress bar (`new_bar`, prefixed with `name(item)`), and
/// returns the results in the order they finished. `work` finishes its bar.
pub fn per_host<I: Sync, T: Send>(
    items: &[I],
    concurrency: usize,
    template: &str,
    new_bar: impl Fn() -> ProgressBar + Sync,
    name: impl Fn(&I) -> String + Sync,
    work: impl Fn(&I, &ProgressBar) -> T + Sync,
) -> Vec<T> {
    let bars = MultiProgress::new();
    let style = ProgressStyle::with_template(template).expect("valid template");
    let next = AtomicUsize::new(0);
    let results = Mutex::new(Vec::with_capacity(items.len()));
    std::thread::scope(|scope| {
        for _ in 0..concurrency.clamp(1, items.len().max(1)) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(item) = items.get(i) else { break };
                let bar = bars.add(new_bar().with_style(style.clone()).with_prefix(name(item)));
                bar.enable_steady_tick(Duration::from_millis(120));
                let result = work(item, &bar);
                results
                    .lock()
                    .expect("no panics while holding the lock")
                    .push(result);
            });
        }
    });
    results.into_inner().expect("threads joined")
}

/// The spinner line deploy and install show per host.
pub const SPINNER: &str = "{spinner} {prefix:<24} {wide_msg} {elapsed}";
