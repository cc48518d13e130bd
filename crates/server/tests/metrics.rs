//! `/metrics` with etcd's names: after a known workload, the counters have the values the real etcd
//! shows for the same workload (side by side), and the gauges agree with `Status`; a slow disk (the
//! test-only fsync delay) moves the fsync histogram and is warned about; a cluster reports its peers'
//! round trips and bytes.

mod common;

use common::{Cluster, Server, http_get, http_get_accepting};
use etcd_client::{Client, Compare, CompareOp, DeleteOptions, Txn, TxnOp};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// One sample: the metric name, its labels as written, and its value.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: String,
    value: f64,
}

fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, labels.trim_end_matches('}')),
                None => (series, ""),
            };
            Some(Sample { name: name.to_string(), labels: labels.to_string(), value: value.parse().ok()? })
        })
        .collect()
}

async fn scrape(endpoint: &str) -> Vec<Sample> {
    let endpoint = endpoint.to_string();
    let (status, body) = tokio::task::spawn_blocking(move || http_get(&endpoint, "/metrics")).await.unwrap();
    assert_eq!(status, 200, "{body}");
    parse(&body)
}

/// The value of `name` in the sample whose labels contain every one of `labels` (0 when absent, as a
/// counter that never moved is absent on both servers' label families).
fn value(samples: &[Sample], name: &str, labels: &[&str]) -> f64 {
    samples
        .iter()
        .find(|sample| sample.name == name && labels.iter().all(|label| sample.labels.contains(label)))
        .map_or(0.0, |sample| sample.value)
}

/// The workload both servers get: 10 puts, 2 deletes, 5 gets, one txn (a compare, then two puts), one
/// refused put (empty key).
async fn workload(client: &mut Client) {
    for index in 0..10 {
        client.put(format!("m{index}"), "v", None).await.unwrap();
    }
    client.delete("m0", None).await.unwrap();
    client.delete("m1", Some(DeleteOptions::new())).await.unwrap();
    for _ in 0..5 {
        client.get("m5", None).await.unwrap();
    }
    let txn = Txn::new()
        .when([Compare::value("m2", CompareOp::Equal, "v")])
        .and_then([TxnOp::put("m2", "w", None), TxnOp::put("m3", "w", None)]);
    assert!(client.txn(txn).await.unwrap().succeeded());
    assert!(client.put("", "v", None).await.is_err());
}

const COUNTERS: [(&str, &[&str]); 7] = [
    ("etcd_mvcc_put_total", &[]),
    ("etcd_mvcc_delete_total", &[]),
    ("etcd_mvcc_txn_total", &[]),
    ("grpc_server_handled_total", &["grpc_method=\"Put\"", "grpc_code=\"OK\""]),
    ("grpc_server_handled_total", &["grpc_method=\"Put\"", "grpc_code=\"InvalidArgument\""]),
    ("grpc_server_handled_total", &["grpc_method=\"Txn\"", "grpc_code=\"OK\""]),
    ("grpc_server_started_total", &["grpc_method=\"DeleteRange\""]),
];

#[tokio::test(flavor = "multi_thread")]
async fn counters_after_a_known_workload_match_etcd_and_gauges_match_status() {
    let (etcd, keel) = tokio::task::spawn_blocking(|| (Server::etcd(&[]), Server::keel(&[]))).await.unwrap();
    let mut deltas = Vec::new();
    let mut keys = Vec::new();
    for server in [&etcd, &keel] {
        let mut client = server.client().await;
        let before = scrape(&server.endpoint).await;
        workload(&mut client).await;
        let after = scrape(&server.endpoint).await;
        let delta: Vec<f64> =
            COUNTERS.iter().map(|(name, labels)| value(&after, name, labels) - value(&before, name, labels)).collect();
        deltas.push(delta);

        // Gauges against what Status and a read say at the same moment.
        let status = client.status().await.unwrap();
        let samples = scrape(&server.endpoint).await;
        let revision = client.get("m5", None).await.unwrap().header().unwrap().revision();
        assert_eq!(
            value(&samples, "etcd_debugging_mvcc_current_revision", &[]),
            revision as f64,
            "{}",
            server.endpoint
        );
        assert_eq!(
            value(&samples, "etcd_mvcc_db_total_size_in_bytes", &[]),
            status.db_size() as f64,
            "{}",
            server.endpoint
        );
        assert_eq!(
            value(&samples, "etcd_debugging_mvcc_db_total_size_in_bytes", &[]),
            status.db_size() as f64,
            "{}",
            server.endpoint
        );
        assert_eq!(value(&samples, "etcd_server_has_leader", &[]), 1.0);
        assert_eq!(value(&samples, "etcd_server_is_leader", &[]), 1.0);
        assert_eq!(value(&samples, "etcd_server_quota_backend_bytes", &[]), 2.0 * 1024.0 * 1024.0 * 1024.0);
        assert!(value(&samples, "etcd_server_proposals_applied_total", &[]) >= 13.0);
        assert!(value(&samples, "etcd_disk_wal_fsync_duration_seconds_count", &[]) >= 13.0);
        assert!(value(&samples, "etcd_disk_backend_commit_duration_seconds_count", &[]) >= 1.0);
        assert!(value(&samples, "process_resident_memory_bytes", &[]) > 1e6);
        keys.push(value(&samples, "etcd_debugging_mvcc_keys_total", &[]));
    }
    assert_eq!(keys[0], keys[1], "etcd_debugging_mvcc_keys_total (etcd, keel)");
    println!(
        "counter deltas (etcd, keel): {:?}",
        COUNTERS.iter().zip(deltas[0].iter().zip(&deltas[1])).collect::<Vec<_>>()
    );
    assert_eq!(
        deltas[0], deltas[1],
        "Keel's counters moved differently from etcd's for the same workload: {COUNTERS:?}"
    );
    assert_eq!(deltas[1][0], 12.0, "10 puts and the txn's 2");

    // Keel's in-use size is the one Status reports (one measurement, shared).
    let mut client = keel.client().await;
    let status = client.status().await.unwrap();
    let samples = scrape(&keel.endpoint).await;
    assert_eq!(value(&samples, "etcd_mvcc_db_total_size_in_use_in_bytes", &[]), status.raft_used_db_size() as f64);
}

/// The fraction of `histogram`'s observations above `bound` seconds (its `le` buckets are cumulative).
fn share_above(samples: &[Sample], histogram: &str, bound: &str) -> f64 {
    let count = value(samples, &format!("{histogram}_count"), &[]);
    let within = value(samples, &format!("{histogram}_bucket"), &[&format!("le=\"{bound}\"")]);
    if count == 0.0 { 0.0 } else { (count - within) / count }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_wal_fsync_moves_the_histogram_and_is_warned_about() {
    let (normal, slow) =
        tokio::task::spawn_blocking(|| (Server::keel(&[]), Server::keel(&["--test-wal-fsync-delay", "25ms"])))
            .await
            .unwrap();
    for server in [&normal, &slow] {
        let mut client = server.client().await;
        // Writes for longer than the warning window (5 s), so at least one window is read with samples in it.
        let started = Instant::now();
        let mut writes = 0;
        while started.elapsed() < Duration::from_secs(7) {
            client.put(format!("slow{writes}"), "v", None).await.unwrap();
            writes += 1;
        }
        assert!(writes >= 20, "{writes} writes");
    }
    let warning = "WAL fsync p99 is over 10 ms";
    let samples = scrape(&slow.endpoint).await;
    let slow_share = share_above(&samples, "etcd_disk_wal_fsync_duration_seconds", "0.016");
    assert!(slow_share > 0.9, "with a 25 ms delay, {slow_share} of fsyncs took over 16 ms");
    assert!(slow.log().contains(warning), "no slow-fsync warning in the log:\n{}", slow.log());
    let line = slow.log().lines().find(|line| line.contains(warning)).unwrap().to_string();
    assert!(line.contains("p99_ms=") && line.contains("fsyncs="), "the warning gives its figures: {line}");

    let samples = scrape(&normal.endpoint).await;
    let normal_share = share_above(&samples, "etcd_disk_wal_fsync_duration_seconds", "0.016");
    assert!(normal_share < 0.5, "without the delay, {normal_share} of fsyncs took over 16 ms");
    assert!(!normal.log().contains(warning), "a warning without the delay:\n{}", normal.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_reports_peer_round_trips_bytes_and_one_leader() {
    let metrics_url = format!("http://{}:9090", common::fresh_host());
    let cluster = tokio::task::spawn_blocking(|| Cluster::start(3, &[])).await.unwrap();
    let mut client = Client::connect(cluster.endpoints(), None).await.unwrap();
    for index in 0..20 {
        client.put(format!("peer{index}"), "v", None).await.unwrap();
    }
    // The prober runs every second.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut leaders = 0.0;
    for member in &cluster.members {
        let samples = scrape(&member.endpoint).await;
        assert_eq!(value(&samples, "etcd_server_has_leader", &[]), 1.0, "{}", member.endpoint);
        leaders += value(&samples, "etcd_server_is_leader", &[]);
        let probes: Vec<&Sample> =
            samples.iter().filter(|sample| sample.name == "etcd_network_peer_round_trip_time_seconds_count").collect();
        assert_eq!(probes.len(), 2, "one round-trip series per peer: {probes:?}");
        assert!(probes.iter().all(|probe| probe.value >= 1.0 && probe.labels.contains("To=")), "{probes:?}");
        let sent: f64 = samples
            .iter()
            .filter(|sample| sample.name == "etcd_network_peer_sent_bytes_total")
            .map(|sample| sample.value)
            .sum();
        let received: f64 = samples
            .iter()
            .filter(|sample| sample.name == "etcd_network_peer_received_bytes_total")
            .map(|sample| sample.value)
            .sum();
        assert!(sent > 0.0 && received > 0.0, "{}: sent {sent}, received {received}", member.endpoint);
        assert!(value(&samples, "etcd_mvcc_put_total", &[]) >= 20.0, "every member applies every put");
    }
    assert_eq!(leaders, 1.0, "exactly one member says it leads");

    // --listen-metrics-urls: a member with its own metrics listener serves /metrics and /health there.
    let flag = metrics_url.clone();
    let single = tokio::task::spawn_blocking(move || Server::keel(&["--listen-metrics-urls", &flag])).await.unwrap();
    let samples = scrape(&metrics_url).await;
    assert_eq!(value(&samples, "etcd_server_has_leader", &[]), 1.0);
    let health = tokio::task::spawn_blocking(move || http_get(&metrics_url, "/health")).await.unwrap();
    assert_eq!(health, (200, r#"{"health":"true"}"#.to_string()));
    drop(single);
}

/// The families the issue names, as etcd's text format declares them (the peer ones need a cluster).
const FAMILIES: [&str; 24] = [
    "etcd_server_has_leader",
    "etcd_server_is_leader",
    "etcd_server_leader_changes_seen_total",
    "etcd_server_proposals_committed_total",
    "etcd_server_proposals_applied_total",
    "etcd_server_proposals_pending",
    "etcd_server_proposals_failed_total",
    "etcd_disk_wal_fsync_duration_seconds",
    "etcd_disk_backend_commit_duration_seconds",
    "etcd_mvcc_db_total_size_in_bytes",
    "etcd_mvcc_db_total_size_in_use_in_bytes",
    "etcd_server_quota_backend_bytes",
    "etcd_mvcc_put_total",
    "etcd_mvcc_delete_total",
    "etcd_mvcc_range_total",
    "etcd_mvcc_txn_total",
    "etcd_debugging_mvcc_keys_total",
    "grpc_server_handled_total",
    "grpc_server_started_total",
    "etcd_server_slow_apply_total",
    "etcd_server_heartbeat_send_failures_total",
    "process_resident_memory_bytes",
    "process_cpu_seconds_total",
    "etcd_network_client_grpc_sent_bytes_total",
];

/// The families a text exposition declares (`# TYPE` lines), with their types.
fn families(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| line.strip_prefix("# TYPE ")?.split_once(' '))
        .map(|(name, kind)| (name.to_string(), kind.to_string()))
        .collect()
}

/// Sample lines that do not belong to the family declared above them, as the text format 0.0.4 requires:
/// the family's own name, or with `_bucket`, `_sum` or `_count` for a histogram or summary.
fn undeclared_samples(text: &str) -> Vec<String> {
    let mut family = ("", "");
    let mut stray = Vec::new();
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        if let Some(declared) = line.strip_prefix("# TYPE ") {
            family = declared.split_once(' ').unwrap_or((declared, ""));
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let name = line.split(['{', ' ']).next().unwrap_or("");
        let suffix = name.strip_prefix(family.0);
        let belongs = matches!(
            (suffix, family.1),
            (Some(""), _) | (Some("_bucket" | "_sum" | "_count"), "histogram") | (Some("_sum" | "_count"), "summary")
        );
        if !belongs {
            stray.push(line.to_string());
        }
    }
    stray
}

/// promtool's findings on a text exposition: (parse errors, lint problems by family).
fn promtool_findings(text: &str) -> (Vec<String>, BTreeSet<String>) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package; scripts/test.sh installs it)");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    let printed = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    let errors = printed.lines().filter(|line| line.contains("error")).map(str::to_string).collect();
    let problems = printed.lines().filter(|line| !line.contains("error")).map(str::to_string).collect();
    (errors, problems)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_exposition_is_etcds_text_format_unless_openmetrics_is_asked_for() {
    let (etcd, keel) = tokio::task::spawn_blocking(|| (Server::etcd(&[]), Server::keel(&[]))).await.unwrap();
    let mut expositions = Vec::new();
    for server in [&etcd, &keel] {
        let mut client = server.client().await;
        client.put("exposition", "v", None).await.unwrap();
        client.get("exposition", None).await.unwrap();
        let endpoint = server.endpoint.clone();
        // What curl and most scripts send.
        let exposition =
            tokio::task::spawn_blocking(move || http_get_accepting(&endpoint, "/metrics", "*/*")).await.unwrap();
        assert_eq!(exposition.0, 200, "{}", server.endpoint);
        expositions.push(exposition);
    }
    let [(_, etcd_type, etcd_text), (_, keel_type, keel_text)] = &expositions[..] else { unreachable!() };
    assert_eq!(keel_type, etcd_type, "Content-Type of /metrics (keel, etcd)");

    // The same families, under the same names, of the same types.
    let (etcd_families, keel_families) = (families(etcd_text), families(keel_text));
    for name in FAMILIES {
        assert!(etcd_families.contains_key(name), "etcd declares no {name}: the reference changed");
        assert_eq!(keel_families.get(name), etcd_families.get(name), "{name}: type (keel, etcd)");
    }
    let differing: Vec<_> = keel_families
        .iter()
        .filter(|(name, kind)| etcd_families.get(*name).is_some_and(|reference| reference != *kind))
        .collect();
    assert!(differing.is_empty(), "families whose type differs from etcd's: {differing:?}");
    let shared = keel_families.keys().filter(|name| etcd_families.contains_key(*name)).count();
    println!("families: keel {}, etcd {}, both {shared}", keel_families.len(), etcd_families.len());

    // Every sample sits under its family's declaration, as in etcd's own output.
    assert_eq!(undeclared_samples(etcd_text), Vec::<String>::new(), "etcd's own exposition: the check is wrong");
    assert_eq!(undeclared_samples(keel_text), Vec::<String>::new(), "Keel's samples outside their family");
    assert!(!keel_text.contains("# EOF") && !keel_text.contains("# UNIT"), "OpenMetrics-only lines in the text format");

    // Prometheus's own parser reads it; its lint finds nothing about shared families that it does not find in
    // etcd's too (etcd's names break a few naming rules, and Keel keeps etcd's names).
    let (etcd_errors, etcd_problems) = promtool_findings(etcd_text);
    let (keel_errors, keel_problems) = promtool_findings(keel_text);
    assert!(etcd_errors.is_empty(), "promtool on etcd's exposition: {etcd_errors:?}");
    assert!(keel_errors.is_empty(), "promtool cannot parse Keel's exposition: {keel_errors:?}");
    let own: Vec<_> = keel_problems
        .iter()
        .filter(|problem| {
            let family = problem.split(' ').next().unwrap_or("");
            etcd_families.contains_key(family) && !etcd_problems.contains(*problem)
        })
        .collect();
    assert!(own.is_empty(), "promtool finds problems in Keel's families that etcd's do not have: {own:?}");

    // Prometheus asks for OpenMetrics first, and gets it: the same samples, `# EOF` last.
    let endpoint = keel.endpoint.clone();
    let accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let (status, content_type, openmetrics) =
        tokio::task::spawn_blocking(move || http_get_accepting(&endpoint, "/metrics", accept)).await.unwrap();
    assert_eq!(status, 200);
    assert!(content_type.starts_with("application/openmetrics-text"), "{content_type}");
    assert!(openmetrics.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
    let names = |text: &str| parse(text).into_iter().map(|sample| sample.name).collect::<BTreeSet<_>>();
    assert_eq!(names(&openmetrics), names(keel_text), "the two formats carry the same samples");
}
