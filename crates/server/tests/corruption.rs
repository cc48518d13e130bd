//! Consistency checks between members: `etcdctl endpoint hashkv` agrees across a healthy cluster, and the
//! leader's periodic corruption check raises CORRUPT when a member's store was changed behind its back,
//! after which the cluster refuses writes with etcd's error.

mod common;

use common::{Cluster, error_message, etcdctl, etcdctl_run};
use keel_api::mvccpb::KeyValue;
use prost::Message;
use redb::ReadableTable;
use std::time::{Duration, Instant};

const KV: redb::TableDefinition<(u64, u64), &[u8]> = redb::TableDefinition::new("kv");

/// Rewrites the value stored at revision `main` in a stopped member's backend file.
fn tamper(data_dir: &std::path::Path, main: u64) {
    let database = redb::Database::open(data_dir.join("member").join("snap").join("db")).unwrap();
    let transaction = database.begin_write().unwrap();
    {
        let mut table = transaction.open_table(KV).unwrap();
        let mut kv = KeyValue::decode(table.get((main, 0)).unwrap().expect("the revision is stored").value()).unwrap();
        kv.value = b"tampered".to_vec();
        table.insert((main, 0), kv.encode_to_vec().as_slice()).unwrap();
    }
    transaction.commit().unwrap();
}

/// (endpoint, hash) lines of `etcdctl endpoint hashkv`.
fn hashes(endpoints: &str) -> Vec<String> {
    etcdctl_run(endpoints, &["endpoint", "hashkv"])
        .lines()
        .map(|line| line.split(", ").nth(1).unwrap_or_default().to_string())
        .collect()
}

#[test]
fn a_member_whose_store_differs_is_flagged_corrupt() {
    let mut cluster = Cluster::start(3, &["--experimental-corrupt-check-time", "500ms"]);
    let endpoints = cluster.endpoints().join(",");
    for index in 0..20 {
        etcdctl_run(&cluster.members[0].endpoint, &["put", &format!("key/{index:02}"), "value"]);
    }
    // Healthy: every member hashes its revisions alike.
    let before = hashes(&endpoints);
    assert_eq!(before.len(), 3);
    assert!(before.iter().all(|hash| *hash == before[0] && !hash.is_empty()), "{before:?}");

    // One member's file is changed while it is down (what a bad disk or a bug could do).
    let victim = 2;
    let status = common::etcdctl_json(&cluster.members[victim].endpoint, &["endpoint", "status"]);
    let victim_id = status[0]["Status"]["header"]["member_id"].as_u64().unwrap();
    cluster.members[victim].stop();
    tamper(&cluster.members[victim].data_dir, 5);
    cluster.members[victim].respawn();
    cluster.members[victim].wait_ready();
    let healthy = &cluster.members[0].endpoint;
    let deadline = Instant::now() + Duration::from_secs(15);
    let expected = format!("memberID:{victim_id} alarm:CORRUPT \n");
    loop {
        let alarms = etcdctl_run(healthy, &["alarm", "list"]);
        if alarms.contains(&expected) {
            assert_eq!(alarms, expected, "only the tampered member is flagged");
            break;
        }
        assert!(Instant::now() < deadline, "no CORRUPT alarm was raised; alarms: {alarms:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (success, _, stderr) = etcdctl(healthy, &["put", "after", "x"]);
    assert!(!success, "a write was accepted by a corrupt cluster");
    assert_eq!(error_message(&stderr), "etcdserver: corrupt cluster");
}
