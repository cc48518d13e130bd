//! `watch`: `--watchers` watchers on one key, spread over `--streams` streams, while the clients put to
//! that key `--puts` times. Each put's value carries its number, and the put records when it was sent,
//! so a watcher computes each event's delivery latency (event received - put sent) as it arrives.

use crate::connect::Connections;
use crate::report::{Latencies, Report};
use crate::run::{Tally, closed_loop, progress};
use keel_api::etcdserverpb::{PutRequest, WatchCreateRequest, WatchRequest, watch_request};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// How long watchers may keep receiving after the last put before the run gives up on missing events.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, clap::Args)]
pub struct WatchOptions {
    #[arg(long, default_value_t = 1000)]
    pub watchers: usize,
    #[arg(long, default_value_t = 10)]
    pub streams: usize,
    #[arg(long, default_value_t = 10_000)]
    pub puts: u64,
    #[arg(long, default_value_t = 256)]
    pub val_size: usize,
    #[arg(long, default_value = "watch-bench-key")]
    pub key: String,
}

/// What one stream's watchers saw.
struct Delivered {
    latencies: Latencies,
    events: u64,
    last: Instant,
    error: Option<String>,
}

pub async fn watch(
    options: &crate::Options,
    connections: &Connections,
    watch: &WatchOptions,
) -> anyhow::Result<Report> {
    anyhow::ensure!(watch.streams >= 1 && watch.watchers >= watch.streams, "need at least one watcher per stream");
    anyhow::ensure!(watch.val_size >= 8, "--val-size must be at least 8 (the value carries the put's number)");
    let base = Instant::now();
    let sent_at: Arc<Vec<AtomicU64>> = Arc::new((0..watch.puts).map(|_| AtomicU64::new(0)).collect());
    let delivery = progress(watch.puts * watch.watchers as u64, options.no_progress, "events");
    let mut streams = Vec::new();
    let mut created = Vec::new();
    for stream in 0..watch.streams {
        let watchers = watch.watchers / watch.streams + usize::from(stream < watch.watchers % watch.streams);
        let (ready, is_ready) = tokio::sync::oneshot::channel();
        created.push(is_ready);
        streams.push(tokio::spawn(receive(
            connections.watch(stream),
            watch.key.clone().into_bytes(),
            watchers,
            watchers as u64 * watch.puts,
            (base, sent_at.clone()),
            ready,
            delivery.clone(),
        )));
    }
    for ready in created {
        ready.await.map_err(|_| anyhow::anyhow!("a watch stream failed before its watchers were created"))??;
    }

    let key = watch.key.clone().into_bytes();
    let val_size = watch.val_size;
    let first_put = Instant::now();
    let (puts, put_took) =
        closed_loop(options.clients, watch.puts, progress(watch.puts, true, "puts"), |client, work| {
            let mut kv = connections.kv(client);
            let (key, sent_at) = (key.clone(), sent_at.clone());
            async move {
                let mut tally = Tally::default();
                while let Some(number) = work.take() {
                    let mut value = vec![0u8; val_size];
                    value[..8].copy_from_slice(&number.to_le_bytes());
                    sent_at[number as usize].store(base.elapsed().as_nanos() as u64, Ordering::Release);
                    tally.measure(kv.put(PutRequest { key: key.clone(), value, ..Default::default() })).await;
                }
                tally
            }
        })
        .await;

    let mut latencies = Latencies::new();
    let mut events = 0;
    let mut last = first_put;
    let mut errors = puts.errors;
    let mut first_error = puts.first_error.clone();
    for stream in streams {
        let delivered = stream.await?;
        latencies.merge(&delivered.latencies);
        events += delivered.events;
        last = last.max(delivered.last);
        if let Some(error) = delivered.error {
            errors += 1;
            first_error.get_or_insert(error);
        }
    }
    delivery.finish_and_clear();
    let expected = watch.puts * watch.watchers as u64;
    if events < expected {
        errors += 1;
        first_error.get_or_insert(format!("{} of {expected} events never arrived", expected - events));
    }
    let mut report = Report::new(options, "watch", &latencies, errors, first_error, last.duration_since(first_put));
    report.total = expected;
    report.clients = options.clients;
    Ok(report
        .with("watchers", watch.watchers as u64)
        .with("streams", watch.streams as u64)
        .with("puts", puts.latencies.count())
        .with("put_throughput", puts.latencies.count() as f64 / put_took.as_secs_f64())
        .with("events", events)
        .with("expected_events", expected))
}

/// One watch stream: creates its watchers, says so through `ready`, then takes events until it has
/// `expected` of them (or the drain timeout passes after events stop coming).
async fn receive(
    mut client: keel_api::etcdserverpb::watch_client::WatchClient<tonic::transport::Channel>,
    key: Vec<u8>,
    watchers: usize,
    expected: u64,
    (base, sent_at): (Instant, Arc<Vec<AtomicU64>>),
    ready: tokio::sync::oneshot::Sender<anyhow::Result<()>>,
    delivery: indicatif::ProgressBar,
) -> Delivered {
    let mut delivered = Delivered { latencies: Latencies::new(), events: 0, last: Instant::now(), error: None };
    // The creates are queued before the call: a gRPC server may send its response headers only with
    // its first message (etcd does), and the call returns only once it has them.
    let (requests, outgoing) = mpsc::channel(watchers.max(1));
    for _ in 0..watchers {
        let create = WatchCreateRequest { key: key.clone(), ..Default::default() };
        let _ = requests
            .send(WatchRequest { request_union: Some(watch_request::RequestUnion::CreateRequest(create)) })
            .await;
    }
    let mut responses = match client.watch(ReceiverStream::new(outgoing)).await {
        Ok(response) => response.into_inner(),
        Err(status) => {
            let _ = ready.send(Err(anyhow::anyhow!("cannot open a watch stream: {status}")));
            return delivered;
        }
    };
    let mut created = 0;
    while created < watchers {
        match responses.message().await {
            Ok(Some(response)) if response.created => created += 1,
            Ok(Some(_)) => {}
            other => {
                let _ = ready.send(Err(anyhow::anyhow!("watch stream ended while creating watchers: {other:?}")));
                return delivered;
            }
        }
    }
    let _ = ready.send(Ok(()));
    while delivered.events < expected {
        let response = match tokio::time::timeout(DRAIN_TIMEOUT, responses.message()).await {
            Ok(Ok(Some(response))) => response,
            Ok(Ok(None)) => break,
            Ok(Err(status)) => {
                delivered.error = Some(format!("watch stream failed: {status}"));
                break;
            }
            Err(_) => break,
        };
        let now = Instant::now();
        let received = now.duration_since(base).as_nanos() as u64;
        for event in &response.events {
            let Some(number) = event.kv.as_ref().and_then(|kv| kv.value.get(..8)) else { continue };
            let number = u64::from_le_bytes(number.try_into().expect("8 bytes"));
            if let Some(sent) = sent_at.get(number as usize) {
                delivered.latencies.record(Duration::from_nanos(received.saturating_sub(sent.load(Ordering::Acquire))));
            }
            delivered.events += 1;
        }
        delivered.last = now;
        delivery.inc(response.events.len() as u64);
    }
    drop(requests);
    delivered
}
