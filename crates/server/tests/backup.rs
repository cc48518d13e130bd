//! Backups end to end with `keelctl`: a snapshot saved from a 3-member cluster while writes go on, then
//! restored into a new 3-member cluster, which holds every key up to the snapshot's revision with the
//! same revisions, nothing after it, and a cluster id of its own. The real `etcdctl snapshot save` saves
//! a snapshot Keel's tools accept.

mod common;

use common::{Cluster, etcdctl_run, keelctl_run as run};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn snapshot_status(path: &Path) -> serde_json::Value {
    serde_json::from_str(&run(&["snapshot", "status", "-w", "json", &path.display().to_string()])).unwrap()
}

#[test]
fn a_snapshot_saved_under_load_restores_into_a_new_cluster_with_the_same_revisions() {
    let scratch = tempfile::tempdir().unwrap();
    let original = Cluster::start(3, &[]);
    let endpoints = original.endpoints();

    // Writes go on, from another thread, while the snapshot is taken; every acknowledged one is recorded
    // with the revision it got.
    let acknowledged: Arc<Mutex<Vec<(String, String, i64)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (acknowledged, stop, endpoints) = (acknowledged.clone(), stop.clone(), endpoints.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                let mut client = etcd_client::Client::connect(endpoints, None).await.unwrap();
                let mut number = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let (key, value) = (format!("backup/{number:06}"), format!("value-{number}-{}", "x".repeat(200)));
                    let response = client.put(key.as_str(), value.as_str(), None).await.unwrap();
                    acknowledged.lock().unwrap().push((key, value, response.header().unwrap().revision()));
                    number += 1;
                }
            })
        })
    };
    while acknowledged.lock().unwrap().len() < 300 {
        std::thread::sleep(Duration::from_millis(20));
    }
    let snapshot = scratch.path().join("backup.snap");
    let saved = run(&["--endpoints", &endpoints[1], "snapshot", "save", &snapshot.display().to_string()]);
    assert!(saved.starts_with("Snapshot saved at"), "{saved}");
    let written_during_save = acknowledged.lock().unwrap().len();
    while acknowledged.lock().unwrap().len() < written_during_save + 100 {
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let acknowledged = acknowledged.lock().unwrap().clone();

    let status = snapshot_status(&snapshot);
    let revision = status["revision"].as_i64().unwrap();
    let covered: Vec<&(String, String, i64)> = acknowledged.iter().filter(|(_, _, at)| *at <= revision).collect();
    let after: Vec<&(String, String, i64)> = acknowledged.iter().filter(|(_, _, at)| *at > revision).collect();
    assert!(
        covered.len() >= 300 && !after.is_empty(),
        "the snapshot (revision {revision}) was taken mid-load: {} before, {} after",
        covered.len(),
        after.len()
    );
    assert_eq!(status["totalKey"].as_u64().unwrap(), covered.len() as u64, "{status}");

    // A new cluster, each member restored from the same file with the same --initial-cluster.
    let restored = Cluster::start_with(3, &[], |plan| {
        let printed = run(&[
            "snapshot",
            "restore",
            &snapshot.display().to_string(),
            "--name",
            &plan.name,
            "--data-dir",
            &plan.data_dir.display().to_string(),
            "--initial-cluster",
            &plan.initial_cluster,
            "--initial-advertise-peer-urls",
            &plan.peer_url,
        ]);
        assert!(printed.contains("of the new cluster"), "{printed}");
    });
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let mut old = etcd_client::Client::connect(original.endpoints(), None).await.unwrap();
        let mut new = etcd_client::Client::connect(restored.endpoints(), None).await.unwrap();
        let old_cluster = old.status().await.unwrap().header().unwrap().cluster_id();
        let first = new.get("backup/", Some(etcd_client::GetOptions::new().with_prefix())).await.unwrap();
        assert_ne!(first.header().unwrap().cluster_id(), old_cluster, "a restored cluster has an id of its own");
        assert_eq!(
            first.header().unwrap().revision(),
            revision,
            "the restored store starts at the snapshot's revision"
        );
        assert_eq!(first.kvs().len(), covered.len(), "exactly the keys written up to the snapshot's revision");
        for ((key, value, at), kv) in covered.iter().zip(first.kvs()) {
            assert_eq!((kv.key_str().unwrap(), kv.value_str().unwrap()), (key.as_str(), value.as_str()));
            assert_eq!((kv.mod_revision(), kv.create_revision(), kv.version()), (*at, *at, 1), "{key}");
        }
        for member in &restored.members {
            let mut client = etcd_client::Client::connect([member.endpoint.clone()], None).await.unwrap();
            let options = etcd_client::GetOptions::new().with_prefix().with_count_only().with_serializable();
            let count = client.get("backup/", Some(options)).await.unwrap().count();
            assert_eq!(count, covered.len() as i64, "{}: every member holds the restored keys", member.endpoint);
        }
        let put = new.put("after-restore", "yes", None).await.unwrap();
        assert_eq!(
            put.header().unwrap().revision(),
            revision + 1,
            "the restored cluster goes on from the snapshot's revision"
        );
    });

    // The real etcdctl saves a snapshot from Keel that keelctl reads (the checksum etcdctl checks holds).
    let from_etcdctl = scratch.path().join("etcdctl.snap");
    etcdctl_run(&endpoints[0], &["snapshot", "save", &from_etcdctl.display().to_string()]);
    let status = snapshot_status(&from_etcdctl);
    assert_eq!(status["totalKey"].as_u64().unwrap(), acknowledged.len() as u64, "{status}");
}
