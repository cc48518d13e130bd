//! `range`: one key, or a prefix of N keys, linearizable or serializable.

use crate::connect::Connections;
use crate::report::Report;
use crate::run::{Tally, closed_loop, progress};
use crate::workload::{preload, value};
use keel_api::etcdserverpb::RangeRequest;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Consistency {
    /// Linearizable (a ReadIndex round per read, batched).
    L,
    /// Serializable (served by the member's own store).
    S,
}

#[derive(Debug, clap::Args)]
pub struct RangeOptions {
    #[arg(long, value_enum, default_value_t = Consistency::L)]
    pub consistency: Consistency,
    /// Keys preloaded under the prefix `range/`; 1 ranges that single key, more ranges the prefix.
    #[arg(long, default_value_t = 1)]
    pub prefix_keys: u64,
    #[arg(long, default_value_t = 256)]
    pub val_size: usize,
}

pub async fn range(
    options: &crate::Options,
    connections: &Connections,
    range: &RangeOptions,
) -> anyhow::Result<Report> {
    anyhow::ensure!(range.prefix_keys >= 1, "--prefix-keys must be at least 1");
    let keys: Vec<Vec<u8>> = (0..range.prefix_keys).map(|number| format!("range/{number:08}").into_bytes()).collect();
    preload(connections, keys.clone(), &value(range.val_size)).await?;
    let request = if range.prefix_keys == 1 {
        RangeRequest { key: keys[0].clone(), ..Default::default() }
    } else {
        RangeRequest { key: b"range/".to_vec(), range_end: b"range0".to_vec(), ..Default::default() }
    };
    let request = RangeRequest { serializable: range.consistency == Consistency::S, ..request };
    let expected = range.prefix_keys as usize;
    let bar = progress(options.total, options.no_progress, "range");
    let (tally, took) = closed_loop(options.clients, options.total, bar, |client, work| {
        let mut kv = connections.kv(client);
        let request = request.clone();
        async move {
            let mut tally = Tally::default();
            while work.take().is_some() {
                let started = std::time::Instant::now();
                let result =
                    kv.range(request.clone()).await.map_err(|status| status.to_string()).and_then(|response| {
                        let found = response.into_inner().kvs.len();
                        if found == expected {
                            Ok(())
                        } else {
                            Err(format!("range returned {found} keys, expected {expected}"))
                        }
                    });
                tally.record(started.elapsed(), result);
                work.progress.inc(1);
            }
            tally
        }
    })
    .await;
    let consistency = if range.consistency == Consistency::L { "l" } else { "s" };
    Ok(Report::new(options, "range", &tally.latencies, tally.errors, tally.first_error, took)
        .with("consistency", consistency)
        .with("prefix_keys", range.prefix_keys))
}
