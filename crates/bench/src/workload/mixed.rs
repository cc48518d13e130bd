//! `mixed`: gets and puts over a preloaded key space, in a given ratio.

use crate::connect::Connections;
use crate::report::Report;
use crate::run::{Tally, closed_loop, progress};
use crate::workload::range::Consistency;
use crate::workload::{check_key_space, key, preload, value};
use keel_api::etcdserverpb::{PutRequest, RangeRequest};
use rand::Rng;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, clap::Args)]
pub struct MixedOptions {
    /// The share of requests that are reads (0.0 to 1.0).
    #[arg(long, default_value_t = 0.9)]
    pub read_ratio: f64,
    #[arg(long, default_value_t = 10_000)]
    pub key_space_size: u64,
    #[arg(long, default_value_t = 16)]
    pub key_size: usize,
    #[arg(long, default_value_t = 256)]
    pub val_size: usize,
    #[arg(long, value_enum, default_value_t = Consistency::L)]
    pub consistency: Consistency,
}

pub async fn mixed(
    options: &crate::Options,
    connections: &Connections,
    mixed: &MixedOptions,
) -> anyhow::Result<Report> {
    check_key_space(mixed.key_size, mixed.key_space_size)?;
    anyhow::ensure!((0.0..=1.0).contains(&mixed.read_ratio), "--read-ratio must be between 0 and 1");
    let value = value(mixed.val_size);
    let (key_size, space, ratio) = (mixed.key_size, mixed.key_space_size, mixed.read_ratio);
    preload(connections, (0..space).map(|number| key(number, key_size)).collect(), &value).await?;
    let serializable = mixed.consistency == Consistency::S;
    let reads = Arc::new(AtomicU64::new(0));
    let bar = progress(options.total, options.no_progress, "mixed");
    let (tally, took) = closed_loop(options.clients, options.total, bar, |client, work| {
        let mut kv = connections.kv(client);
        let (value, reads) = (value.clone(), reads.clone());
        async move {
            let mut tally = Tally::default();
            while work.take().is_some() {
                let (read, number) = {
                    let mut random = rand::rng();
                    (random.random_bool(ratio), random.random_range(0..space))
                };
                if read {
                    reads.fetch_add(1, Ordering::Relaxed);
                    let request = RangeRequest { key: key(number, key_size), serializable, ..Default::default() };
                    tally.measure(kv.range(request)).await;
                } else {
                    let request = PutRequest { key: key(number, key_size), value: value.clone(), ..Default::default() };
                    tally.measure(kv.put(request)).await;
                }
                work.progress.inc(1);
            }
            tally
        }
    })
    .await;
    let reads = reads.load(Ordering::Relaxed);
    Ok(Report::new(options, "mixed", &tally.latencies, tally.errors, tally.first_error, took)
        .with("reads", reads)
        .with("writes", options.total - reads)
        .with("read_ratio", ratio))
}
