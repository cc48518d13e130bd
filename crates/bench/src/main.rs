//! keel-bench: drives any etcd v3 endpoint list (Keel or etcd) with the workloads of etcd's own
//! `benchmark` tool, so figures compare with etcd's published ones, and reports throughput, latency
//! percentiles and a histogram, as text and as a JSON file.
//!
//! # Layout
//! - [`connect`]: the endpoint list and `--conns` shared gRPC connections.
//! - [`run`]: the closed loop of `--clients` concurrent clients taking `--total` requests, with progress.
//! - [`report`]: latencies into percentiles, a histogram, text and JSON.
//! - [`workload`]: one module per workload.
//! - [`compare`]: `keel-bench compare`, Keel and the real etcd side by side, for BENCHMARKS.md.

mod compare;
mod connect;
mod report;
mod run;
mod workload;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "keel-bench", version, about = "Benchmarks an etcd v3 endpoint list (Keel or etcd)")]
pub struct Options {
    /// Comma-separated client endpoints (host:port or http://host:port).
    #[arg(long, default_value = "127.0.0.1:2379", value_delimiter = ',')]
    pub endpoints: Vec<String>,
    /// gRPC connections, shared round-robin by the clients and spread over the endpoints.
    #[arg(long, default_value_t = 1)]
    pub conns: usize,
    /// Concurrent clients (each has at most one request in flight).
    #[arg(long, default_value_t = 1)]
    pub clients: usize,
    /// Requests in all.
    #[arg(long, default_value_t = 10_000)]
    pub total: u64,
    /// Writes the result as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// A name for this run, kept in the JSON result.
    #[arg(long, default_value = "")]
    pub label: String,
    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,
    #[command(subcommand)]
    pub workload: Workload,
}

#[derive(Debug, Subcommand)]
pub enum Workload {
    /// Puts of random (or sequential) keys.
    Put(workload::put::PutOptions),
    /// Ranges over preloaded keys: one key, or a prefix of N keys.
    Range(workload::range::RangeOptions),
    /// Txns of --txn-ops puts each.
    TxnPut(workload::put::TxnPutOptions),
    /// Watchers on one key while clients put to it; measures event delivery latency.
    Watch(workload::watch::WatchOptions),
    /// Lease keep-alives, one lease per client, request/response on a keep-alive stream.
    LeaseKeepalive,
    /// Linearizable or serializable gets mixed with puts over a preloaded key space.
    Mixed(workload::mixed::MixedOptions),
    /// Starts etcd and Keel clusters side by side, runs every workload on both, writes BENCHMARKS.md.
    Compare(compare::CompareOptions),
}

fn main() -> anyhow::Result<()> {
    let options = Options::parse();
    if let Workload::Compare(compare) = options.workload {
        // Starts and stops processes and blocks on them: no async runtime around it.
        return compare::compare(compare);
    }
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(run(options))
}

async fn run(options: Options) -> anyhow::Result<()> {
    let connections = connect::Connections::open(&options.endpoints, options.conns).await?;
    let report = match &options.workload {
        Workload::Put(put) => workload::put::put(&options, &connections, put).await?,
        Workload::Range(range) => workload::range::range(&options, &connections, range).await?,
        Workload::TxnPut(txn) => workload::put::txn_put(&options, &connections, txn).await?,
        Workload::Watch(watch) => workload::watch::watch(&options, &connections, watch).await?,
        Workload::LeaseKeepalive => workload::lease::keepalive(&options, &connections).await?,
        Workload::Mixed(mixed) => workload::mixed::mixed(&options, &connections, mixed).await?,
        Workload::Compare(_) => unreachable!("compare runs before any connection"),
    };
    print!("{}", report.text());
    if let Some(path) = &options.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)?;
    }
    if report.ok == 0 {
        anyhow::bail!(
            "no request succeeded{}",
            report.first_error.as_deref().map(|e| format!(": {e}")).unwrap_or_default()
        );
    }
    Ok(())
}
