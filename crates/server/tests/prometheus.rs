//! The shipped dashboard and alert rules against a real Prometheus (Debian's `prometheus`) scraping a
//! 3-member Keel cluster under write load: every member reads `etcd_server_has_leader` 1, the rules load
//! and evaluate, and every expression of the Grafana dashboard returns data
//! (`observability/check_queries.py --require-data`).

mod common;

use common::{Cluster, fresh_host, try_http_get};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A Prometheus server, killed when dropped.
struct Prometheus {
    child: Child,
    url: String,
    log: PathBuf,
    _scratch: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    fn start(targets: &[String]) -> Prometheus {
        let binary = which("prometheus");
        let scratch = tempfile::tempdir().unwrap();
        let rules = repository().join("observability/prometheus/alerts.yml");
        let targets: Vec<String> =
            targets.iter().map(|endpoint| format!("'{}'", endpoint.trim_start_matches("http://"))).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - '{}'\nscrape_configs:\n  - job_name: keel\n    static_configs:\n      - targets: [{}]\n",
            rules.display(),
            targets.join(", ")
        );
        let config_path = scratch.path().join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let host = fresh_host();
        let log = scratch.path().join("prometheus.log");
        let output = std::fs::File::create(&log).unwrap();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--storage.tsdb.path={}", scratch.path().join("data").display()))
            .arg(format!("--web.listen-address={host}:9090"))
            .stdout(Stdio::from(output.try_clone().unwrap()))
            .stderr(Stdio::from(output))
            .spawn()
            .unwrap();
        Prometheus { child, url: format!("http://{host}:9090"), log, _scratch: scratch }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET on Prometheus' HTTP API; the JSON answer (None until the server answers).
    fn api(&self, path_and_query: &str) -> Option<serde_json::Value> {
        match try_http_get(&self.url, path_and_query)? {
            (200, body) => serde_json::from_str(&body).ok(),
            _ => None,
        }
    }
}

fn which(program: &str) -> PathBuf {
    let found = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|dir| dir.join(program)).find(|path| path.is_file()));
    found
        .unwrap_or_else(|| panic!("`{program}` is not installed: scripts/test.sh installs Debian's prometheus package"))
}

#[test]
fn a_real_prometheus_scrapes_the_cluster_and_every_dashboard_query_has_data() {
    let cluster = Cluster::start(3, &[]);
    let prometheus = Prometheus::start(&cluster.endpoints());
    // Write load for the rate windows, from a thread, while Prometheus scrapes.
    let endpoints = cluster.endpoints();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                let mut client = etcd_client::Client::connect(endpoints, None).await.unwrap();
                let mut written = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    client.put(format!("load{}", written % 100), "v", None).await.unwrap();
                    client.get(format!("load{}", written % 100), None).await.unwrap();
                    written += 1;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                written
            })
        })
    };

    // Every member is scraped, and says it has a leader.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = prometheus.api("/api/v1/query?query=etcd_server_has_leader");
        let results = answer.as_ref().and_then(|json| json["data"]["result"].as_array().cloned()).unwrap_or_default();
        let leaders: Vec<&str> = results.iter().filter_map(|series| series["value"][1].as_str()).collect();
        if leaders.len() == 3 {
            assert!(leaders.iter().all(|value| *value == "1"), "etcd_server_has_leader per member: {results:?}");
            break;
        }
        assert!(Instant::now() < deadline, "Prometheus did not scrape 3 members: {answer:?}\n{}", prometheus.log());
        std::thread::sleep(Duration::from_millis(500));
    }
    let answer = prometheus.api("/api/v1/query?query=sum(etcd_server_is_leader)").unwrap();
    assert_eq!(answer["data"]["result"][0]["value"][1], "1", "{answer}");

    // Rates need two samples in their window, and the targets' scrape must be healthy.
    std::thread::sleep(Duration::from_secs(8));
    let targets = prometheus.api("/api/v1/targets").unwrap();
    for target in targets["data"]["activeTargets"].as_array().unwrap() {
        assert_eq!(target["health"], "up", "{target}");
    }
    let rules = prometheus.api("/api/v1/rules").unwrap();
    let groups = rules["data"]["groups"].as_array().unwrap();
    let loaded: Vec<&serde_json::Value> = groups.iter().flat_map(|group| group["rules"].as_array().unwrap()).collect();
    assert!(loaded.len() >= 15, "alert rules loaded: {}", loaded.len());
    for rule in &loaded {
        assert_eq!(rule["health"], "ok", "rule evaluates: {rule}");
    }

    let dashboard = repository().join("observability/grafana/keel-dashboard.json");
    let checker = repository().join("observability/check_queries.py");
    let output = Command::new("python3")
        .arg(&checker)
        .arg(&prometheus.url)
        .arg(&dashboard)
        .arg("--require-data")
        .output()
        .unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = load.join().unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    println!("{report}");
    assert!(
        output.status.success(),
        "a dashboard query failed or had no data ({written} writes):\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The alert rules pass promtool's checks and their own unit tests (each case names the alerts that must
/// fire), and the dashboard JSON is what its generator makes.
#[test]
fn alert_rules_pass_promtool_and_the_dashboard_is_current() {
    let dir = repository().join("observability");
    let promtool = which("promtool");
    for arguments in [["check", "rules", "alerts.yml"], ["test", "rules", "alerts_test.yml"]] {
        let output = Command::new(&promtool).args(arguments).current_dir(dir.join("prometheus")).output().unwrap();
        assert!(
            output.status.success(),
            "promtool {arguments:?}:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let output = Command::new("python3").arg(dir.join("grafana/build_dashboard.py")).arg("--check").output().unwrap();
    assert!(
        output.status.success(),
        "keel-dashboard.json is stale: run observability/grafana/build_dashboard.py\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
