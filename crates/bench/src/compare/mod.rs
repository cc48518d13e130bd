//! `keel-bench compare`: Keel side by side with the real etcd 3.4 (Debian's etcd-server), in one run on
//! one machine, and `BENCHMARKS.md` from it (through `bench/report.py`).
//!
//! For each topology (1 member, then 3) it starts an etcd cluster and a Keel cluster with the same
//! flags and fresh data dirs (the test kit's clusters: each member on a loopback address of its own), moves
//! both leaderships to the first member, then runs every workload against each, etcd first in odd rounds
//! and Keel first in even rounds (the report takes the median of the rounds). Then the memory and size
//! workload: a fresh single member of each is loaded with 1 million keys (key 32 B, value 256 B), its RSS
//! and db size are read, and it is stopped with SIGTERM and restarted, timed until it answers a
//! linearizable read. Every keel-bench run is this binary run as a child process, so a run that fails or
//! hangs is reported, never fatal.
//!
//! The work dir (by default `target/bench/<date>`) keeps everything: data dirs, member logs, one JSON per
//! run (`results/`), `runs.jsonl`, `machine.json`, `clusters.json`, `memory.json`.

mod record;

use anyhow::{Context, bail};
use keel_testkit::{Cluster, Server};
use record::{JsonFile, directory_bytes, file_bytes, proc_status_kb};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

#[derive(Debug, clap::Args)]
pub struct CompareOptions {
    /// Small totals and 100k keys instead of 1M: a smoke check, not figures to quote.
    #[arg(long)]
    quick: bool,
    /// Rounds of every workload on every server.
    #[arg(long, default_value_t = 2)]
    rounds: u32,
    /// The report (written by bench/report.py from the work dir).
    #[arg(long, default_value = "BENCHMARKS.md")]
    out: PathBuf,
    /// Where data dirs, logs and results go (must be empty or absent) [default: target/bench/<date>].
    #[arg(long)]
    workdir: Option<PathBuf>,
    /// The keel binary [default: the one next to this keel-bench].
    #[arg(long)]
    keel: Option<PathBuf>,
    /// The etcd binary.
    #[arg(long, default_value = "/usr/bin/etcd")]
    etcd: PathBuf,
    /// Only measure: do not run bench/report.py.
    #[arg(long)]
    no_report: bool,
}

/// One workload: name, clients, connections, total, total with --quick, keel-bench arguments.
struct Workload {
    name: &'static str,
    clients: u32,
    conns: u32,
    total: u64,
    quick_total: u64,
    arguments: String,
}

fn workloads(quick: bool) -> Vec<Workload> {
    let watch_puts = if quick { 200 } else { 2000 };
    let row = |name, clients, conns, total, quick_total, arguments: &str| Workload {
        name,
        clients,
        conns,
        total,
        quick_total,
        arguments: arguments.to_string(),
    };
    vec![
        row("put-1c", 1, 1, 2000, 500, "put --key-size 16 --val-size 256 --key-space-size 100000"),
        row("put-16c", 16, 1, 20000, 5000, "put --key-size 16 --val-size 256 --key-space-size 100000"),
        row("put-64c", 64, 4, 40000, 10000, "put --key-size 16 --val-size 256 --key-space-size 100000"),
        row("range-l-64c", 64, 4, 40000, 10000, "range --consistency l --prefix-keys 1 --val-size 256"),
        row("range-s-64c", 64, 4, 40000, 10000, "range --consistency s --prefix-keys 1 --val-size 256"),
        row("range-l-prefix100-16c", 16, 1, 10000, 2000, "range --consistency l --prefix-keys 100 --val-size 256"),
        row(
            "txn-put-64c",
            64,
            4,
            20000,
            5000,
            "txn-put --txn-ops 1 --key-size 16 --val-size 256 --key-space-size 100000",
        ),
        Workload {
            name: "watch-1000w",
            clients: 1,
            conns: 1,
            total: watch_puts,
            quick_total: watch_puts,
            arguments: format!("watch --watchers 1000 --streams 10 --puts {watch_puts} --val-size 256"),
        },
        row("lease-keepalive-64c", 64, 4, 40000, 10000, "lease-keepalive"),
        row(
            "mixed-r90-64c",
            64,
            4,
            40000,
            10000,
            "mixed --read-ratio 0.9 --key-space-size 10000 --key-size 16 --val-size 256 --consistency l",
        ),
    ]
}

struct Run {
    options: CompareOptions,
    workdir: PathBuf,
    keel: PathBuf,
    bench: PathBuf,
    runs: PathBuf,
}

pub fn compare(options: CompareOptions) -> anyhow::Result<()> {
    let bench = std::env::current_exe().context("finding this keel-bench")?;
    let keel = options.keel.clone().unwrap_or_else(|| bench.with_file_name("keel"));
    if !keel.exists() {
        bail!("no keel binary at {} (build it: cargo build --release -p keel-server, or pass --keel)", keel.display());
    }
    if !options.etcd.exists() {
        bail!("no etcd at {} (apt-get install etcd-server, or pass --etcd)", options.etcd.display());
    }
    let workdir = match &options.workdir {
        Some(dir) => dir.clone(),
        None => PathBuf::from("target/bench").join(record::timestamp_for_path()),
    };
    if std::fs::read_dir(&workdir).is_ok_and(|mut entries| entries.next().is_some()) {
        bail!("work dir {} is not empty; the servers need fresh data dirs", workdir.display());
    }
    for sub in ["data", "logs", "results"] {
        std::fs::create_dir_all(workdir.join(sub))?;
    }
    let workdir = workdir.canonicalize()?;
    println!("== work dir {}", workdir.display());
    let run = Run { runs: workdir.join("runs.jsonl"), options, workdir, keel, bench };
    let started = Instant::now();
    run.machine_facts()?;
    run.fsync_probe("fsync_before")?;
    run.topology("1-member", 1)?;
    run.topology("3-member", 3)?;
    let keys = if run.options.quick { 100_000 } else { 1_000_000 };
    JsonFile::new(run.workdir.join("memory.json")).set("keys", json!(keys))?;
    run.memory("etcd", keys)?;
    run.memory("keel", keys)?;
    run.fsync_probe("fsync_after")?;
    let machine = JsonFile::new(run.workdir.join("machine.json"));
    machine.set("finished", json!(record::now_utc()))?;
    machine.set("wall_seconds", json!(started.elapsed().as_secs()))?;
    if run.options.no_report {
        println!("== measured; no report (--no-report); raw results in {}", run.workdir.display());
        return Ok(());
    }
    let status = Command::new("python3")
        .arg("bench/report.py")
        .arg(&run.workdir)
        .arg("--out")
        .arg(&run.options.out)
        .status()
        .context("running bench/report.py (from the repository root)")?;
    if !status.success() {
        bail!("bench/report.py failed; the raw results are in {}", run.workdir.display());
    }
    println!("== wrote {} (raw results in {})", run.options.out.display(), run.workdir.display());
    Ok(())
}

impl Run {
    fn program(&self, kind: &str) -> PathBuf {
        if kind == "etcd" { self.options.etcd.clone() } else { self.keel.clone() }
    }

    /// A cluster of `kind` with `members` members, started, ready, led by its first member.
    fn cluster(&self, name: &str, kind: &str, members: usize) -> anyhow::Result<Cluster> {
        let dir = self.workdir.join("data").join(name);
        let token = format!("bench-{name}");
        let mut cluster = Cluster::plan(self.program(kind), &dir, members, &token, &[], |_| {});
        for member in &mut cluster.members {
            member.log_path = self.workdir.join("logs").join(format!("{name}-{}.log", member_name(member)));
        }
        cluster.start_all().map_err(|error| anyhow::anyhow!("{name}: {error}"))?;
        if members > 1 {
            match cluster.move_leader_to(0) {
                Ok(()) => println!("== {name}: leader is m0"),
                Err(error) => eprintln!("keel-bench compare: {name}: {error}; going on"),
            }
        }
        println!("== started {name} ({kind}, {members} member(s), endpoints {})", cluster.endpoints().join(","));
        Ok(cluster)
    }

    fn topology(&self, topology: &str, members: usize) -> anyhow::Result<()> {
        let mut etcd = self.cluster(&format!("etcd-{topology}"), "etcd", members)?;
        let mut keel = self.cluster(&format!("keel-{topology}"), "keel", members)?;
        for round in 1..=self.options.rounds {
            println!("== {topology}, round {round} of {}", self.options.rounds);
            for workload in workloads(self.options.quick) {
                let order: [(&Cluster, &str); 2] = if round % 2 == 1 {
                    [(&etcd, "etcd"), (&keel, "keel")]
                } else {
                    [(&keel, "keel"), (&etcd, "etcd")]
                };
                for (position, (cluster, kind)) in order.into_iter().enumerate() {
                    self.bench(topology, cluster, kind, &workload, round, position + 1)?;
                }
            }
        }
        // The backends' batch commit (100 ms in both) reaches the db file.
        std::thread::sleep(Duration::from_secs(1));
        for (cluster, kind) in [(&etcd, "etcd"), (&keel, "keel")] {
            self.record_cluster(topology, cluster, kind)?;
        }
        for cluster in [&mut etcd, &mut keel] {
            for member in &mut cluster.members {
                member.stop_within(Duration::from_secs(30));
            }
        }
        Ok(())
    }

    /// One keel-bench run, recorded in runs.jsonl whatever happens.
    fn bench(
        &self,
        topology: &str,
        cluster: &Cluster,
        kind: &str,
        workload: &Workload,
        round: u32,
        position: usize,
    ) -> anyhow::Result<()> {
        let total = if self.options.quick { workload.quick_total } else { workload.total };
        let base = self.workdir.join("results").join(topology).join(format!("{}.{kind}.r{round}", workload.name));
        std::fs::create_dir_all(base.parent().expect("a results dir"))?;
        let (json_path, out_path) =
            (base.with_extension(format!("r{round}.json")), base.with_extension(format!("r{round}.out")));
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        let load = load.split(' ').next().unwrap_or("0").parse::<f64>().unwrap_or(0.0);
        let started = Instant::now();
        let timeout = if self.options.quick { 180 } else { 900 };
        let label = format!("{kind} {topology} {} r{round}", workload.name);
        let (status, exit) = if !alive(cluster) {
            std::fs::write(&out_path, "a member is not running\n")?;
            ("server down".to_string(), -1)
        } else {
            let arguments: Vec<&str> = workload.arguments.split_whitespace().collect();
            let output = Command::new("timeout")
                .args(["--kill-after=10", &timeout.to_string()])
                .arg(&self.bench)
                .args(["--endpoints", &cluster.endpoints().join(",")])
                .args(["--conns", &workload.conns.to_string(), "--clients", &workload.clients.to_string()])
                .args(["--total", &total.to_string(), "--label", &label, "--no-progress", "--json"])
                .arg(&json_path)
                .args(&arguments)
                .output()
                .context("running keel-bench")?;
            let mut text = output.stdout.clone();
            text.extend_from_slice(&output.stderr);
            std::fs::write(&out_path, &text)?;
            let code = output.status.code().unwrap_or(-1);
            let status = match code {
                _ if !alive(cluster) => "server died".to_string(),
                124 | 137 => format!("timed out after {timeout}s"),
                0 if file_bytes(&json_path) == 0 => "no JSON written".to_string(),
                0 => "ok".to_string(),
                code => format!("failed (exit {code})"),
            };
            (status, code)
        };
        record::append_line(
            &self.runs,
            &json!({
                "topology": topology, "workload": workload.name, "server": kind, "round": round,
                "position": position, "clients": workload.clients, "conns": workload.conns, "total": total,
                "arguments": workload.arguments, "status": status, "exit": exit, "json": json_path,
                "output": out_path, "wall_ms": started.elapsed().as_millis() as u64, "loadavg_before": load,
            }),
        )?;
        let output = std::fs::read_to_string(&out_path).unwrap_or_default();
        let line = output.lines().find(|line| line.to_lowercase().contains("throughput")).unwrap_or("");
        if status == "ok" {
            println!("   {:<22} {kind:<4} r{round}: {line}", workload.name);
        } else {
            eprintln!("   {:<22} {kind:<4} r{round}: {status}; output in {}", workload.name, out_path.display());
        }
        std::thread::sleep(Duration::from_millis(if self.options.quick { 300 } else { 1000 }));
        Ok(())
    }

    /// Peak and current RSS of each member, db file and data dir sizes, into clusters.json.
    fn record_cluster(&self, topology: &str, cluster: &Cluster, kind: &str) -> anyhow::Result<()> {
        let file = JsonFile::new(self.workdir.join("clusters.json"));
        let key = format!("{topology}.{kind}");
        let pids: Vec<u32> = cluster.members.iter().filter_map(Server::pid).collect();
        let leader = cluster.leader().map_or("none".to_string(), |index| format!("m{index}"));
        file.set(&format!("{key}.leader_at_end"), json!(leader))?;
        let each = |field: &str| -> Value { pids.iter().map(|pid| proc_status_kb(*pid, field)).collect() };
        file.set(&format!("{key}.vm_hwm_kb"), each("VmHWM"))?;
        file.set(&format!("{key}.vm_rss_kb"), each("VmRSS"))?;
        let db: Value = cluster.members.iter().map(|member| file_bytes(&db_file(&member.data_dir))).collect();
        file.set(&format!("{key}.db_bytes"), db)?;
        let disk: Value = cluster.members.iter().map(|member| directory_bytes(&member.data_dir)).collect();
        file.set(&format!("{key}.data_dir_bytes"), disk)?;
        file.set(&format!("{key}.alive"), json!(alive(cluster)))?;
        Ok(())
    }

    /// Load `keys` keys into a fresh single member, then RSS, db size, stop, restart (timed).
    fn memory(&self, kind: &str, keys: u64) -> anyhow::Result<()> {
        let file = JsonFile::new(self.workdir.join("memory.json"));
        let name = format!("mem-{kind}");
        let mut cluster = self.cluster(&name, kind, 1)?;
        let pid = cluster.members[0].pid().unwrap_or(0);
        file.set(&format!("{kind}.vm_rss_kb_idle"), json!(proc_status_kb(pid, "VmRSS")))?;
        println!("== {name}: loading {keys} keys (key 32 B, value 256 B, 64 clients / 4 conns)");
        let results = self.workdir.join("results").join("memory");
        std::fs::create_dir_all(&results)?;
        let (json_path, out_path) =
            (results.join(format!("load.{kind}.json")), results.join(format!("load.{kind}.out")));
        let output = Command::new("timeout")
            .args(["--kill-after=10", "3600"])
            .arg(&self.bench)
            .args(["--endpoints", &cluster.endpoints().join(","), "--conns", "4", "--clients", "64"])
            .args(["--total", &keys.to_string(), "--label", &format!("{kind} load {keys} keys"), "--no-progress"])
            .arg("--json")
            .arg(&json_path)
            .args(["put", "--sequential-keys", "--key-size", "32", "--val-size", "256"])
            .args(["--key-space-size", &keys.to_string()])
            .output()?;
        std::fs::write(&out_path, [output.stdout, output.stderr].concat())?;
        let status = match (output.status.success(), alive(&cluster)) {
            (_, false) => "server died".to_string(),
            (true, true) if file_bytes(&json_path) > 0 => "ok".to_string(),
            _ => format!("failed (exit {})", output.status.code().unwrap_or(-1)),
        };
        file.set(&format!("{kind}.load_status"), json!(status))?;
        file.set(&format!("{kind}.load_json"), json!(json_path))?;
        file.set(&format!("{kind}.load_output"), json!(out_path))?;
        if !alive(&cluster) {
            eprintln!("   load on {kind}: {status}; output in {}", out_path.display());
            return Ok(());
        }
        std::thread::sleep(Duration::from_secs(2));
        let member = &mut cluster.members[0];
        let data_dir = member.data_dir.clone();
        file.set(&format!("{kind}.vm_rss_kb_after_load"), json!(proc_status_kb(pid, "VmRSS")))?;
        file.set(&format!("{kind}.vm_hwm_kb_load"), json!(proc_status_kb(pid, "VmHWM")))?;
        file.set(&format!("{kind}.db_bytes_after_load"), json!(file_bytes(&db_file(&data_dir))))?;
        let (took, stopped_by) = member.stop_within(Duration::from_secs(30));
        file.set(&format!("{kind}.stop_ms"), json!(took.as_millis() as u64))?;
        file.set(&format!("{kind}.stopped_by"), json!(stopped_by))?;
        file.set(&format!("{kind}.db_bytes_after_stop"), json!(file_bytes(&db_file(&data_dir))))?;
        file.set(&format!("{kind}.db_bytes_on_disk_after_stop"), json!(directory_bytes(&db_file(&data_dir))))?;
        file.set(&format!("{kind}.data_dir_bytes_on_disk"), json!(directory_bytes(&data_dir)))?;
        file.set(&format!("{kind}.wal_bytes_on_disk"), json!(directory_bytes(&data_dir.join("member/wal"))))?;
        println!("== {name}: restart after {keys} keys");
        let started = Instant::now();
        member.spawn();
        match member.wait_ready_within(Duration::from_secs(300)) {
            Ok(()) => {
                let restart_ms = started.elapsed().as_millis() as u64;
                let pid = member.pid().unwrap_or(0);
                file.set(&format!("{kind}.restart_ms"), json!(restart_ms))?;
                file.set(&format!("{kind}.vm_rss_kb_after_restart"), json!(proc_status_kb(pid, "VmRSS")))?;
                // What one linearizable read costs against a running server: the probe's share of restart_ms.
                let probe = Instant::now();
                member.wait_ready_within(Duration::from_secs(10)).ok();
                file.set(&format!("{kind}.probe_ms"), json!(probe.elapsed().as_millis() as u64))?;
                println!("   restarted in {restart_ms} ms");
                file.set(&format!("{kind}.keys_after_restart"), json!(count_keys(&member.endpoint)))?;
                std::thread::sleep(Duration::from_secs(2));
                file.set(&format!("{kind}.vm_rss_kb_after_restart_settled"), json!(proc_status_kb(pid, "VmRSS")))?;
                file.set(&format!("{kind}.vm_hwm_kb_restart"), json!(proc_status_kb(pid, "VmHWM")))?;
            }
            Err(error) => {
                eprintln!("   {name} did not come back: {error} (log {})", member.log_path.display());
                file.set(&format!("{kind}.restart_status"), json!(error))?;
            }
        }
        member.stop_within(Duration::from_secs(30));
        Ok(())
    }

    fn machine_facts(&self) -> anyhow::Result<()> {
        let file = JsonFile::new(self.workdir.join("machine.json"));
        let model = std::fs::read_to_string("/proc/cpuinfo")
            .unwrap_or_default()
            .lines()
            .find_map(|line| {
                line.strip_prefix("model name").and_then(|rest| rest.split_once(':')).map(|(_, m)| m.trim().to_string())
            })
            .unwrap_or_default();
        let memory_kb = std::fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .find_map(|line| {
                line.strip_prefix("MemTotal:").map(|rest| rest.trim().trim_end_matches(" kB").trim().to_string())
            })
            .and_then(|kb| kb.parse::<u64>().ok())
            .unwrap_or(0);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
        let filesystem = command_line("df", &["-PT", &self.workdir.display().to_string()])
            .lines()
            .nth(1)
            .map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                format!(
                    "{} {} mounted on {}",
                    fields.first().unwrap_or(&""),
                    fields.get(1).unwrap_or(&""),
                    fields.last().unwrap_or(&"")
                )
            })
            .unwrap_or_default();
        let commit = command_line("git", &["rev-parse", "--short", "HEAD"]).trim().to_string();
        let dirty = !command_line("git", &["status", "--porcelain"]).trim().is_empty();
        let arguments: Vec<String> = std::env::args().skip(1).collect();
        let facts = [
            ("cores", json!(std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0))),
            ("cpu_model", json!(model)),
            ("memory_kb", json!(memory_kb)),
            ("kernel", json!(kernel)),
            ("filesystem", json!(filesystem)),
            ("command", json!(format!("keel-bench {}", arguments.join(" ")))),
            ("started", json!(record::now_utc())),
            ("quick", json!(u8::from(self.options.quick))),
            ("rounds", json!(self.options.rounds)),
            ("workdir", json!(self.workdir)),
            (
                "etcd_version",
                json!(first_line(&command_line(&self.options.etcd.display().to_string(), &["--version"]))),
            ),
            ("etcdctl_version", json!(first_line(&command_line("etcdctl", &["version"])))),
            ("keel_version", json!(first_line(&command_line(&self.keel.display().to_string(), &["--version"])))),
            ("keel_bench_version", json!(format!("keel-bench {}", env!("CARGO_PKG_VERSION")))),
            ("keel_binary", json!(self.keel)),
            ("keel_bench_binary", json!(self.bench)),
            ("keel_binary_built", json!(record::modified_utc(&self.keel))),
            ("keel_bench_binary_built", json!(record::modified_utc(&self.bench))),
            ("git_commit", json!(if dirty { format!("{commit} (with uncommitted changes)") } else { commit })),
        ];
        for (key, value) in facts {
            file.set(key, value)?;
        }
        Ok(())
    }

    /// 1,000 appends of 2 KiB with fdatasync in the work dir (the disk the data dirs are on).
    fn fsync_probe(&self, key: &str) -> anyhow::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.workdir.join("fsync-probe");
        let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o644).open(&path)?;
        let block = vec![0x5a_u8; 2048];
        let mut took: Vec<f64> = Vec::with_capacity(1000);
        for _ in 0..1000 {
            let started = Instant::now();
            file.write_all(&block)?;
            file.sync_data()?;
            took.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        drop(file);
        std::fs::remove_file(&path)?;
        took.sort_by(f64::total_cmp);
        let at = |q: f64| took[((q * took.len() as f64) as usize).min(took.len() - 1)];
        let mean = took.iter().sum::<f64>() / took.len() as f64;
        JsonFile::new(self.workdir.join("machine.json")).set(
            key,
            json!({"count": took.len(), "p50_ms": at(0.5), "p90_ms": at(0.9), "p99_ms": at(0.99),
                   "max_ms": took[took.len() - 1], "mean_ms": mean}),
        )?;
        println!("fsync ({key}): p50 {:.2} ms, p99 {:.2} ms", at(0.5), at(0.99));
        Ok(())
    }
}

fn member_name(member: &Server) -> String {
    member.data_dir.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default()
}

fn db_file(data_dir: &Path) -> PathBuf {
    data_dir.join("member").join("snap").join("db")
}

/// Every member still running.
fn alive(cluster: &Cluster) -> bool {
    cluster.members.iter().all(|member| member.pid().is_some_and(record::is_running))
}

fn command_line(program: &str, arguments: &[&str]) -> String {
    Command::new(program)
        .args(arguments)
        .output()
        .map(|output| format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr)))
        .unwrap_or_default()
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or("").to_string()
}

/// The number of keys (etcd's count of a whole-keyspace range with a limit of 1).
fn count_keys(endpoint: &str) -> Value {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    runtime.block_on(async {
        use keel_api::etcdserverpb::{RangeRequest, kv_client::KvClient};
        let Ok(mut client) = KvClient::connect(endpoint.to_string()).await else { return json!("count failed") };
        let request = RangeRequest { key: vec![0], range_end: vec![0], count_only: true, ..Default::default() };
        match client.range(request).await {
            Ok(response) => json!(response.into_inner().count),
            Err(_) => json!("count failed"),
        }
    })
}
