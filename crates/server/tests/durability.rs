//! Durability: concurrent writers, `kill -9` of the server at a random moment, restart. Every write that
//! was acknowledged before the kill must be there with its revision, and revisions keep increasing.

mod common;

use common::Server;
use etcd_client::{Client, GetOptions, PutOptions};
use rand::Rng;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const WRITERS: usize = 8;
const KILLS: usize = 4;

/// (key, value, revision) of every acknowledged put.
type Acknowledged = Arc<Mutex<Vec<(String, String, i64)>>>;

async fn write_until_failure(endpoint: String, writer: usize, round: usize, acknowledged: Acknowledged) {
    let Ok(mut client) = Client::connect([endpoint], None).await else { return };
    for sequence in 0.. {
        // Each writer has its own keys, and also overwrites one shared key, so both fresh keys and
        // new versions of an old key are checked.
        let key =
            if sequence % 4 == 3 { "shared".to_string() } else { format!("round{round}/writer{writer}/{sequence}") };
        let value = format!("{round}-{writer}-{sequence}");
        match client.put(key.as_str(), value.as_str(), Some(PutOptions::new())).await {
            Ok(response) => {
                let revision = response.header().expect("header").revision();
                acknowledged.lock().unwrap().push((key, value, revision));
            }
            Err(_) => return,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_kill_9_at_random_moments() {
    let mut server = tokio::task::spawn_blocking(|| Server::keel(&["--snapshot-count", "500"])).await.unwrap();
    let acknowledged: Acknowledged = Arc::default();
    let mut last_revision = 1;
    for round in 0..KILLS {
        let writers: Vec<_> = (0..WRITERS)
            .map(|writer| {
                tokio::spawn(write_until_failure(server.endpoint.clone(), writer, round, acknowledged.clone()))
            })
            .collect();
        let delay = rand::rng().random_range(200..1500);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        server.kill();
        for writer in writers {
            writer.await.unwrap();
        }
        server = tokio::task::spawn_blocking(move || {
            server.restart();
            server
        })
        .await
        .unwrap();
        last_revision = check(&server, &acknowledged, last_revision).await;
    }
    let total = acknowledged.lock().unwrap().len();
    assert!(total > 500, "too few writes were acknowledged to mean anything: {total}");
    println!("{total} acknowledged writes survived {KILLS} kills");
}

/// Checks every acknowledged write after a restart; returns the store's revision.
async fn check(server: &Server, acknowledged: &Acknowledged, previous_revision: i64) -> i64 {
    let mut client = server.client().await;
    let writes = acknowledged.lock().unwrap().clone();
    let all = client.get("", Some(GetOptions::new().with_all_keys())).await.unwrap();
    let revision = all.header().unwrap().revision();
    let stored: HashMap<String, (String, i64)> = all
        .kvs()
        .iter()
        .map(|kv| (kv.key_str().unwrap().to_string(), (kv.value_str().unwrap().to_string(), kv.mod_revision())))
        .collect();
    let mut revisions = std::collections::HashSet::new();
    let mut newest_shared = (String::new(), 0);
    for (key, value, acknowledged_revision) in &writes {
        assert!(revisions.insert(*acknowledged_revision), "two acknowledged puts got revision {acknowledged_revision}");
        assert!(
            *acknowledged_revision <= revision,
            "acknowledged revision {acknowledged_revision} is above the store's {revision}"
        );
        if key == "shared" {
            if *acknowledged_revision > newest_shared.1 {
                newest_shared = (value.clone(), *acknowledged_revision);
            }
            // The value it had at the acknowledged revision is still readable there.
            let at = client.get("shared", Some(GetOptions::new().with_revision(*acknowledged_revision))).await.unwrap();
            let kv = &at.kvs()[0];
            assert_eq!((kv.value_str().unwrap(), kv.mod_revision()), (value.as_str(), *acknowledged_revision));
            continue;
        }
        let (stored_value, stored_revision) =
            stored.get(key).unwrap_or_else(|| panic!("acknowledged key {key} is lost"));
        assert_eq!((stored_value, stored_revision), (value, acknowledged_revision), "key {key}");
    }
    if newest_shared.1 > 0 {
        let (_, shared_revision) = &stored["shared"];
        assert!(*shared_revision >= newest_shared.1, "the shared key went back in time");
    }
    assert!(revision >= previous_revision, "revision went from {previous_revision} back to {revision}");
    // A new write continues the sequence.
    let next = client.put("after-restart", "x", None).await.unwrap().header().unwrap().revision();
    assert_eq!(next, revision + 1);
    next
}
