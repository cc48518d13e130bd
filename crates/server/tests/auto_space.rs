//! Space management that runs by itself: auto-compaction in both of etcd's modes, and self-driving
//! defragmentation that never runs on two members of a cluster at once.

mod common;

use common::{Cluster, Server};
use etcd_client::{Client, GetOptions};
use std::time::{Duration, Instant};

/// Whether reading `key` at `revision` says the revision was compacted.
async fn compacted(client: &mut Client, key: &str, revision: i64) -> bool {
    match client.get(key, Some(GetOptions::new().with_revision(revision))).await {
        Ok(_) => false,
        Err(error) => {
            assert!(error.to_string().contains("required revision has been compacted"), "{error}");
            true
        }
    }
}

async fn wait_until_compacted(client: &mut Client, revision: i64, within: Duration) -> Duration {
    let started = Instant::now();
    while !compacted(client, "k", revision).await {
        assert!(started.elapsed() < within, "revision {revision} was not compacted within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread")]
async fn revision_mode_keeps_the_last_n_revisions() {
    let flags = [
        "--auto-compaction-mode",
        "revision",
        "--auto-compaction-retention",
        "10",
        "--auto-compaction-check-interval",
        "300ms",
    ];
    let server = tokio::task::spawn_blocking(move || Server::keel(&flags)).await.unwrap();
    let mut client = server.client().await;
    for index in 0..50 {
        client.put("k", index.to_string(), None).await.unwrap();
    }
    let current = client.get("k", None).await.unwrap().header().unwrap().revision();
    wait_until_compacted(&mut client, current - 11, Duration::from_secs(5)).await;
    // Exactly the last 10 revisions stay readable.
    assert!(!compacted(&mut client, "k", current - 10).await);
    let old = client.get("k", Some(GetOptions::new().with_revision(current - 10))).await.unwrap();
    assert_eq!(old.kvs()[0].value_str().unwrap(), "39");
}

#[tokio::test(flavor = "multi_thread")]
async fn periodic_mode_keeps_the_retention_period_of_history() {
    let flags = ["--auto-compaction-mode", "periodic", "--auto-compaction-retention", "2s"];
    let server = tokio::task::spawn_blocking(move || Server::keel(&flags)).await.unwrap();
    let mut client = server.client().await;
    for index in 0..10 {
        client.put("k", index.to_string(), None).await.unwrap();
    }
    let early = client.get("k", None).await.unwrap().header().unwrap().revision();
    let written = Instant::now();
    // Younger than the retention: kept.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(!compacted(&mut client, "k", 2).await, "history younger than 2s was compacted");
    for index in 10..20 {
        client.put("k", index.to_string(), None).await.unwrap();
    }
    // Once it is older than the retention, the early history goes (within a compaction interval).
    wait_until_compacted(&mut client, early - 1, Duration::from_secs(8)).await;
    assert!(written.elapsed() >= Duration::from_secs(2), "compacted before the retention passed");
    let latest = client.get("k", None).await.unwrap();
    assert_eq!(latest.kvs()[0].value_str().unwrap(), "19");
}

/// (start, end) of every defragmentation in a member's log, as log timestamps.
fn defrag_spans(log: &str) -> Vec<(String, String)> {
    let stamp = |line: &str| line.split_whitespace().next().unwrap_or_default().to_string();
    let starts: Vec<String> = log.lines().filter(|line| line.contains("defragmentation started")).map(stamp).collect();
    let ends: Vec<String> = log.lines().filter(|line| line.contains("defragmentation finished")).map(stamp).collect();
    starts.into_iter().zip(ends).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn self_driving_defrag_runs_on_every_member_one_at_a_time() {
    let flags = [
        "--auto-compaction-mode",
        "revision",
        "--auto-compaction-retention",
        "5",
        "--auto-compaction-check-interval",
        "300ms",
        "--auto-defrag-threshold",
        "0.5",
        "--auto-defrag-check-interval",
        "300ms",
    ];
    let cluster = tokio::task::spawn_blocking(move || Cluster::start(3, &flags)).await.unwrap();
    let mut client = cluster.members[0].client().await;
    // Churn: one key rewritten with 50 KiB values; compaction frees all but the last few.
    let value = vec![b'x'; 50 * 1024];
    for _ in 0..200 {
        client.put("k", value.clone(), None).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let spans = loop {
        let spans: Vec<Vec<(String, String)>> =
            cluster.members.iter().map(|member| defrag_spans(&member.log())).collect();
        if spans.iter().all(|member| !member.is_empty()) {
            break spans;
        }
        assert!(Instant::now() < deadline, "not every member defragmented by itself: {spans:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // RFC 3339 timestamps in UTC compare as text.
    let mut all: Vec<(String, String, usize)> = spans
        .iter()
        .enumerate()
        .flat_map(|(member, spans)| spans.iter().map(move |(start, end)| (start.clone(), end.clone(), member)))
        .collect();
    all.sort();
    for pair in all.windows(2) {
        assert!(pair[0].1 <= pair[1].0, "two members defragmented at once: {pair:?}");
    }
    // Every file ends up small: a member that defragmented while the churn went on does it again later.
    for member in &cluster.members {
        let mut client = Client::connect([member.endpoint.clone()], None).await.unwrap();
        loop {
            let size = client.status().await.unwrap().db_size();
            if size < 8 * 1024 * 1024 {
                break;
            }
            assert!(Instant::now() < deadline, "a member's file is still {size} bytes");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
