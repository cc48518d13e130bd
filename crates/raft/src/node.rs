//! The Raft node: one thread owns raft-rs's `RawNode` and the log store, and does only Raft's work —
//! tick, step, persist, send — handing committed entries to the applier through an [`Outbox`].
//!
//! Group commit: while one Ready's entries are being fsynced, new proposals queue in the command
//! channel; the next loop turn takes all of them into one Ready and one fsync.

use crate::log_store::{LogError, LogStore};
use crate::wal::SyncStats;
use raft::eraftpb::{Entry, Message};
use raft::{Config, RawNode, ReadState, StateRole};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Commands queued at most before proposers are told to back off.
const COMMAND_QUEUE: usize = 16 * 1024;
/// Commands taken into one Ready at most, so one turn's latency stays bounded.
const COMMANDS_PER_TURN: usize = 4096;

#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub id: u64,
    pub voters: Vec<u64>,
    /// One Raft tick; etcd's `--heartbeat-interval`.
    pub tick_interval: Duration,
    /// Ticks without a leader before an election; `--election-timeout / --heartbeat-interval`.
    pub election_ticks: usize,
    /// The index the state machine has applied (Raft re-delivers what comes after it).
    pub applied_index: u64,
}

pub enum Command {
    /// Proposes `data`; if Raft refuses it (no leader), the outbox hears `dropped(id)`.
    Propose {
        id: u64,
        data: Vec<u8>,
    },
    /// Asks for a read index; the answer comes back through `Outbox::read_states` with `context`.
    ReadIndex {
        context: Vec<u8>,
    },
    /// A message from a peer.
    Step(Message),
    /// The state machine has applied entries up to `index`.
    Applied {
        index: u64,
    },
    /// The state machine has durably applied up to `index`; the log may drop what is below.
    Compact {
        index: u64,
    },
    TransferLeader {
        to: u64,
    },
    /// Messages to peer `id` could not be delivered (raft-rs slows replication to it until it answers).
    Unreachable {
        id: u64,
    },
    /// How sending a snapshot to peer `id` ended.
    SnapshotSent {
        id: u64,
        delivered: bool,
    },
    /// Syncs the log and stops the node.
    Shutdown,
}

/// Where the node's results go. Called on the node's thread.
pub trait Outbox: Send + 'static {
    /// Committed entries, in log order. May block while the applier is behind (back-pressure).
    fn committed(&mut self, entries: Vec<Entry>);
    /// The log now starts after a snapshot the leader sent (at `index`, `term`): the state machine must
    /// switch to that snapshot's image before it applies any later entry.
    fn snapshot_installed(&mut self, index: u64, term: u64);
    fn read_states(&mut self, states: Vec<ReadState>);
    /// A proposal Raft refused (no leader, or a leader transfer in progress).
    fn dropped(&mut self, id: u64);
    /// One WAL sync happened (for metrics and slow-disk warnings).
    fn synced(&mut self, stats: &SyncStats, entries: usize);
}

/// Sends Raft messages to peers.
pub trait Transport: Send + 'static {
    fn send(&mut self, messages: Vec<Message>);
}

/// A transport for a cluster of one: there is nobody to send to.
pub struct NoPeers;

impl Transport for NoPeers {
    fn send(&mut self, messages: Vec<Message>) {
        for message in messages {
            tracing::warn!(to = message.to, kind = ?message.get_msg_type(), "no transport to peer; message dropped");
        }
    }
}

/// What the node publishes about itself, readable from any thread.
#[derive(Debug, Default)]
pub struct NodeStatus {
    leader: AtomicU64,
    term: AtomicU64,
    commit_index: AtomicU64,
    last_index: AtomicU64,
    leader_changes: AtomicU64,
    /// Whether the leader this node knows has committed an entry in its term (before that, a leader
    /// cannot serve read indexes).
    committed_in_term: std::sync::atomic::AtomicBool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatusSnapshot {
    /// 0 when there is no leader.
    pub leader: u64,
    pub term: u64,
    pub commit_index: u64,
    pub last_index: u64,
    pub leader_changes: u64,
    pub committed_in_term: bool,
}

impl NodeStatus {
    pub fn snapshot(&self) -> StatusSnapshot {
        StatusSnapshot {
            leader: self.leader.load(Ordering::Acquire),
            term: self.term.load(Ordering::Acquire),
            commit_index: self.commit_index.load(Ordering::Acquire),
            last_index: self.last_index.load(Ordering::Acquire),
            leader_changes: self.leader_changes.load(Ordering::Acquire),
            committed_in_term: self.committed_in_term.load(Ordering::Acquire),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("the raft node has stopped")]
    Stopped,
    #[error("the raft node's queue is full")]
    Busy,
}

/// The handle the rest of the member holds.
pub struct NodeHandle {
    commands: SyncSender<Command>,
    status: Arc<NodeStatus>,
    thread: Option<JoinHandle<()>>,
}

impl NodeHandle {
    pub fn send(&self, command: Command) -> Result<(), NodeError> {
        self.commands.try_send(command).map_err(|error| match error {
            TrySendError::Full(_) => NodeError::Busy,
            TrySendError::Disconnected(_) => NodeError::Stopped,
        })
    }

    pub fn status(&self) -> StatusSnapshot {
        self.status.snapshot()
    }

    /// The live status, for holders that outlive a borrow of the handle.
    pub fn status_handle(&self) -> Arc<NodeStatus> {
        self.status.clone()
    }

    /// A sender for other threads (the applier reports progress with it).
    pub fn sender(&self) -> SyncSender<Command> {
        self.commands.clone()
    }

    /// Stops the node after a last sync of its log, and waits for it.
    pub fn shutdown(mut self) {
        let _ = self.commands.send(Command::Shutdown);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The node's command queue: create it first, so that parts started before the node can hold a sender.
pub fn command_queue() -> (SyncSender<Command>, Receiver<Command>) {
    sync_channel(COMMAND_QUEUE)
}

/// Starts the node's thread, taking commands from `queue` (made by [`command_queue`]). If the node fails
/// (its log cannot be written), its thread ends and hands the error to `on_failure`.
pub fn start(
    config: NodeConfig,
    log: LogStore,
    transport: impl Transport,
    outbox: impl Outbox,
    queue: (SyncSender<Command>, Receiver<Command>),
    on_failure: impl FnOnce(NodeError) + Send + 'static,
) -> Result<NodeHandle, NodeError> {
    let raft_config = Config {
        id: config.id,
        election_tick: config.election_ticks,
        heartbeat_tick: 1,
        applied: config.applied_index,
        max_size_per_msg: 1024 * 1024,
        max_inflight_msgs: 256,
        check_quorum: true,
        pre_vote: true,
        ..Default::default()
    };
    raft_config.validate()?;
    let logger = slog::Logger::root(slog::Drain::fuse(slog_stdlog::StdLog), slog::o!("raft_id" => config.id));
    let mut raw = RawNode::new(&raft_config, log.storage(), &logger)?;
    if config.voters == [config.id] {
        // A cluster of one need not wait an election timeout for itself.
        raw.campaign()?;
    }
    let (sender, receiver) = queue;
    let status = Arc::new(NodeStatus::default());
    let mut node = Node {
        raw,
        log,
        transport,
        outbox,
        commands: receiver,
        status: status.clone(),
        tick: config.tick_interval,
        leader: 0,
        role: StateRole::Follower,
        election_ticks: config.election_ticks,
    };
    let thread = std::thread::Builder::new()
        .name("raft-node".into())
        .spawn(move || {
            if let Err(error) = node.run() {
                // Fail-stop, as etcd does: a member whose log cannot be written must not go on. The member
                // hears it through `on_failure` and stops in order.
                tracing::error!(%error, "raft node failed; stopping the member");
                on_failure(error);
            }
        })
        .expect("spawn the raft thread");
    Ok(NodeHandle { commands: sender, status, thread: Some(thread) })
}

struct Node<T: Transport, O: Outbox> {
    raw: RawNode<raft::storage::MemStorage>,
    log: LogStore,
    transport: T,
    outbox: O,
    commands: Receiver<Command>,
    status: Arc<NodeStatus>,
    tick: Duration,
    leader: u64,
    role: StateRole,
    election_ticks: usize,
}

impl<T: Transport, O: Outbox> Node<T, O> {
    fn run(&mut self) -> Result<(), NodeError> {
        let mut next_tick = Instant::now() + self.tick;
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            match self.commands.recv_timeout(wait) {
                Ok(command) => {
                    let mut stop = !self.handle(command)?;
                    for _ in 0..COMMANDS_PER_TURN {
                        if stop {
                            break;
                        }
                        let Ok(command) = self.commands.try_recv() else { break };
                        stop = !self.handle(command)?;
                    }
                    if stop {
                        break;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if Instant::now() >= next_tick {
                self.raw.tick();
                next_tick += self.tick;
                if next_tick < Instant::now() {
                    next_tick = Instant::now() + self.tick;
                }
            }
            if self.raw.has_ready() {
                self.on_ready()?;
            }
            self.publish_status();
        }
        self.log.sync()?;
        Ok(())
    }

    /// Handles one command; returns false when the node should stop.
    fn handle(&mut self, command: Command) -> Result<bool, NodeError> {
        match command {
            Command::Propose { id, data } => {
                if let Err(error) = self.raw.propose(Vec::new(), data) {
                    tracing::debug!(%error, id, "proposal dropped");
                    self.outbox.dropped(id);
                }
            }
            Command::ReadIndex { context } => self.raw.read_index(context),
            Command::Step(message) => {
                if let Err(error) = self.raw.step(message) {
                    tracing::debug!(%error, "raft message not stepped");
                }
            }
            Command::Applied { index } => self.raw.advance_apply_to(index),
            Command::Compact { index } => {
                // Never past what raft-rs itself counts as applied (its notice may still be queued). A
                // follower that falls behind the compacted log is sent a snapshot.
                let index = index.min(self.raw.raft.raft_log.applied);
                let removed = self.log.compact(index)?;
                tracing::debug!(index, removed_segments = removed, "raft log compacted");
            }
            Command::TransferLeader { to } => self.raw.transfer_leader(to),
            Command::Unreachable { id } => self.raw.report_unreachable(id),
            Command::SnapshotSent { id, delivered } => {
                let status = if delivered { raft::SnapshotStatus::Finish } else { raft::SnapshotStatus::Failure };
                self.raw.report_snapshot(id, status);
            }
            Command::Shutdown => return Ok(false),
        }
        Ok(true)
    }

    /// raft-rs's Ready, handled in the order its documentation gives.
    fn on_ready(&mut self) -> Result<(), NodeError> {
        let mut ready = self.raw.ready();
        if !ready.messages().is_empty() {
            self.transport.send(ready.take_messages());
        }
        if !ready.snapshot().is_empty() {
            let snapshot = ready.snapshot();
            let (index, term) = (snapshot.get_metadata().index, snapshot.get_metadata().term);
            tracing::info!(index, term, "installing a snapshot from the leader");
            self.log.install_snapshot(snapshot)?;
            self.outbox.snapshot_installed(index, term);
        }
        self.hand_over(ready.take_committed_entries());
        if !ready.read_states().is_empty() {
            self.outbox.read_states(ready.take_read_states());
        }
        let appended = ready.entries().len();
        self.log.append(ready.entries())?;
        if let Some(hard_state) = ready.hs() {
            self.log.set_hard_state(hard_state)?;
        }
        if (appended > 0 || ready.must_sync())
            && let Some(stats) = self.log.sync()?
        {
            self.outbox.synced(&stats, appended);
        }
        if !ready.persisted_messages().is_empty() {
            self.transport.send(ready.take_persisted_messages());
        }
        let mut light = self.raw.advance_append(ready);
        if let Some(commit) = light.commit_index() {
            self.log.set_commit(commit)?;
        }
        if !light.messages().is_empty() {
            self.transport.send(light.take_messages());
        }
        self.hand_over(light.take_committed_entries());
        Ok(())
    }

    fn hand_over(&mut self, entries: Vec<Entry>) {
        if !entries.is_empty() {
            self.outbox.committed(entries);
        }
    }

    fn publish_status(&mut self) {
        let raft = &self.raw.raft;
        let leader = if raft.state == StateRole::Leader { raft.id } else { raft.leader_id };
        if raft.state != self.role {
            let term = raft.term;
            match raft.state {
                StateRole::PreCandidate | StateRole::Candidate
                    if matches!(self.role, StateRole::Follower | StateRole::Leader) =>
                {
                    tracing::warn!(
                        term,
                        last_leader = format_args!("{:x}", self.leader),
                        timeout_ms = (self.tick * self.election_ticks as u32).as_millis() as u64,
                        "{}",
                        if self.leader == 0 {
                            "leader election: no leader is known; this member starts an election"
                        } else {
                            "leader election: no message from the leader within the election timeout; this member starts an election (a slow disk or network, or a lost leader)"
                        }
                    );
                }
                StateRole::Leader => tracing::warn!(term, "leader election: this member won and leads now"),
                StateRole::Follower if self.role == StateRole::Leader => tracing::warn!(
                    term,
                    "leader election: this member stepped down as leader (it saw a higher term, or could not reach a quorum within the election timeout)"
                ),
                _ => {}
            }
            self.role = raft.state;
        }
        if leader != self.leader {
            if leader != 0 {
                self.status.leader_changes.fetch_add(1, Ordering::AcqRel);
                tracing::warn!(
                    leader = format_args!("{leader:x}"),
                    previous = format_args!("{:x}", self.leader),
                    term = raft.term,
                    "raft leader changed"
                );
            } else {
                tracing::warn!(previous = format_args!("{:x}", self.leader), term = raft.term, "raft leader lost");
            }
            self.leader = leader;
        }
        self.status.leader.store(leader, Ordering::Release);
        self.status.term.store(raft.term, Ordering::Release);
        self.status.commit_index.store(raft.raft_log.committed, Ordering::Release);
        self.status.last_index.store(raft.raft_log.last_index(), Ordering::Release);
        let committed_term = raft.raft_log.term(raft.raft_log.committed).unwrap_or(0);
        self.status.committed_in_term.store(leader != 0 && committed_term == raft.term, Ordering::Release);
    }
}
