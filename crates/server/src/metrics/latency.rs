//! Latency warnings an operator cannot miss: etcd's operators are told to keep WAL fsync, backend commit
//! and peer round trips under 10 ms. Each disk stage records into a [`Window`]; every
//! [`CHECK_INTERVAL`] the window's p99 is read and reset, and a warning with the figures is logged when
//! it is over the limit. Peer round trips are checked as each probe returns (see `peer::probe`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// etcd's guidance for fsync, commit and round-trip latency.
pub const LIMIT: Duration = Duration::from_millis(10);
/// How often the disk windows are read.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// Upper bounds of the window's buckets, in microseconds (the last one catches everything above).
const BOUNDS_MICROS: [u64; 14] =
    [250, 500, 1_000, 2_000, 4_000, 7_000, 10_000, 16_000, 32_000, 64_000, 128_000, 512_000, 2_000_000, u64::MAX];

/// Counts of latencies since the last read.
pub struct Window {
    buckets: [AtomicU64; BOUNDS_MICROS.len()],
    max_micros: AtomicU64,
}

/// What a window held when read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub count: u64,
    /// The upper bound of the bucket holding the 99th percentile (the slowest sample if that is lower).
    pub p99: Duration,
    pub max: Duration,
}

impl Window {
    pub const fn new() -> Self {
        Window { buckets: [const { AtomicU64::new(0) }; BOUNDS_MICROS.len()], max_micros: AtomicU64::new(0) }
    }

    pub fn record(&self, latency: Duration) {
        let micros = latency.as_micros().min(u128::from(u64::MAX - 1)) as u64;
        let bucket = BOUNDS_MICROS.iter().position(|bound| micros <= *bound).unwrap_or(BOUNDS_MICROS.len() - 1);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.max_micros.fetch_max(micros, Ordering::Relaxed);
    }

    /// Reads the window and starts a new one.
    pub fn take(&self) -> Summary {
        let counts: Vec<u64> = self.buckets.iter().map(|bucket| bucket.swap(0, Ordering::Relaxed)).collect();
        let max = self.max_micros.swap(0, Ordering::Relaxed);
        let count: u64 = counts.iter().sum();
        // The rank of the 99th percentile, rounded up: with fewer than 100 samples, the slowest one.
        let rank = count - count / 100;
        let mut seen = 0;
        let mut p99 = 0;
        for (bucket, bucket_count) in counts.iter().enumerate() {
            seen += bucket_count;
            if seen >= rank && count > 0 {
                p99 = BOUNDS_MICROS[bucket].min(max);
                break;
            }
        }
        Summary { count, p99: Duration::from_micros(p99), max: Duration::from_micros(max) }
    }
}

impl Default for Window {
    fn default() -> Self {
        Window::new()
    }
}

pub static WAL_FSYNC: Window = Window::new();
pub static BACKEND_COMMIT: Window = Window::new();

/// Reads the disk windows every [`CHECK_INTERVAL`] and warns about the slow ones, until aborted.
pub async fn watch_disk() {
    let mut ticks = tokio::time::interval(CHECK_INTERVAL);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let fsync = WAL_FSYNC.take();
        if fsync.count > 0 && fsync.p99 > LIMIT {
            tracing::warn!(
                p99_ms = ms(fsync.p99),
                max_ms = ms(fsync.max),
                fsyncs = fsync.count,
                window_s = CHECK_INTERVAL.as_secs(),
                "slow disk: WAL fsync p99 is over 10 ms (etcd's guidance); writes and elections will suffer. \
                 Put the data dir on a dedicated low-latency disk (SSD/NVMe), check for other I/O on it, and \
                 measure it with `keelctl check disk`"
            );
        }
        let commit = BACKEND_COMMIT.take();
        if commit.count > 0 && commit.p99 > LIMIT {
            tracing::warn!(
                p99_ms = ms(commit.p99),
                max_ms = ms(commit.max),
                commits = commit.count,
                window_s = CHECK_INTERVAL.as_secs(),
                "slow disk: backend commit p99 is over 10 ms (etcd's guidance); applies fall behind. Check the \
                 disk under the data dir, and whether the database needs a defragmentation"
            );
        }
    }
}

/// Milliseconds with two decimals, for log fields.
pub fn ms(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 100_000.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p99_is_the_bucket_of_the_slowest_percent() {
        let window = Window::new();
        for _ in 0..990 {
            window.record(Duration::from_micros(300));
        }
        for _ in 0..10 {
            window.record(Duration::from_millis(50));
        }
        let summary = window.take();
        assert_eq!(summary.count, 1000);
        assert_eq!(summary.p99, Duration::from_micros(500));
        assert_eq!(summary.max, Duration::from_millis(50));
        window.record(Duration::from_millis(20));
        let summary = window.take();
        assert_eq!((summary.count, summary.p99), (1, Duration::from_millis(20)));
        assert_eq!(window.take().count, 0, "reading resets the window");
    }

    #[test]
    fn eleven_slow_samples_in_a_thousand_put_p99_over_the_limit() {
        let window = Window::new();
        for _ in 0..989 {
            window.record(Duration::from_micros(300));
        }
        for _ in 0..11 {
            window.record(Duration::from_millis(25));
        }
        assert!(window.take().p99 > LIMIT);
    }
}
