//! The closed loop: `--clients` tasks take request numbers from one counter until `--total` are taken;
//! each times its requests into its own histogram, merged at the end.

use crate::report::Latencies;
use indicatif::{ProgressBar, ProgressStyle};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The work the clients share.
pub struct Work {
    next: AtomicU64,
    total: u64,
    pub progress: ProgressBar,
}

impl Work {
    /// The next request number, or None when all are taken.
    pub fn take(&self) -> Option<u64> {
        let number = self.next.fetch_add(1, Ordering::Relaxed);
        (number < self.total).then_some(number)
    }
}

/// A progress bar for `total` steps, or a hidden one.
pub fn progress(total: u64, hidden: bool, what: &str) -> ProgressBar {
    if hidden {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec}, eta {eta})")
            .expect("a valid template"),
    );
    bar.set_message(what.to_string());
    bar
}

/// What one client (or all of them, merged) measured.
pub struct Tally {
    pub latencies: Latencies,
    pub errors: u64,
    pub first_error: Option<String>,
}

impl Default for Tally {
    fn default() -> Self {
        Tally { latencies: Latencies::new(), errors: 0, first_error: None }
    }
}

impl Tally {
    /// Times one request.
    pub async fn measure<T, E: std::fmt::Display>(&mut self, request: impl Future<Output = Result<T, E>>) -> Option<T> {
        let started = Instant::now();
        let result = request.await;
        self.record(started.elapsed(), result)
    }

    pub fn record<T, E: std::fmt::Display>(&mut self, took: Duration, result: Result<T, E>) -> Option<T> {
        match result {
            Ok(value) => {
                self.latencies.record(took);
                Some(value)
            }
            Err(error) => {
                self.errors += 1;
                if self.first_error.is_none() {
                    self.first_error = Some(error.to_string());
                }
                None
            }
        }
    }

    pub fn merge(&mut self, other: Tally) {
        self.latencies.merge(&other.latencies);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// Runs `clients` copies of `client` over `total` requests; returns the merged tally and the wall time.
pub async fn closed_loop<F, Fut>(clients: usize, total: u64, progress: ProgressBar, client: F) -> (Tally, Duration)
where
    F: Fn(usize, Arc<Work>) -> Fut,
    Fut: Future<Output = Tally> + Send + 'static,
{
    let work = Arc::new(Work { next: AtomicU64::new(0), total, progress });
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients.max(1)).map(|index| tokio::spawn(client(index, work.clone()))).collect();
    let mut tally = Tally::default();
    for task in tasks {
        match task.await {
            Ok(part) => tally.merge(part),
            Err(error) => {
                tally.errors += 1;
                tally.first_error.get_or_insert_with(|| format!("a client task failed: {error}"));
            }
        }
    }
    let took = started.elapsed();
    work.progress.finish_and_clear();
    (tally, took)
}
