//! The applier: its own thread, fed committed entries by the Raft node over a bounded channel, so the
//! Raft loop never waits on the store (etcd's `applyc`). It applies batches to the state machine,
//! answers waiting callers, and tells the node how far it got and when the log may be compacted.

mod defrag;

pub use defrag::DefragReport;
use defrag::{Defrag, DefragReply};

use crate::datadir::DataDir;
use crate::lease::Lessor;
use crate::propose::Waiters;
use crate::shutdown::Shutdown;
use crate::watch::WatchHub;
use keel_api::EtcdError;
use keel_raft::raft::ReadState;
use keel_raft::raft::eraftpb::{Entry, EntryType};
use keel_raft::wal::SyncStats;
use keel_raft::{Command, Outbox};
use keel_state::StateMachine;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Batches of committed entries the node may run ahead of the applier.
const APPLY_QUEUE: usize = 1024;
/// How often a backend commit is made durable (etcd's backend batch interval is 100 ms).
const DURABLE_INTERVAL: Duration = Duration::from_millis(100);

/// Counters of the disk work, shared with Status and the logs.
#[derive(Debug, Default)]
pub struct DiskStats {
    pub wal_syncs: AtomicU64,
    pub wal_synced_entries: AtomicU64,
    pub wal_sync_micros_total: AtomicU64,
    pub wal_sync_micros_max: AtomicU64,
}

impl DiskStats {
    pub fn summary(&self) -> String {
        let syncs = self.wal_syncs.load(Ordering::Relaxed);
        let entries = self.wal_synced_entries.load(Ordering::Relaxed);
        let micros = self.wal_sync_micros_total.load(Ordering::Relaxed);
        format!(
            "wal: {syncs} fsyncs for {entries} entries ({:.2} entries per fsync), mean fsync {:.3} ms, max {:.3} ms",
            entries as f64 / syncs.max(1) as f64,
            micros as f64 / syncs.max(1) as f64 / 1000.0,
            self.wal_sync_micros_max.load(Ordering::Relaxed) as f64 / 1000.0,
        )
    }
}

/// What the applier is handed, in log order.
enum Work {
    Entries(Vec<Entry>),
    /// Switch to the image received for the snapshot at this index.
    Snapshot {
        index: u64,
    },
    /// Defragment the store (answered when done).
    Defrag(DefragReply),
}

/// Asks the applier for a defragmentation of this member's store.
#[derive(Clone)]
pub struct Defragmenter(SyncSender<Work>);

impl Defragmenter {
    /// Defragments the store; the member keeps serving meanwhile. Concurrent calls share one run.
    pub async fn defragment(&self) -> Result<DefragReport, String> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.0.try_send(Work::Defrag(reply)).map_err(|_| "the member is busy applying; try again".to_string())?;
        let metrics = crate::metrics::get();
        metrics.defrag_inflight.set(1);
        let started = Instant::now();
        let result = answer.await.map_err(|_| "the member is stopping".to_string());
        metrics.defrag_inflight.set(0);
        metrics.defrag_duration.observe(started.elapsed().as_secs_f64());
        result?
    }
}

/// What the Raft node hands out, routed to the applier and the waiting callers.
pub struct MemberOutbox {
    entries: SyncSender<Work>,
    waiters: Arc<Waiters>,
    disk: Arc<DiskStats>,
}

impl Outbox for MemberOutbox {
    fn committed(&mut self, entries: Vec<Entry>) {
        // Blocks while the applier is APPLY_QUEUE batches behind: back-pressure on the Raft loop.
        if self.entries.send(Work::Entries(entries)).is_err() {
            tracing::warn!("applier has stopped; committed entries not applied on this run");
        }
    }

    fn snapshot_installed(&mut self, index: u64, _term: u64) {
        if self.entries.send(Work::Snapshot { index }).is_err() {
            tracing::warn!(index, "applier has stopped; the snapshot is installed at the next start");
        }
    }

    fn read_states(&mut self, states: Vec<ReadState>) {
        for state in states {
            self.waiters.read_index(&state.request_ctx, state.index);
        }
    }

    fn dropped(&mut self, id: u64) {
        self.waiters.resolve(id, Err(EtcdError::NoLeader));
    }

    fn synced(&mut self, stats: &SyncStats, entries: usize) {
        let micros = stats.fsync_duration.as_micros() as u64;
        self.disk.wal_syncs.fetch_add(1, Ordering::Relaxed);
        self.disk.wal_synced_entries.fetch_add(entries as u64, Ordering::Relaxed);
        self.disk.wal_sync_micros_total.fetch_add(micros, Ordering::Relaxed);
        self.disk.wal_sync_micros_max.fetch_max(micros, Ordering::Relaxed);
        crate::metrics::get().wal_fsync.observe(stats.fsync_duration.as_secs_f64());
        crate::metrics::latency::WAL_FSYNC.record(stats.fsync_duration);
        if stats.fsync_duration > Duration::from_millis(100) {
            tracing::warn!(
                fsync_ms = stats.fsync_duration.as_millis() as u64,
                "slow WAL fsync: the disk is too slow for consensus (etcd's guidance: under 10 ms)"
            );
        }
    }
}

pub struct ApplierSettings {
    pub snapshot_count: u64,
    /// Where the defragmentation copy is built and received snapshot images wait.
    pub data_dir: DataDir,
    /// Entries kept behind the compaction point for lagging followers (none with a single voter).
    pub catch_up_entries: u64,
    /// `--experimental-warning-apply-duration`: slower applies are counted and logged.
    pub warning_apply_duration: Duration,
}

/// What the applier thread is made of.
pub struct ApplierParts {
    pub machine: StateMachine,
    /// The node's queue: log compactions and snapshot results go there.
    pub commands: SyncSender<Command>,
    pub waiters: Arc<Waiters>,
    /// Told the applied index after every batch.
    pub applied: watch::Sender<u64>,
    pub hub: Arc<WatchHub>,
    pub lessor: Arc<Lessor>,
    pub disk: Arc<DiskStats>,
    pub settings: ApplierSettings,
    /// Raised if applying fails: the member then stops in order (fail-stop, as etcd).
    pub shutdown: Shutdown,
}

/// Starts the applier thread; returns the outbox to give the Raft node.
pub fn start(parts: ApplierParts) -> (MemberOutbox, Defragmenter, JoinHandle<()>) {
    let (sender, receiver) = sync_channel(APPLY_QUEUE);
    let last_compact = parts.machine.state().index;
    let waiters = parts.waiters;
    let applier = Applier {
        machine: parts.machine,
        receiver,
        commands: parts.commands,
        waiters: waiters.clone(),
        applied: parts.applied,
        hub: parts.hub,
        lessor: parts.lessor,
        settings: parts.settings,
        shutdown: parts.shutdown,
        last_compact,
        last_durable: Instant::now(),
        defrag: None,
    };
    let thread =
        std::thread::Builder::new().name("applier".into()).spawn(move || applier.run()).expect("spawn applier");
    (MemberOutbox { entries: sender.clone(), waiters, disk: parts.disk }, Defragmenter(sender), thread)
}

struct Applier {
    machine: StateMachine,
    receiver: Receiver<Work>,
    commands: SyncSender<Command>,
    waiters: Arc<Waiters>,
    applied: watch::Sender<u64>,
    hub: Arc<WatchHub>,
    lessor: Arc<Lessor>,
    settings: ApplierSettings,
    shutdown: Shutdown,
    last_compact: u64,
    last_durable: Instant,
    /// A defragmentation in progress.
    defrag: Option<Defrag>,
}

impl Applier {
    fn run(mut self) {
        let mut next = self.receive();
        while let Some(work) = next.take() {
            let result = match work {
                Work::Snapshot { index } => self.install(index),
                Work::Defrag(reply) => {
                    self.start_defrag(reply);
                    Ok(())
                }
                Work::Entries(mut batch) => {
                    // Take what else is queued into the same batch, up to other work.
                    while batch.len() < 8192 {
                        match self.receiver.try_recv() {
                            Ok(Work::Entries(more)) => batch.extend(more),
                            Ok(other) => {
                                next = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    self.apply(&batch)
                }
            };
            if let Err(error) = result {
                // Nothing more may be applied on this run: the WAL replays what was not made durable.
                tracing::error!(%error, "applying committed entries failed; stopping the member");
                self.shutdown.fatal(format_args!("applying committed entries failed: {error}"));
                if let Some(defrag) = self.defrag.take() {
                    defrag.abort("the member is stopping");
                }
                return;
            }
            if self.defrag.as_ref().is_some_and(Defrag::is_copied) {
                let defrag = self.defrag.take().expect("checked");
                defrag.finish(&mut self.machine);
            }
            if next.is_none() {
                next = self.receive();
            }
        }
        if let Some(defrag) = self.defrag.take() {
            defrag.abort("the member is stopping");
        }
        if let Err(error) = self.machine.persist() {
            tracing::error!(%error, "final backend commit failed; the WAL will be replayed at the next start");
        }
    }

    /// The next work; while a defragmentation copies, wakes up now and then to see whether it is done.
    fn receive(&mut self) -> Option<Work> {
        loop {
            if self.defrag.is_none() {
                return self.receiver.recv().ok();
            }
            match self.receiver.recv_timeout(Duration::from_millis(20)) {
                Ok(work) => return Some(work),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if self.defrag.as_ref().is_some_and(Defrag::is_copied) {
                        let defrag = self.defrag.take().expect("checked");
                        defrag.finish(&mut self.machine);
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    fn start_defrag(&mut self, reply: DefragReply) {
        if let Some(defrag) = &mut self.defrag {
            defrag.join(reply);
            return;
        }
        // The copy starts from what is committed now; everything applied from here on is recorded.
        let file = self.settings.data_dir.defrag_copy();
        match Defrag::start(self.machine.backend().clone(), file, reply) {
            Ok(defrag) => self.defrag = Some(defrag),
            Err(error) => tracing::warn!(%error, "cannot start a defragmentation thread"),
        }
    }

    fn apply(&mut self, batch: &[Entry]) -> Result<(), keel_state::StateError> {
        let entries: Vec<keel_state::Entry<'_>> = batch
            .iter()
            .map(|entry| keel_state::Entry { index: entry.index, term: entry.term, data: payload(entry) })
            .collect();
        let durable = self.last_durable.elapsed() >= DURABLE_INTERVAL;
        let started = Instant::now();
        let outcome = self.machine.apply(&entries, durable)?;
        if let Some(defrag) = &mut self.defrag
            && !defrag.record(batch)
        {
            self.defrag
                .take()
                .expect("checked")
                .abort("too many writes arrived during the copy; defragment again when the load is lower");
        }
        let took = started.elapsed();
        if durable {
            crate::metrics::get().backend_commit.observe(outcome.commit_duration.as_secs_f64());
            crate::metrics::latency::BACKEND_COMMIT.record(outcome.commit_duration);
        }
        if took > self.settings.warning_apply_duration {
            crate::metrics::get().slow_apply.inc();
            tracing::warn!(
                took_ms = took.as_millis() as u64,
                entries = entries.len(),
                durable,
                limit_ms = self.settings.warning_apply_duration.as_millis() as u64,
                "applying committed entries took too long (--experimental-warning-apply-duration)"
            );
        } else if took > Duration::from_millis(10) {
            tracing::debug!(took_ms = took.as_millis() as u64, entries = entries.len(), durable, "slow apply batch");
        }
        if durable {
            self.last_durable = Instant::now();
        }
        let compacted =
            outcome.applied.iter().any(|applied| matches!(applied.result, Ok(keel_state::Response::Compaction(_))));
        if compacted && !durable {
            // redb reuses the pages a compaction freed only after a durable commit: make one now, so the
            // space shows as free (dbSizeInUse, the auto-defrag policy) and is reused by the next writes.
            self.machine.persist()?;
            self.last_durable = Instant::now();
        }
        // The lessor first: a client told its lease is granted may keep it alive at once.
        self.lessor.applied(&outcome.lease_changes);
        for applied in outcome.applied {
            if let Ok(response) = &applied.result {
                crate::metrics::count_applied(response);
            }
            self.waiters.resolve(applied.id, applied.result);
        }
        self.hub.publish(outcome.changes);
        let index = self.machine.state().index;
        self.applied.send_replace(index);
        let _ = self.commands.try_send(Command::Applied { index });
        self.maybe_compact(index)?;
        Ok(())
    }

    /// Switches the store to the image received for the snapshot at `index` (Raft has already recorded
    /// the snapshot in its log), then tells everyone who follows the store.
    fn install(&mut self, index: u64) -> Result<(), keel_state::StateError> {
        if let Some(defrag) = self.defrag.take() {
            defrag.abort("the member installed a snapshot from the leader meanwhile; defragment again");
        }
        let file = self.settings.data_dir.snapshot_image(index);
        let started = Instant::now();
        let state = self.machine.install(&file)?;
        if state.index != index {
            return Err(keel_state::StateError::Corrupt(format!(
                "the image installed for the snapshot at index {index} has applied index {}",
                state.index
            )));
        }
        tracing::info!(
            index,
            revision = state.revision,
            took_ms = started.elapsed().as_millis() as u64,
            "store replaced by the leader's snapshot"
        );
        self.last_durable = Instant::now();
        self.last_compact = index;
        self.settings.data_dir.remove_stale_images(index, false);
        self.lessor.restore(self.machine.read()?.leases()?);
        self.hub.restored(state.revision);
        self.applied.send_replace(index);
        let _ = self.commands.try_send(Command::Applied { index });
        Ok(())
    }

    /// Every `--snapshot-count` entries: make the backend durable, then let the log drop what it holds.
    fn maybe_compact(&mut self, index: u64) -> Result<(), keel_state::StateError> {
        if index < self.last_compact + self.settings.snapshot_count {
            return Ok(());
        }
        self.machine.persist()?;
        self.last_durable = Instant::now();
        // Whether or not the node takes this one (its queue may be full), the next try is a full
        // --snapshot-count later: never one durable commit per batch under load.
        self.last_compact = index;
        let compact_to = index.saturating_sub(self.settings.catch_up_entries);
        if compact_to > 0 && self.commands.try_send(Command::Compact { index: compact_to }).is_ok() {
            tracing::info!(applied = index, compact_to, "backend persisted; compacting the raft log");
        }
        Ok(())
    }
}

/// The state machine's part of an entry: client requests only; Raft's own entries apply as no-ops.
fn payload(entry: &Entry) -> &[u8] {
    match entry.get_entry_type() {
        EntryType::EntryNormal => entry.get_data(),
        other => {
            tracing::warn!(index = entry.index, kind = ?other, "membership change entries are not supported yet");
            &[]
        }
    }
}
