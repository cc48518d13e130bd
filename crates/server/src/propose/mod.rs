//! Proposals and linearizable reads: the bridge from async request handlers to the Raft node.
//!
//! A write is registered under a fresh request id before it is proposed, resolved when the applier
//! applies it, and forgotten on timeout (etcd's `processInternalRaftRequestOnce`). A linearizable read
//! waits for a read index confirmed by a quorum and for the applier to reach it; concurrent readers share
//! one ReadIndex round (etcd's `linearizableReadLoop`).

mod ids;

use ids::RequestIds;
use keel_api::EtcdError;
use keel_api::keelpb::InternalRequest;
use keel_api::keelpb::internal_request::Request;
use keel_raft::Command;
use keel_state::Response;
use prost::Message;
use std::collections::HashMap;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, oneshot, watch};

/// How often a waiting proposal checks whether the leader changed under it.
const LEADER_CHECK: Duration = Duration::from_millis(50);

/// How long a ReadIndex request may go unanswered before it is sent again.
const READ_INDEX_RETRY: Duration = Duration::from_millis(200);

type Reply = oneshot::Sender<Result<Response, EtcdError>>;

/// Callers waiting for their entries to be applied, by request id.
#[derive(Default)]
pub struct Waiters {
    writes: Mutex<HashMap<u64, Reply>>,
    reads: Mutex<HashMap<u64, oneshot::Sender<u64>>>,
}

impl Waiters {
    /// Hands a result to the caller waiting on `id`, if it still waits.
    pub fn resolve(&self, id: u64, result: Result<Response, EtcdError>) {
        if let Some(reply) = self.writes.lock().expect("waiters lock").remove(&id) {
            let _ = reply.send(result);
        }
    }

    /// A read index arrived for the round with `context`.
    pub fn read_index(&self, context: &[u8], index: u64) {
        let Ok(bytes) = <[u8; 8]>::try_from(context) else { return };
        if let Some(reply) = self.reads.lock().expect("waiters lock").remove(&u64::from_be_bytes(bytes)) {
            let _ = reply.send(index);
        }
    }

    fn forget(&self, id: u64) {
        self.writes.lock().expect("waiters lock").remove(&id);
    }
}

pub struct Proposer {
    commands: SyncSender<Command>,
    waiters: Arc<Waiters>,
    node: Arc<keel_raft::NodeStatus>,
    ids: RequestIds,
    applied: watch::Receiver<u64>,
    max_request_bytes: usize,
    timeout: Duration,
    read_queue: Mutex<Vec<oneshot::Sender<Result<(), EtcdError>>>>,
    read_wakeup: Notify,
    unsafe_local_reads: std::sync::atomic::AtomicBool,
}

impl Proposer {
    pub fn new(
        member_id: u64,
        commands: SyncSender<Command>,
        waiters: Arc<Waiters>,
        node: Arc<keel_raft::NodeStatus>,
        applied: watch::Receiver<u64>,
        max_request_bytes: usize,
        timeout: Duration,
    ) -> Arc<Self> {
        let proposer = Arc::new(Proposer {
            commands,
            waiters,
            node,
            ids: RequestIds::new(member_id),
            applied,
            max_request_bytes,
            timeout,
            read_queue: Mutex::new(Vec::new()),
            read_wakeup: Notify::new(),
            unsafe_local_reads: std::sync::atomic::AtomicBool::new(false),
        });
        tokio::spawn(read_loop(Arc::downgrade(&proposer)));
        proposer
    }

    /// A fresh id, unique across members and restarts (also used for server-chosen lease ids).
    pub fn next_id(&self) -> u64 {
        self.ids.next()
    }

    /// Proposes a write and waits until it is applied on this member.
    pub async fn propose(&self, request: Request) -> Result<Response, EtcdError> {
        let metrics = crate::metrics::get();
        metrics.proposals_pending.inc();
        let result = self.propose_once(request).await;
        metrics.proposals_pending.dec();
        if let Err(
            EtcdError::NoLeader
            | EtcdError::LeaderChanged
            | EtcdError::Timeout
            | EtcdError::Stopped
            | EtcdError::TooManyRequests,
        ) = &result
        {
            metrics.proposals_failed.inc();
        }
        result
    }

    async fn propose_once(&self, request: Request) -> Result<Response, EtcdError> {
        let id = self.ids.next();
        let data = InternalRequest { id, request: Some(request) }.encode_to_vec();
        if data.len() > self.max_request_bytes {
            return Err(EtcdError::RequestTooLarge);
        }
        let (reply, mut result) = oneshot::channel();
        self.waiters.writes.lock().expect("waiters lock").insert(id, reply);
        let leader = self.node.snapshot().leader;
        if let Err(error) = self.send(Command::Propose { id, data }) {
            self.waiters.forget(id);
            return Err(error);
        }
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut check = tokio::time::interval(LEADER_CHECK);
        loop {
            tokio::select! {
                outcome = &mut result => return outcome.unwrap_or(Err(EtcdError::Stopped)),
                _ = tokio::time::sleep_until(deadline) => {
                    self.waiters.forget(id);
                    return Err(EtcdError::Timeout);
                }
                _ = check.tick() => {
                    // A proposal forwarded to a leader that is gone may be lost: say so now, rather than
                    // at the timeout, so the client retries with the new leader (the outcome is unknown,
                    // as with a timeout).
                    let now = self.node.snapshot().leader;
                    if leader != 0 && now != 0 && now != leader {
                        self.waiters.forget(id);
                        return Err(EtcdError::LeaderChanged);
                    }
                }
            }
        }
    }

    /// Asks Raft to hand leadership to member `to`; returns once `to` leads, or times out.
    pub async fn transfer_leader(&self, to: u64) -> Result<(), EtcdError> {
        self.send(Command::TransferLeader { to })?;
        let deadline = tokio::time::Instant::now() + self.timeout;
        while self.node.snapshot().leader != to {
            if tokio::time::Instant::now() >= deadline {
                return Err(EtcdError::Timeout);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Test only, unsafe: makes [`Proposer::read_barrier`] return at once (see `--test-unsafe-local-reads`).
    pub fn break_linearizable_reads(&self) {
        tracing::error!("UNSAFE: linearizable reads are served locally without ReadIndex (--test-unsafe-local-reads)");
        self.unsafe_local_reads.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Returns once this member has applied everything committed before the call (ReadIndex).
    pub async fn read_barrier(&self) -> Result<(), EtcdError> {
        if self.unsafe_local_reads.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(());
        }
        let (reply, result) = oneshot::channel();
        self.read_queue.lock().expect("read queue lock").push(reply);
        self.read_wakeup.notify_one();
        result.await.unwrap_or(Err(EtcdError::Stopped))
    }

    fn send(&self, command: Command) -> Result<(), EtcdError> {
        self.commands.try_send(command).map_err(|error| match error {
            TrySendError::Full(_) => EtcdError::TooManyRequests,
            TrySendError::Disconnected(_) => EtcdError::Stopped,
        })
    }

    /// One ReadIndex round: a read index from the leader, then the applier catching up to it.
    async fn read_index_round(&self) -> Result<(), EtcdError> {
        let context = self.ids.next();
        let (reply, index) = oneshot::channel();
        self.waiters.reads.lock().expect("waiters lock").insert(context, reply);
        let round = async {
            // Raft drops a read index request it cannot serve yet (no leader, or a new leader that has
            // not committed in its term): ask again until the answer comes, as etcd's read loop does.
            let mut index = index;
            let index = loop {
                self.send(Command::ReadIndex { context: context.to_be_bytes().to_vec() })?;
                match tokio::time::timeout(READ_INDEX_RETRY, &mut index).await {
                    Ok(answer) => break answer.map_err(|_| EtcdError::Stopped)?,
                    Err(_) => {
                        crate::metrics::get().slow_read_indexes.inc();
                        continue;
                    }
                }
            };
            let mut applied = self.applied.clone();
            applied.wait_for(|applied| *applied >= index).await.map_err(|_| EtcdError::Stopped)?;
            Ok(())
        };
        let result = tokio::time::timeout(self.timeout, round).await.unwrap_or(Err(EtcdError::Timeout));
        if result.is_err() {
            crate::metrics::get().read_indexes_failed.inc();
        }
        self.waiters.reads.lock().expect("waiters lock").remove(&context);
        result
    }
}

/// Serves queued readers in rounds: everyone who queued before a round starts shares its result.
async fn read_loop(proposer: std::sync::Weak<Proposer>) {
    loop {
        let Some(strong) = proposer.upgrade() else { return };
        // Wait without keeping the proposer alive, so it can be dropped at shutdown.
        let notified = {
            let proposer = strong.clone();
            async move { proposer.read_wakeup.notified().await }
        };
        drop(strong);
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
        }
        let Some(proposer) = proposer.upgrade() else { return };
        let batch = std::mem::take(&mut *proposer.read_queue.lock().expect("read queue lock"));
        if batch.is_empty() {
            continue;
        }
        let result = proposer.read_index_round().await;
        for reply in batch {
            let _ = reply.send(result);
        }
    }
}

/// How long [`wait_applied`] waits (etcd's `applyTimeout`).
const APPLY_TIMEOUT: Duration = Duration::from_secs(1);

/// Waits until `applied` reaches the commit index the node reports now (etcd's `waitAppliedIndex`, which a
/// leader runs before renewing a lease: a revocation already committed must not be renewed over).
pub async fn wait_applied(node: &keel_raft::NodeStatus, applied: &watch::Receiver<u64>) -> Result<(), EtcdError> {
    let commit = node.snapshot().commit_index;
    let mut applied = applied.clone();
    match tokio::time::timeout(APPLY_TIMEOUT, applied.wait_for(|index| *index >= commit)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(_)) => Err(EtcdError::Stopped),
        Err(_) => Err(EtcdError::TimeoutWaitAppliedIndex),
    }
}
