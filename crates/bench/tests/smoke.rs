//! A short run of every workload against a real Keel member and a real etcd (Debian's etcd-server),
//! checking each JSON result: every request answered, no error, every watch event delivered.
//! Benchmarks are not tests: this only shows the tool works; `bench/compare.sh` measures.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server {
    child: Child,
    endpoint: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The `keel` binary `cargo test --workspace` built next to this one.
fn keel_binary() -> PathBuf {
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_keel-bench"));
    let keel = bench.with_file_name("keel");
    assert!(
        keel.exists(),
        "{} is missing: run the workspace's tests (cargo test --workspace) so it is built",
        keel.display()
    );
    keel
}

fn start(binary: &Path) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let (client, peer) = (free_port(), free_port());
    let client_url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let log = std::fs::File::create(dir.path().join("log")).unwrap();
    let child = Command::new(binary)
        .args(["--data-dir", dir.path().join("data").to_str().unwrap()])
        .args(["--listen-client-urls", &client_url, "--advertise-client-urls", &client_url])
        .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
        .args(["--initial-cluster", &format!("default={peer_url}")])
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    let endpoint = format!("127.0.0.1:{client}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(&endpoint).is_err() {
        assert!(Instant::now() < deadline, "{} did not start", binary.display());
        std::thread::sleep(Duration::from_millis(50));
    }
    Server { child, endpoint, _dir: dir }
}

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
        let result = bench(&server.endpoint, &global, workload);
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
    let watch =
        bench(&server.endpoint, &["--clients", "2"], &["watch", "--watchers", "20", "--streams", "4", "--puts", "100"]);
    assert_eq!(watch["extra"]["events"], 2000, "{watch}");
    assert_eq!(watch["errors"], 0, "{watch}");
}

#[test]
fn every_workload_runs_against_keel() {
    every_workload_runs_cleanly_against(&start(&keel_binary()));
}

#[test]
fn every_workload_runs_against_the_real_etcd() {
    every_workload_runs_cleanly_against(&start(Path::new("/usr/bin/etcd")));
}

#[test]
fn a_server_that_is_not_there_is_a_clear_failure() {
    let output = Command::new(env!("CARGO_BIN_EXE_keel-bench"))
        .args(["--endpoints", &format!("127.0.0.1:{}", free_port()), "--no-progress", "put"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("is the server running?"), "{stderr}");
}
