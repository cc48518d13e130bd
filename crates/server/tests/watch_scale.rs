//! Watch under load, with the etcd-client crate: many watchers get every event exactly once and in order,
//! and a watcher whose client stops reading stalls nobody and costs bounded memory.

mod common;

use common::Server;
use etcd_client::{Client, WatchOptions};
use std::time::{Duration, Instant};

/// Puts `count` values to keys chosen by `key_of`, from `writers` concurrent clients; returns the
/// acknowledged (revision, value) pairs sorted by revision.
async fn write(
    endpoint: &str,
    writers: usize,
    count: usize,
    value_bytes: usize,
    key_of: fn(usize) -> String,
) -> Vec<(i64, String)> {
    let mut tasks = Vec::new();
    for writer in 0..writers {
        let endpoint = endpoint.to_string();
        tasks.push(tokio::spawn(async move {
            let mut client = Client::connect([endpoint], None).await.unwrap();
            let mut acknowledged = Vec::new();
            for sequence in (writer..count).step_by(writers) {
                let mut value = format!("{sequence:08}");
                value.extend(std::iter::repeat_n('v', value_bytes.saturating_sub(8)));
                let response = client.put(key_of(sequence), value.clone(), None).await.unwrap();
                acknowledged.push((response.header().unwrap().revision(), value));
            }
            acknowledged
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all.sort();
    all
}

/// Reads a watch stream until it has `count` events; returns (revision, value) in arrival order.
async fn collect(stream: &mut etcd_client::WatchStream, count: usize) -> Vec<(i64, String)> {
    let mut events = Vec::with_capacity(count);
    while events.len() < count {
        let response = stream.message().await.unwrap().expect("watch stream ended early");
        assert!(!response.canceled(), "watch cancelled: {}", response.cancel_reason());
        for event in response.events() {
            let kv = event.kv().unwrap();
            events.push((kv.mod_revision(), kv.value_str().unwrap().to_string()));
        }
    }
    events
}

fn resident_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|line| line.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_watchers_each_get_ten_thousand_puts_in_order_exactly_once() {
    const WATCHERS: usize = 1000;
    const PUTS: usize = 10_000;
    let server = tokio::task::spawn_blocking(|| Server::keel(&[])).await.unwrap();
    let mut watchers = Vec::new();
    for connection in 0..10 {
        let mut client = Client::connect([server.endpoint.clone()], None).await.unwrap();
        for _ in 0..WATCHERS / 10 {
            let mut stream = client.watch("hot", None).await.unwrap();
            let created = stream.message().await.unwrap().unwrap();
            assert!(created.created(), "connection {connection}: expected the created response first");
            watchers.push(tokio::spawn(async move { collect(&mut stream, PUTS).await }));
        }
    }
    let started = Instant::now();
    let acknowledged = write(&server.endpoint, 8, PUTS, 16, |_| "hot".to_string()).await;
    for watcher in watchers {
        let seen = tokio::time::timeout(Duration::from_secs(300), watcher).await.expect("watcher timed out").unwrap();
        assert_eq!(seen.len(), acknowledged.len());
        assert!(
            seen == acknowledged,
            "a watcher's events differ from the acknowledged puts (order, gaps or duplicates)"
        );
    }
    println!("{WATCHERS} watchers x {PUTS} puts delivered in {:.1} s", started.elapsed().as_secs_f64());
}

/// Writes the load to a fresh server, with or without a watcher that stops reading; returns the growth of
/// the server's resident memory, and checks what the watchers received.
async fn memory_growth_under_load(with_stalled_watcher: bool) -> u64 {
    let server = tokio::task::spawn_blocking(|| Server::keel(&[])).await.unwrap();
    let pid = server.child.as_ref().unwrap().id();
    let mut client = Client::connect([server.endpoint.clone()], None).await.unwrap();
    let options = || Some(WatchOptions::new().with_prefix());
    let mut stalled = None;
    if with_stalled_watcher {
        let mut stream = client.watch("big/", options()).await.unwrap();
        assert!(stream.message().await.unwrap().unwrap().created());
        stalled = Some(stream);
    }
    let mut reader = client.watch("big/", options()).await.unwrap();
    assert!(reader.message().await.unwrap().unwrap().created());
    let reading = tokio::spawn(async move { collect(&mut reader, PUTS).await });
    let before = resident_bytes(pid);
    let acknowledged = write(&server.endpoint, 8, PUTS, VALUE_BYTES, |sequence| format!("big/{sequence:06}")).await;
    let seen =
        tokio::time::timeout(Duration::from_secs(300), reading).await.expect("the reading watcher stalled").unwrap();
    assert!(seen == acknowledged, "the reading watcher missed or reordered events");
    let growth = resident_bytes(pid).saturating_sub(before);
    if let Some(mut stalled) = stalled {
        // Once it reads again, the stalled watcher gets everything, from the store's history.
        let caught_up = tokio::time::timeout(Duration::from_secs(300), collect(&mut stalled, PUTS))
            .await
            .expect("catch-up timed out");
        assert!(caught_up == acknowledged, "the stalled watcher missed or reordered events after catching up");
    }
    growth
}

const PUTS: usize = 40_000;
const VALUE_BYTES: usize = 4096;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_watcher_that_stops_reading_stalls_nobody_and_costs_bounded_memory() {
    let baseline = memory_growth_under_load(false).await;
    let stalled = memory_growth_under_load(true).await;
    let volume = (PUTS * VALUE_BYTES) as u64;
    println!(
        "resident memory growth: {} MiB without, {} MiB with a watcher that stopped reading ({} MiB of events it did not take)",
        baseline >> 20,
        stalled >> 20,
        volume >> 20
    );
    assert!(
        stalled.saturating_sub(baseline) < volume / 2,
        "a stalled watcher cost {} MiB for {} MiB of undelivered events",
        stalled.saturating_sub(baseline) >> 20,
        volume >> 20
    );
}
