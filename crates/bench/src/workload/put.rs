//! `put` and `txn-put`.

use crate::connect::Connections;
use crate::report::Report;
use crate::run::{Tally, closed_loop, progress};
use crate::workload::{check_key_space, key, value};
use keel_api::etcdserverpb::{PutRequest, RequestOp, TxnRequest, request_op};
use rand::Rng;

/// The keys and values a write workload makes (etcd's benchmark defaults).
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct KeySpace {
    #[arg(long, default_value_t = 8)]
    pub key_size: usize,
    #[arg(long, default_value_t = 8)]
    pub val_size: usize,
    /// Distinct keys the writes choose from.
    #[arg(long, default_value_t = 1)]
    pub key_space_size: u64,
}

#[derive(Debug, clap::Args)]
pub struct PutOptions {
    #[command(flatten)]
    pub keys: KeySpace,
    /// Keys in order (request n puts key n mod key-space-size) instead of at random.
    #[arg(long)]
    pub sequential_keys: bool,
}

#[derive(Debug, clap::Args)]
pub struct TxnPutOptions {
    #[command(flatten)]
    pub keys: KeySpace,
    /// Puts per txn (on distinct keys).
    #[arg(long, default_value_t = 1)]
    pub txn_ops: u64,
}

pub async fn put(options: &crate::Options, connections: &Connections, put: &PutOptions) -> anyhow::Result<Report> {
    let KeySpace { key_size, val_size, key_space_size: space } = put.keys;
    check_key_space(key_size, space)?;
    let value = value(val_size);
    let sequential = put.sequential_keys;
    let bar = progress(options.total, options.no_progress, "put");
    let (tally, took) = closed_loop(options.clients, options.total, bar, |client, work| {
        let mut kv = connections.kv(client);
        let value = value.clone();
        async move {
            let mut tally = Tally::default();
            while let Some(number) = work.take() {
                let index = if sequential { number % space } else { rand::rng().random_range(0..space) };
                let request = PutRequest { key: key(index, key_size), value: value.clone(), ..Default::default() };
                tally.measure(kv.put(request)).await;
                work.progress.inc(1);
            }
            tally
        }
    })
    .await;
    Ok(Report::new(options, "put", &tally.latencies, tally.errors, tally.first_error, took)
        .with("key_size", key_size)
        .with("val_size", val_size)
        .with("key_space_size", space))
}

pub async fn txn_put(
    options: &crate::Options,
    connections: &Connections,
    txn: &TxnPutOptions,
) -> anyhow::Result<Report> {
    let (KeySpace { key_size, val_size, key_space_size: space }, ops) = (txn.keys, txn.txn_ops);
    check_key_space(key_size, space)?;
    anyhow::ensure!(ops >= 1 && ops <= space, "--txn-ops must be in 1..=--key-space-size");
    let value = value(val_size);
    let bar = progress(options.total, options.no_progress, "txn-put");
    let (tally, took) = closed_loop(options.clients, options.total, bar, |client, work| {
        let mut kv = connections.kv(client);
        let value = value.clone();
        async move {
            let mut tally = Tally::default();
            while work.take().is_some() {
                let first = rand::rng().random_range(0..space);
                let success = (0..ops)
                    .map(|offset| RequestOp {
                        request: Some(request_op::Request::RequestPut(PutRequest {
                            key: key((first + offset) % space, key_size),
                            value: value.clone(),
                            ..Default::default()
                        })),
                    })
                    .collect();
                tally.measure(kv.txn(TxnRequest { compare: Vec::new(), success, failure: Vec::new() })).await;
                work.progress.inc(1);
            }
            tally
        }
    })
    .await;
    Ok(Report::new(options, "txn-put", &tally.latencies, tally.errors, tally.first_error, took).with("txn_ops", ops))
}
