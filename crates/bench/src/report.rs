//! Latencies into percentiles and a histogram; a run's result as text and as JSON.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::fmt::Write;
use std::time::Duration;

/// Microsecond latencies from 1 µs to 10 minutes, 3 significant digits.
pub struct Latencies(Histogram<u64>);

impl Latencies {
    pub fn new() -> Self {
        Latencies(Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds"))
    }

    pub fn record(&mut self, took: Duration) {
        self.0.saturating_record((took.as_micros() as u64).max(1));
    }

    pub fn merge(&mut self, other: &Latencies) {
        self.0.add(&other.0).expect("histograms with the same bounds");
    }

    pub fn count(&self) -> u64 {
        self.0.len()
    }

    fn summary(&self) -> LatencySummary {
        let ms = |micros: u64| micros as f64 / 1000.0;
        let at = |quantile: f64| ms(self.0.value_at_quantile(quantile));
        if self.0.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            min: ms(self.0.min()),
            mean: self.0.mean() / 1000.0,
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            p999: at(0.999),
            max: ms(self.0.max()),
        }
    }

    /// Counts per bucket, with bucket bounds on a 1-2-5 scale from 0.1 ms.
    fn buckets(&self) -> Vec<Bucket> {
        let mut buckets = Vec::new();
        let mut below = 0u64;
        let max_ms = self.0.max() as f64 / 1000.0;
        for decade in [0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0, 100_000.0] {
            for step in [1.0, 2.0, 5.0] {
                let le_ms: f64 = decade * step;
                let cumulative = self.0.count_between(0, (le_ms * 1000.0) as u64);
                // Leading empty buckets say nothing.
                if cumulative > 0 || !buckets.is_empty() {
                    buckets.push(Bucket { le_ms, count: cumulative - below });
                }
                below = cumulative;
                if le_ms >= max_ms {
                    return buckets;
                }
            }
        }
        buckets
    }
}

#[derive(Debug, Default, Serialize)]
pub struct LatencySummary {
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

#[derive(Debug, Serialize)]
pub struct Bucket {
    pub le_ms: f64,
    pub count: u64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub workload: String,
    pub label: String,
    pub endpoints: Vec<String>,
    pub clients: usize,
    pub conns: usize,
    pub total: u64,
    pub ok: u64,
    pub errors: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
    pub seconds: f64,
    /// Successful operations per second (for watch: delivered events per second).
    pub throughput: f64,
    pub latency_ms: LatencySummary,
    pub histogram: Vec<Bucket>,
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Report {
    pub fn new(
        options: &crate::Options,
        workload: &str,
        latencies: &Latencies,
        errors: u64,
        first_error: Option<String>,
        took: Duration,
    ) -> Self {
        let ok = latencies.count();
        Report {
            workload: workload.to_string(),
            label: options.label.clone(),
            endpoints: options.endpoints.clone(),
            clients: options.clients,
            conns: options.conns,
            total: options.total,
            ok,
            errors,
            first_error,
            seconds: took.as_secs_f64(),
            throughput: ok as f64 / took.as_secs_f64().max(1e-9),
            latency_ms: latencies.summary(),
            histogram: latencies.buckets(),
            extra: serde_json::Map::new(),
        }
    }

    pub fn with(mut self, name: &str, value: impl Into<serde_json::Value>) -> Self {
        self.extra.insert(name.to_string(), value.into());
        self
    }

    /// The summary etcd's benchmark prints, with percentiles and a histogram of bars.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let latency = &self.latency_ms;
        let _ = writeln!(
            out,
            "\nSummary ({}{}):",
            self.workload,
            if self.label.is_empty() { String::new() } else { format!(", {}", self.label) }
        );
        let _ = writeln!(out, "  Total:      {:.4} secs", self.seconds);
        let _ = writeln!(out, "  Ok:         {}", self.ok);
        let _ = writeln!(out, "  Errors:     {}", self.errors);
        if let Some(error) = &self.first_error {
            let _ = writeln!(out, "  First error: {error}");
        }
        let _ = writeln!(out, "  Throughput: {:.1}/s", self.throughput);
        let _ = writeln!(
            out,
            "  Latency ms: min {:.3}  mean {:.3}  p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
            latency.min, latency.mean, latency.p50, latency.p90, latency.p99, latency.p999, latency.max
        );
        for (name, value) in &self.extra {
            let _ = writeln!(out, "  {name}: {value}");
        }
        let _ = writeln!(out, "\nLatency histogram (ms):");
        let most = self.histogram.iter().map(|bucket| bucket.count).max().unwrap_or(0).max(1);
        for bucket in &self.histogram {
            let bar = "∎".repeat((bucket.count * 40).div_ceil(most) as usize);
            let _ = writeln!(out, "  <= {:>9} [{:>8}] {bar}", format!("{}", bucket.le_ms), bucket.count);
        }
        out
    }
}
