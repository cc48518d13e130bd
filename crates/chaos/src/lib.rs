//! Keel's fault-injection suite: real `keel` members, each in its own network namespace, faults on a
//! schedule chosen from a seed (kill -9, SIGSTOP, partitions, latency, loss, full disks), recording
//! clients and watchers, and at the end the verdicts: linearizability of every key's history
//! ([`keel_check`]), gap-free watches that agree with the writes, and members that converge.
//!
//! # Layout
//! - [`net`]: namespaces, veth links, a bridge, iptables partitions (or loopback without them).
//! - [`proxy`]: the userspace TCP proxy that adds latency and loss between members.
//! - [`cluster`]: the member processes and the process and disk faults.
//! - [`faults`]: the seeded schedule.
//! - [`workload`]: recording clients and watchers.
//! - [`report`]: the verdicts, and the folder a run leaves behind (history, faults, member logs).

pub mod cluster;
pub mod faults;
pub mod net;
pub mod proxy;
pub mod report;
pub mod workload;

use anyhow::Context;
use cluster::Cluster;
use faults::{Kind, Schedule};
use report::Report;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use workload::{Recorder, Watcher};

#[derive(Debug, Clone)]
pub struct Config {
    pub members: usize,
    pub duration: Duration,
    pub seed: u64,
    /// The `keel` binary.
    pub keel: PathBuf,
    /// Where the run's data dirs, logs and (on failure) history go.
    pub out: PathBuf,
    pub clients: usize,
    pub keys: usize,
    pub watchers: usize,
    /// The faults to choose from.
    pub faults: Vec<Kind>,
    /// More flags for every member.
    pub member_flags: Vec<String>,
    /// Printing what happens as it happens.
    pub verbose: bool,
}

/// Runs the whole schedule and judges it. Call it from a plain thread (it makes its own runtime, in the
/// hub namespace when there is one).
pub fn run(config: &Config) -> anyhow::Result<Report> {
    std::fs::create_dir_all(&config.out).with_context(|| format!("creating {}", config.out.display()))?;
    let tag = ((std::process::id() as u64 ^ config.seed.wrapping_mul(31)) % 12_000) as u16;
    let network = net::Network::create(config.members, tag);
    let original = match network.namespaces() {
        Some(namespaces) => Some(namespaces.enter_hub()?),
        None => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().worker_threads(2).build()?;
    let result = runtime.block_on(drive(config, network));
    drop(runtime);
    if let Some(original) = original {
        net::enter(&original)?;
    }
    result
}

async fn drive(config: &Config, network: net::Network) -> anyhow::Result<Report> {
    let started = Instant::now();
    let description = network.describe();
    log(config, &format!("seed {}: {} members, {description}", config.seed, config.members));
    let disk_bytes = cluster::disk_bytes(config.duration);
    let mut cluster =
        Cluster::start(network, config.members, &config.out, &config.keel, &config.member_flags, disk_bytes).await?;
    let urls: Vec<String> = cluster.members.iter().map(|member| member.client_url.clone()).collect();
    wait_for_leader(&cluster, Duration::from_secs(30)).await.context("the cluster did not elect a leader at start")?;

    let recorder = Recorder::new();
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..config.clients {
        let seed = config.seed.wrapping_add(client as u64 * 7919);
        tasks.spawn(workload::client(client as u64, urls.clone(), config.keys, seed, recorder.clone(), stop.clone()));
    }
    let watchers: Vec<Arc<Watcher>> = (0..config.watchers)
        .map(|index| {
            Arc::new(Watcher {
                name: format!("watcher {index}"),
                events: Default::default(),
                last_revision: Default::default(),
                reconnects: Default::default(),
            })
        })
        .collect();
    let watch_stop = Arc::new(AtomicBool::new(false));
    let mut watch_tasks = tokio::task::JoinSet::new();
    for (index, watcher) in watchers.iter().enumerate() {
        watch_tasks.spawn(workload::watcher(watcher.clone(), urls.clone(), index % urls.len(), watch_stop.clone()));
    }
    let leaders = Arc::new(report::LeaderLog::default());
    let leader_task = tokio::spawn(report::follow_leaders(urls.clone(), leaders.clone(), watch_stop.clone()));

    let mut schedule = Schedule::new(config.seed, &config.faults, &cluster);
    log(config, &format!("faults to choose from: {:?}", schedule.kinds()));
    let mut injected = Vec::new();
    let mut unexpected_exits = Vec::new();
    // SIGINT or SIGTERM ends the fault phase early; the run still heals, checks and cleans up.
    let interrupted = Arc::new(AtomicBool::new(false));
    for kind in [tokio::signal::unix::SignalKind::interrupt(), tokio::signal::unix::SignalKind::terminate()] {
        let interrupted = interrupted.clone();
        let mut signal = tokio::signal::unix::signal(kind)?;
        tokio::spawn(async move {
            signal.recv().await;
            interrupted.store(true, Ordering::Relaxed);
        });
    }
    while started.elapsed() < config.duration && !interrupted.load(Ordering::Relaxed) {
        tokio::time::sleep(schedule.quiet_gap()).await;
        let Some(fault) = schedule.next(&mut cluster, started).await else { break };
        log(config, &format!("{:>6.1}s {:?}: {}", fault.at.as_secs_f64(), fault.kind, fault.detail));
        let disk_fault = fault.kind == Kind::FullDisk;
        injected.push(fault);
        for index in 0..cluster.members.len() {
            if !cluster.is_running(index) {
                if !disk_fault {
                    unexpected_exits
                        .push(format!("m{index} exited on its own (see {})", cluster.members[index].log.display()));
                }
                log(config, &format!("         m{index} is down; restarting it"));
                cluster.spawn(index)?;
            }
        }
    }

    // Heal, let the clients run a little against the healthy cluster, then stop them.
    cluster.links.clear();
    let _ = cluster.network.partition(&[]);
    wait_for_leader(&cluster, Duration::from_secs(30)).await.context("no leader after the faults healed")?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let mut operations = 0;
    while let Some(count) = tasks.join_next().await {
        operations += count.unwrap_or(0);
    }
    let final_revision = report::final_reads(&urls, config.keys, &recorder).await?;
    report::wait_for_watchers(&watchers, final_revision, Duration::from_secs(30)).await;
    watch_stop.store(true, Ordering::Relaxed);
    watch_tasks.shutdown().await;
    let _ = leader_task.await;
    let converged = report::converged(&urls, final_revision).await;
    for index in 0..cluster.members.len() {
        if !cluster.is_running(index) {
            unexpected_exits.push(format!("m{index} exited on its own during the final checks"));
        }
    }
    cluster.shutdown();
    let history = std::mem::take(&mut *recorder.history.lock().expect("history lock"));
    Ok(report::judge(report::Run {
        seed: config.seed,
        network: description,
        elapsed: started.elapsed(),
        operations,
        history,
        watchers,
        injected,
        leader_changes: leaders.changes(),
        unexpected_exits,
        converged,
        dir: config.out.clone(),
        final_revision,
    }))
}

async fn wait_for_leader(cluster: &Cluster, limit: Duration) -> anyhow::Result<usize> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(leader) = cluster.leader().await {
            return Ok(leader);
        }
        anyhow::ensure!(Instant::now() < deadline, "no leader within {limit:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn log(config: &Config, line: &str) {
    if config.verbose {
        eprintln!("keel-chaos: {line}");
    }
}

/// Removes the members' data dirs of a run (keeping its logs and fault list).
pub fn remove_data(out: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(out) else { return };
    for entry in entries.flatten() {
        if entry.path().is_dir() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
