//! The end of a run: final reads, waiting for the watchers, convergence of the members, the verdicts,
//! and the folder a run leaves behind. A failing run keeps its history, its faults and every member's
//! log, and names its seed.

use crate::faults::{Injected, Kind};
use crate::workload::{self, Recorder, Watcher};
use keel_api::etcdserverpb::kv_client::KvClient;
use keel_api::etcdserverpb::maintenance_client::MaintenanceClient;
use keel_api::etcdserverpb::{HashKvRequest, RangeRequest};
use keel_check::{CheckResult, KvModel, KvOperation, KvOutput, Operation, WatchStream, WatchViolation};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Leader changes as seen by polling the members.
#[derive(Default)]
pub struct LeaderLog {
    last: Mutex<u64>,
    changes: AtomicU64,
}

impl LeaderLog {
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::Relaxed)
    }
}

/// Polls who leads every 200 ms until `stop`, counting changes to a new leader.
pub async fn follow_leaders(urls: Vec<String>, log: Arc<LeaderLog>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        for url in &urls {
            if let Some((_, leader)) = crate::cluster::status(url).await {
                let mut last = log.last.lock().expect("leader lock");
                if leader != 0 && leader != *last {
                    if *last != 0 {
                        log.changes.fetch_add(1, Ordering::Relaxed);
                    }
                    *last = leader;
                }
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A linearizable read of every key, recorded like any other read; returns the revision they saw.
pub async fn final_reads(urls: &[String], keys: usize, recorder: &Recorder) -> anyhow::Result<i64> {
    for _ in 0..50 {
        for url in urls {
            let Some(channel) = workload::connect(url).await else { continue };
            let mut kv = KvClient::new(channel);
            let mut revision = 0;
            let mut reads = Vec::new();
            for slot in 0..keys {
                let key = workload::key(slot);
                let call = recorder.now();
                let read = tokio::time::timeout(
                    Duration::from_secs(5),
                    kv.range(RangeRequest { key: key.clone(), ..Default::default() }),
                );
                let Ok(Ok(response)) = read.await else { break };
                let response = response.into_inner();
                revision = revision.max(response.header.map_or(0, |header| header.revision));
                let output = match response.kvs.first() {
                    Some(found) => {
                        KvOutput::Get { value: Some(found.value.clone()), mod_revision: Some(found.mod_revision) }
                    }
                    None => KvOutput::Get { value: None, mod_revision: None },
                };
                reads.push(Operation::completed(
                    u64::MAX,
                    keel_check::KvInput::Get { key },
                    output,
                    call,
                    recorder.now(),
                ));
            }
            if reads.len() == keys {
                recorder.history.lock().expect("history lock").extend(reads);
                return Ok(revision);
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    anyhow::bail!("no member answered the final reads")
}

/// Waits until every watcher has seen `revision` (or the limit passes).
pub async fn wait_for_watchers(watchers: &[Arc<Watcher>], revision: i64, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if watchers.iter().all(|watcher| watcher.last_revision.load(Ordering::Relaxed) >= revision) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every member's HashKV at `revision` must be the same.
pub async fn converged(urls: &[String], revision: i64) -> Result<(), String> {
    let mut hashes = Vec::new();
    for url in urls {
        let mut answer = None;
        for _ in 0..100 {
            let attempt = async {
                let channel = workload::connect(url).await?;
                MaintenanceClient::new(channel)
                    .hash_kv(HashKvRequest { revision })
                    .await
                    .ok()
                    .map(|reply| reply.into_inner())
            };
            if let Ok(Some(reply)) = tokio::time::timeout(Duration::from_secs(2), attempt).await {
                answer = Some((reply.hash, reply.compact_revision));
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        match answer {
            Some(hash) => hashes.push((url.clone(), hash)),
            None => return Err(format!("{url} gave no HashKV at revision {revision}")),
        }
    }
    if hashes.windows(2).all(|pair| pair[0].1 == pair[1].1) {
        Ok(())
    } else {
        Err(format!("members disagree at revision {revision}: {hashes:?}"))
    }
}

/// What a run gathered.
pub struct Run {
    pub seed: u64,
    pub network: String,
    pub elapsed: Duration,
    pub operations: u64,
    pub history: Vec<KvOperation>,
    pub watchers: Vec<Arc<Watcher>>,
    pub injected: Vec<Injected>,
    pub leader_changes: u64,
    pub unexpected_exits: Vec<String>,
    pub converged: Result<(), String>,
    pub dir: PathBuf,
    /// The revision the final reads saw.
    pub final_revision: i64,
}

pub struct Report {
    pub seed: u64,
    pub network: String,
    pub elapsed: Duration,
    pub operations: u64,
    pub unknown_outcomes: usize,
    pub faults: BTreeMap<Kind, u32>,
    pub leader_changes: u64,
    pub watch_events: usize,
    pub watch_reconnects: i64,
    pub linearizability: CheckResult,
    pub watch_violations: Vec<WatchViolation>,
    pub unexpected_exits: Vec<String>,
    pub converged: Result<(), String>,
    pub dir: PathBuf,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.linearizability.is_ok()
            && self.watch_violations.is_empty()
            && self.unexpected_exits.is_empty()
            && self.converged.is_ok()
    }
}

/// Runs the checkers; on a failure, writes what is needed to read and repeat the run into its folder.
pub fn judge(run: Run) -> Report {
    let acknowledged = keel_check::acknowledged_writes(&run.history);
    let streams: Vec<WatchStream> = run
        .watchers
        .iter()
        .map(|watcher| WatchStream {
            name: watcher.name.clone(),
            prefix: workload::PREFIX.as_bytes().to_vec(),
            start_revision: Some(1),
            events: watcher.events.lock().expect("events lock").clone(),
        })
        .collect();
    let watch_violations = keel_check::check_watches(&acknowledged, &streams).err().unwrap_or_default();
    // Unknown outcomes are narrowed down first (as etcd's robustness tests do): by the reads that saw a
    // write's value, and, when the watchers saw every change of the run without a fault, by that record
    // of what the store did. The verdict is the same; the search is far shorter.
    let complete_record = watch_violations.is_empty()
        && run.watchers.iter().any(|watcher| watcher.last_revision.load(Ordering::Relaxed) >= run.final_revision);
    let changes = complete_record.then(|| keel_check::watch::observed_changes(&acknowledged, &streams));
    let history = keel_check::patch_unknown_outcomes(&run.history, changes.as_deref());
    // Long runs get a longer budget: the search is linear in the history when it goes well.
    let budget = Duration::from_secs(120).max(run.elapsed / 2);
    let linearizability = keel_check::check(&KvModel, &history, budget);
    let mut faults = BTreeMap::new();
    for fault in &run.injected {
        *faults.entry(fault.kind).or_insert(0) += 1;
    }
    let report = Report {
        seed: run.seed,
        network: run.network,
        elapsed: run.elapsed,
        operations: run.operations,
        unknown_outcomes: run.history.iter().filter(|operation| operation.return_time.is_none()).count(),
        faults,
        leader_changes: run.leader_changes,
        watch_events: streams.iter().map(|stream| stream.events.len()).sum(),
        watch_reconnects: run.watchers.iter().map(|watcher| watcher.reconnects.load(Ordering::Relaxed)).sum(),
        linearizability,
        watch_violations,
        unexpected_exits: run.unexpected_exits,
        converged: run.converged,
        dir: run.dir,
    };
    let _ = std::fs::write(report.dir.join("faults.txt"), faults_text(&run.injected));
    if !report.passed() {
        // The checked (patched) history: the verdict's indices refer to it.
        let _ = std::fs::write(report.dir.join("history.txt"), history_text(&history));
        let _ = std::fs::write(report.dir.join("watches.txt"), watches_text(&streams));
        let _ = std::fs::write(report.dir.join("verdict.txt"), report.to_string());
    }
    report
}

fn faults_text(injected: &[Injected]) -> String {
    injected.iter().fold(String::new(), |mut text, fault| {
        let _ = writeln!(text, "{:>8.2}s {:?}: {}", fault.at.as_secs_f64(), fault.kind, fault.detail);
        text
    })
}

fn history_text(history: &[KvOperation]) -> String {
    let mut text = String::from("# index client call_ns return_ns input output (return '-' = unknown outcome)\n");
    for (index, operation) in history.iter().enumerate() {
        let returned = operation.return_time.map_or("-".to_string(), |time| time.to_string());
        let _ = writeln!(
            text,
            "{index} {} {} {returned} {:?} {:?}",
            operation.client, operation.call_time, operation.input, operation.output
        );
    }
    text
}

fn watches_text(streams: &[WatchStream]) -> String {
    let mut text = String::new();
    for stream in streams {
        let _ = writeln!(text, "## {}", stream.name);
        for event in &stream.events {
            let _ = writeln!(text, "{} {} {:?}", event.revision, String::from_utf8_lossy(&event.key), event.change);
        }
    }
    text
}

impl std::fmt::Display for Report {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(formatter, "seed {} ({:.0} s, {})", self.seed, self.elapsed.as_secs_f64(), self.network)?;
        writeln!(
            formatter,
            "operations: {} ({} of unknown outcome); faults: {} {:?}; leader changes: {}; watch events: {} ({} reconnects)",
            self.operations,
            self.unknown_outcomes,
            self.faults.values().sum::<u32>(),
            self.faults,
            self.leader_changes,
            self.watch_events,
            self.watch_reconnects
        )?;
        writeln!(formatter, "linearizability: {}", self.linearizability)?;
        if self.watch_violations.is_empty() {
            writeln!(formatter, "watches: no gap, duplicate, reordering or disagreement")?;
        } else {
            writeln!(formatter, "watches: {} violations", self.watch_violations.len())?;
            for violation in self.watch_violations.iter().take(20) {
                writeln!(formatter, "  {violation}")?;
            }
        }
        for exit in &self.unexpected_exits {
            writeln!(formatter, "unexpected exit: {exit}")?;
        }
        match &self.converged {
            Ok(()) => writeln!(formatter, "members converged (same HashKV)")?,
            Err(error) => writeln!(formatter, "members did NOT converge: {error}")?,
        }
        if self.passed() {
            write!(formatter, "PASSED")
        } else {
            write!(
                formatter,
                "FAILED: repeat with --seed {}; history, faults and member logs are in {}",
                self.seed,
                self.dir.display()
            )
        }
    }
}
