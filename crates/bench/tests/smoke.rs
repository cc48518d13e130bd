//! A short run of every workload against a real Keel member and a real etcd (Debian's etcd-server),
//! checking each JSON result: every request answered, no error, every watch event delivered.
//! Benchmarks are not tests: this only shows the tool works; `keel-bench compare` measures.

use keel_testkit::Server;
use std::process::Command;

/// Runs keel-bench; returns its JSON result.
fn bench(endpoint: &str, global: &[&str], workload: &[&str]) -> serde_json::Value {
    let out = tempfile::NamedTempFile::new().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_keel-bench"))
        .args(["--endpoints", endpoint, "--no-progress", "--json", out.path().to_str().unwrap()])
        .args(global)
        .args(workload)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "keel-bench {workload:?} failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("Latency histogram"), "{stdout}");
    serde_json::from_slice(&std::fs::read(out.path()).unwrap()).unwrap()
}

fn every_workload_runs_cleanly_against(server: &Server) {
    let global = ["--clients", "8", "--conns", "2", "--total", "400"];
    let workloads: [&[&str]; 7] = [
        &["put", "--key-size", "16", "--val-size", "256", "--key-space-size", "1000"],
        &["range", "--consistency", "l"],
        &["range", "--consistency", "s", "--prefix-keys", "50"],
        &["txn-put", "--txn-ops", "3", "--key-space-size", "100"],
        &["lease-keepalive"],
        &["mixed", "--read-ratio", "0.5", "--key-space-size", "200"],
        &["put", "--sequential-keys", "--key-size", "32", "--key-space-size", "400"],
    ];
    for workload in workloads {
        let result = bench(&server.client_address(), &global, workload);
        assert_eq!(result["ok"], 400, "{workload:?}: {result}");
        assert_eq!(result["errors"], 0, "{workload:?}: {result}");
        let latency = &result["latency_ms"];
        assert!(
            latency["p50"].as_f64().unwrap() > 0.0 && latency["p50"].as_f64() <= latency["max"].as_f64(),
            "{result}"
        );
        let counted: u64 =
            result["histogram"].as_array().unwrap().iter().map(|bucket| bucket["count"].as_u64().unwrap()).sum();
        assert_eq!(counted, 400, "the histogram holds every request: {result}");
    }
    let watch = bench(
        &server.client_address(),
        &["--clients", "2"],
        &["watch", "--watchers", "20", "--streams", "4", "--puts", "100"],
    );
    assert_eq!(watch["extra"]["events"], 2000, "{watch}");
    assert_eq!(watch["errors"], 0, "{watch}");
}

#[test]
fn every_workload_runs_against_keel() {
    every_workload_runs_cleanly_against(&Server::keel(&[]));
}

#[test]
fn every_workload_runs_against_the_real_etcd() {
    every_workload_runs_cleanly_against(&Server::etcd(&[]));
}

#[test]
fn a_server_that_is_not_there_is_a_clear_failure() {
    let output = Command::new(env!("CARGO_BIN_EXE_keel-bench"))
        // A fresh loopback address of the kit's: nothing listens there.
        .args(["--endpoints", &format!("{}:2379", keel_testkit::fresh_host()), "--no-progress", "put"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("is the server running?"), "{stderr}");
}
