//! `keelctl defrag` one member at a time with `--if-above`, and `keelctl check disk` / `check perf`
//! verdicts.

mod common;

use common::{Cluster, keelctl, keelctl_run};
use etcd_client::{Client, CompactionOptions, DeleteOptions};

#[test]
fn defrag_if_above_defragments_members_one_at_a_time_leader_last_and_only_where_it_pays() {
    let cluster = Cluster::start(3, &[]);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let leader_endpoint = runtime.block_on(async {
        let mut client = Client::connect(cluster.endpoints(), None).await.unwrap();
        let value = "x".repeat(20_000);
        for index in 0..300 {
            client.put(format!("big{index:04}"), value.as_str(), None).await.unwrap();
        }
        let deleted = client.delete("big", Some(DeleteOptions::new().with_prefix())).await.unwrap();
        let revision = deleted.header().unwrap().revision();
        client.compact(revision, Some(CompactionOptions::new().with_physical())).await.unwrap();
        // The compaction answered once applied where it was sent; the others may be a moment behind.
        // Wait until each has applied it (a serializable read below it is refused) before any Status:
        // a member measures its size in use on demand and reuses the figure for up to 30 s.
        for member in &cluster.members {
            let mut one = Client::connect([member.endpoint.clone()], None).await.unwrap();
            let below = etcd_client::GetOptions::new().with_serializable().with_revision(revision - 1);
            let mut compacted = false;
            for _ in 0..100 {
                if one.get("big0000", Some(below.clone())).await.is_err() {
                    compacted = true;
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            assert!(compacted, "{} did not apply the compaction", member.endpoint);
        }
        let mut leader = None;
        for member in &cluster.members {
            let mut one = Client::connect([member.endpoint.clone()], None).await.unwrap();
            let status = one.status().await.unwrap();
            if status.leader() == status.header().unwrap().member_id() {
                leader = Some(member.endpoint.clone());
            }
        }
        leader.expect("a leader")
    });
    let endpoints = cluster.endpoints().join(",");
    let first = keelctl_run(&["--endpoints", &endpoints, "defrag", "--if-above", "50%"]);
    let lines: Vec<&str> = first.lines().collect();
    assert_eq!(lines.len(), 3, "{first}");
    assert!(lines.iter().all(|line| line.contains("defragmented in")), "every member is mostly free space:\n{first}");
    assert!(lines[2].contains(&leader_endpoint), "the leader goes last:\n{first}");
    let again = keelctl_run(&["--endpoints", &endpoints, "defrag", "--if-above", "50%"]);
    assert_eq!(again.matches("skipped").count(), 3, "nothing left to reclaim:\n{again}");
}

#[test]
fn check_disk_and_check_perf_give_verdicts_and_exit_by_them() {
    let scratch = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(keelctl())
        .args(["check", "disk", "--data-dir", &scratch.path().display().to_string(), "--writes", "200"])
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&output.stdout);
    let verdict = printed.lines().next().unwrap_or_default();
    assert!(verdict.starts_with("PASS: 200 appends") || verdict.starts_with("FAIL: 200 appends"), "{printed}");
    assert_eq!(output.status.success(), verdict.starts_with("PASS"), "the exit status follows the verdict: {printed}");
    assert_eq!(std::fs::read_dir(scratch.path()).unwrap().count(), 0, "the test file is removed");

    let cluster = Cluster::start(1, &[]);
    let output = std::process::Command::new(keelctl())
        .args(["--endpoints", &cluster.endpoints()[0], "check", "perf", "--load", "s", "--duration", "3"])
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(printed.contains("Throughput is") && printed.contains("Slowest request took"), "{printed}");
    assert_eq!(output.status.success(), printed.trim_end().ends_with("\nPASS"), "{printed}");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let left = runtime.block_on(async {
        let mut client = Client::connect(cluster.endpoints(), None).await.unwrap();
        let options = etcd_client::GetOptions::new().with_prefix().with_count_only();
        client.get("/keelctl-check-perf/", Some(options)).await.unwrap().count()
    });
    assert_eq!(left, 0, "check perf deletes what it wrote");
}
