//! `keelctl check disk`: the fsync latency of the disk under a data dir, with a verdict against etcd's
//! 10 ms guidance (the WAL's pattern: small appends, each followed by fdatasync).
//!
//! `keelctl check perf`: a cluster under a steady write load (etcdctl's loads s, m, l, xl), with
//! etcdctl's verdicts: throughput at least 90% of the load, slowest write under 500 ms, standard
//! deviation under 100 ms. The keys it writes are deleted afterwards.

use crate::connect;
use keel_api::etcdserverpb::kv_client::KvClient;
use keel_api::etcdserverpb::{DeleteRangeRequest, PutRequest};
use rand::Rng;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// etcd's guidance for WAL fsync latency.
const FSYNC_LIMIT: Duration = Duration::from_millis(10);

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Measures fdatasync latency in a data dir (PASS when its p99 is under 10 ms).
    Disk {
        /// The directory to test (put it where the data dir lives).
        #[arg(long, default_value = ".")]
        data_dir: PathBuf,
        /// Appends to make, each followed by fdatasync (at most 20 s in all).
        #[arg(long, default_value_t = 1000)]
        writes: u64,
        /// Bytes per append (etcd's guidance uses 2300, about one WAL entry).
        #[arg(long, default_value_t = 2300)]
        block_size: usize,
    },
    /// Writes to the cluster at a steady rate and judges the result as `etcdctl check perf` does.
    Perf {
        /// s (150 writes/s, 50 clients), m (1000, 200), l (8000, 500) or xl (15000, 1000).
        #[arg(long, default_value = "s")]
        load: String,
        /// Seconds to run (etcdctl runs 60).
        #[arg(long, default_value_t = 60)]
        duration: u64,
        /// Key prefix to write under (deleted afterwards).
        #[arg(long, default_value = "/keelctl-check-perf/")]
        prefix: String,
    },
}

pub async fn run(command: Command, endpoints: &[String]) -> anyhow::Result<bool> {
    match command {
        Command::Disk { data_dir, writes, block_size } => {
            tokio::task::spawn_blocking(move || disk(&data_dir, writes, block_size)).await?
        }
        Command::Perf { load, duration, prefix } => {
            perf(endpoints, &load, Duration::from_secs(duration), &prefix).await
        }
    }
}

fn disk(dir: &std::path::Path, writes: u64, block_size: usize) -> anyhow::Result<bool> {
    let path = dir.join(format!(".keelctl-check-disk-{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .open(&path)
        .map_err(|error| anyhow::anyhow!("cannot create a test file in {}: {error}", dir.display()))?;
    let block = vec![0xa5u8; block_size];
    let bar = indicatif::ProgressBar::new(writes);
    let started = Instant::now();
    let mut latencies = Vec::with_capacity(writes as usize);
    let outcome = (|| -> std::io::Result<()> {
        for _ in 0..writes {
            let write_started = Instant::now();
            file.write_all(&block)?;
            file.sync_data()?;
            latencies.push(write_started.elapsed());
            bar.inc(1);
            if started.elapsed() > Duration::from_secs(20) {
                break;
            }
        }
        Ok(())
    })();
    bar.finish_and_clear();
    let _ = std::fs::remove_file(&path);
    outcome.map_err(|error| anyhow::anyhow!("writing the test file in {}: {error}", dir.display()))?;
    latencies.sort();
    let at = |quantile: f64| latencies[((latencies.len() - 1) as f64 * quantile).round() as usize];
    let (p50, p99, max) = (at(0.5), at(0.99), *latencies.last().expect("at least one write"));
    let pass = p99 < FSYNC_LIMIT;
    println!(
        "{}: {} appends of {block_size} bytes with fdatasync in {}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        if pass { "PASS" } else { "FAIL" },
        latencies.len(),
        dir.display(),
        ms(p50),
        ms(p99),
        ms(max)
    );
    if !pass {
        println!(
            "The disk's fsync p99 is over 10 ms (etcd's guidance): put the data dir on a faster, dedicated disk (SSD/NVMe)."
        );
    }
    Ok(pass)
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// etcdctl's loads: writes per second and clients.
fn load(name: &str) -> anyhow::Result<(u64, usize)> {
    match name {
        "s" => Ok((150, 50)),
        "m" => Ok((1000, 200)),
        "l" => Ok((8000, 500)),
        "xl" => Ok((15000, 1000)),
        other => anyhow::bail!("--load {other:?}: one of s, m, l, xl"),
    }
}

async fn perf(endpoints: &[String], load_name: &str, duration: Duration, prefix: &str) -> anyhow::Result<bool> {
    let (rate, clients) = load(load_name)?;
    let mut channels = Vec::new();
    for index in 0..clients.div_ceil(50) {
        channels.push(connect::channel(&endpoints[index % endpoints.len()]).await?);
    }
    let value = vec![b'v'; 1024];
    let interval = Duration::from_secs_f64(clients as f64 / rate as f64);
    let deadline = tokio::time::Instant::now() + duration;
    let bar = connect::spinner(format!("writing {rate}/s with {clients} clients for {} s", duration.as_secs()));
    let latencies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..clients {
        let mut kv = KvClient::new(channels[client % channels.len()].clone());
        let (latencies, value, prefix) = (latencies.clone(), value.clone(), prefix.to_string());
        // Clients start spread over one interval, so the load is steady rather than in bursts.
        let start = tokio::time::Instant::now() + interval.mul_f64(client as f64 / clients as f64);
        tasks.spawn(async move {
            let mut ticks = tokio::time::interval_at(start, interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut failures = 0u64;
            loop {
                ticks.tick().await;
                if tokio::time::Instant::now() >= deadline {
                    return failures;
                }
                let key = format!("{prefix}{:016x}", rand::rng().random::<u64>()).into_bytes();
                let started = Instant::now();
                match kv.put(PutRequest { key, value: value.clone(), ..Default::default() }).await {
                    Ok(_) => latencies.lock().expect("latencies lock").push(started.elapsed()),
                    Err(_) => failures += 1,
                }
            }
        });
    }
    let mut failures = 0;
    while let Some(result) = tasks.join_next().await {
        failures += result?;
    }
    bar.finish_and_clear();
    let latencies = std::mem::take(&mut *latencies.lock().expect("latencies lock"));
    let mut range_end = prefix.as_bytes().to_vec();
    if let Some(last) = range_end.last_mut() {
        *last += 1;
    }
    let cleanup = KvClient::new(channels[0].clone())
        .delete_range(DeleteRangeRequest { key: prefix.as_bytes().to_vec(), range_end, ..Default::default() })
        .await;
    if let Err(status) = cleanup {
        println!("could not delete the keys under {prefix}: {}", status.message());
    }

    let throughput = latencies.len() as f64 / duration.as_secs_f64();
    let slowest = latencies.iter().max().copied().unwrap_or_default().as_secs_f64();
    let mean = latencies.iter().map(Duration::as_secs_f64).sum::<f64>() / latencies.len().max(1) as f64;
    let variance = latencies.iter().map(|latency| (latency.as_secs_f64() - mean).powi(2)).sum::<f64>()
        / latencies.len().max(1) as f64;
    let stddev = variance.sqrt();
    let verdicts = [
        (
            throughput >= 0.9 * rate as f64,
            format!("Throughput is {throughput:.0} writes/s (load {load_name}: {rate}/s)"),
        ),
        (slowest < 0.5, format!("Slowest request took {slowest:.6}s")),
        (stddev < 0.1, format!("Stddev is {stddev:.6}s")),
        (failures == 0, format!("{failures} writes failed")),
    ];
    for (pass, what) in &verdicts {
        println!("{}: {what}", if *pass { "PASS" } else { "FAIL" });
    }
    let pass = verdicts.iter().all(|(pass, _)| *pass);
    println!("{}", if pass { "PASS" } else { "FAIL" });
    Ok(pass)
}
