//! Defragmentation of a database of more than 500 MiB while clients keep reading and writing: reads
//! never fail, writes wait at most for the brief switch-over, the file shrinks by what compaction freed,
//! and every key and revision is still there.

mod common;

use common::Server;
use etcd_client::{Client, CompactionOptions, GetOptions};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const MIB: usize = 1024 * 1024;
const KEYS: usize = 300;

/// Every key with its create/mod revisions and version.
async fn listing(client: &mut Client) -> Vec<(String, i64, i64, i64)> {
    let response = client.get("", Some(GetOptions::new().with_all_keys().with_keys_only())).await.unwrap();
    response
        .kvs()
        .iter()
        .map(|kv| (kv.key_str().unwrap().to_string(), kv.create_revision(), kv.mod_revision(), kv.version()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn defrag_of_a_large_database_keeps_serving_and_loses_nothing() {
    let server =
        tokio::task::spawn_blocking(|| Server::keel(&["--snapshot-count", "200", "--quota-backend-bytes", "-1"]))
            .await
            .unwrap();
    let mut client = server.client().await;
    // Two generations of 1 MiB values on 300 keys: ~600 MiB of history, half of it superseded.
    let value = vec![b'v'; MIB];
    for _generation in 0..2 {
        let mut writers = Vec::new();
        for writer in 0..4 {
            let (mut client, value) = (client.clone(), value.clone());
            writers.push(tokio::spawn(async move {
                for key in (writer..KEYS).step_by(4) {
                    client.put(format!("big/{key:03}"), value.clone(), None).await.unwrap();
                }
            }));
        }
        for writer in writers {
            writer.await.unwrap();
        }
    }
    // Compacting at the last revision leaves only the second generation.
    let loaded = client.status().await.unwrap().header().unwrap().revision();
    client.compact(loaded, Some(CompactionOptions::new().with_physical())).await.unwrap();
    let before = listing(&mut client).await;
    let status = client.status().await.unwrap();
    let (size_before, in_use_before) = (status.db_size() as usize, status.raft_used_db_size() as usize);
    assert!(size_before > 500 * MIB, "the database is only {} MiB", size_before / MIB);
    assert!(
        size_before - in_use_before > 200 * MIB,
        "compaction freed only {} MiB",
        (size_before - in_use_before) / MIB
    );

    // Readers (linearizable) and a writer run through the whole defrag.
    let stop = Arc::new(AtomicBool::new(false));
    let (read_failures, slowest_read, slowest_write) =
        (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut load = Vec::new();
    for reader in 0..4 {
        let (mut client, stop, failures, slowest) =
            (client.clone(), stop.clone(), read_failures.clone(), slowest_read.clone());
        load.push(tokio::spawn(async move {
            let mut reads = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                match client.get(format!("big/{:03}", (reads * 7 + reader) % KEYS as u64), None).await {
                    Ok(response) if response.kvs().len() == 1 => {}
                    _ => {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
                slowest.fetch_max(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                reads += 1;
            }
            reads
        }));
    }
    {
        let (mut client, stop, slowest) = (client.clone(), stop.clone(), slowest_write.clone());
        load.push(tokio::spawn(async move {
            let mut writes = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                client.put(format!("during/{writes:06}"), "x", None).await.unwrap();
                slowest.fetch_max(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                writes += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            writes
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    client.maintenance_client().defragment().await.unwrap();
    let took = started.elapsed();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut counts = Vec::new();
    for task in load {
        counts.push(task.await.unwrap());
    }
    let writes = counts.pop().unwrap();
    let reads: u64 = counts.iter().sum();

    let size_after = client.status().await.unwrap().db_size() as usize;
    let slowest_read = Duration::from_micros(slowest_read.load(Ordering::Relaxed));
    let slowest_write = Duration::from_micros(slowest_write.load(Ordering::Relaxed));
    eprintln!(
        "defrag of {} MiB ({} MiB in use) took {took:?}: file now {} MiB; {reads} linearizable reads (slowest {slowest_read:?}), \
         {writes} writes (slowest {slowest_write:?}) meanwhile",
        size_before / MIB,
        in_use_before / MIB,
        size_after / MIB
    );
    assert_eq!(read_failures.load(Ordering::Relaxed), 0, "reads failed during the defrag");
    assert!(reads > 100 && writes > 10, "the load did not run: {reads} reads, {writes} writes");
    assert!(
        size_after <= size_before - (size_before - in_use_before) * 9 / 10,
        "the file did not shrink by what was freed"
    );
    assert!(slowest_read < Duration::from_secs(1), "a read waited {slowest_read:?}");
    assert!(slowest_write < Duration::from_secs(2), "a write waited {slowest_write:?}");
    // Nothing lost: the same keys at the same revisions (the writes made meanwhile came after).
    let after: Vec<_> = listing(&mut client).await.into_iter().filter(|(key, ..)| key.starts_with("big/")).collect();
    assert_eq!(after, before.into_iter().filter(|(key, ..)| key.starts_with("big/")).collect::<Vec<_>>());
    let at_compaction = client.get("big/000", Some(GetOptions::new().with_revision(loaded))).await.unwrap();
    assert_eq!(at_compaction.kvs()[0].value().len(), MIB);
}
