//! The peer transport: Raft messages between members, over the peer URLs.
//!
//! Each member keeps one long-lived client stream to every other member (`keelpb.Peer/Raft`), fed by a
//! bounded queue. The Raft thread never waits on the network: when a peer's queue is full or its stream is
//! down, messages are dropped (Raft retransmits) and the node is told the peer is unreachable. Streams
//! reconnect with a backoff. The receiving side steps every message into its node.

mod probe;
pub mod snapshot;

use crate::lease::Lessor;
use crate::shutdown::Shutdown;
use keel_api::EtcdError;
use keel_api::etcdserverpb::{HashKvRequest, HashKvResponse, ResponseHeader};
use keel_api::keelpb::peer_client::PeerClient;
use keel_api::keelpb::peer_server::Peer;
use keel_api::keelpb::{LeaseAnswer, LeaseQuery, PeerAck, RaftBatch, SnapshotChunk};
use keel_raft::NodeStatus;
use keel_raft::raft::eraftpb::{Message, MessageType};
use keel_raft::{Command, Transport};
use snapshot::{SnapshotReceiver, SnapshotShipper};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::Duration;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

/// Batches queued per peer before messages to it are dropped.
const PEER_QUEUE: usize = 1024;
/// Messages sent in one batch at most, and bytes (well under the receiver's 64 MiB limit).
const BATCH_MESSAGES: usize = 256;
const BATCH_BYTES: usize = 8 * 1024 * 1024;
const RECONNECT_BACKOFF: Duration = Duration::from_millis(100);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(3);

/// What the Raft thread hands over: messages go to per-peer queues.
pub struct PeerTransport {
    peers: HashMap<u64, mpsc::Sender<Vec<u8>>>,
    urls: HashMap<u64, String>,
    commands: SyncSender<Command>,
    snapshots: Arc<SnapshotShipper>,
}

impl PeerTransport {
    /// Starts a sender task per peer (`id` -> its first peer URL); snapshots go out through `snapshots`.
    pub fn start(peers: &[(u64, String)], snapshots: SnapshotShipper, shutdown: &Shutdown) -> Self {
        let (cluster_id, member_id, commands) = (snapshots.cluster_id, snapshots.member_id, snapshots.commands.clone());
        let mut queues = HashMap::new();
        for (id, url) in peers {
            if *id == member_id {
                continue;
            }
            let (sender, receiver) = mpsc::channel(PEER_QUEUE);
            shutdown.spawn(send_loop(cluster_id, member_id, *id, url.clone(), receiver, commands.clone()));
            shutdown.spawn(probe::run(cluster_id, member_id, *id, url.clone()));
            queues.insert(*id, sender);
        }
        PeerTransport { peers: queues, urls: peers.iter().cloned().collect(), commands, snapshots: Arc::new(snapshots) }
    }
}

impl Transport for PeerTransport {
    fn send(&mut self, messages: Vec<Message>) {
        for message in messages {
            if message.get_msg_type() == MessageType::MsgSnapshot {
                let Some(url) = self.urls.get(&message.to) else {
                    let _ = self.commands.try_send(Command::SnapshotSent { id: message.to, delivered: false });
                    continue;
                };
                tracing::info!(
                    to = format_args!("{:x}", message.to),
                    "a follower is behind the log: sending it a snapshot"
                );
                self.snapshots.ship(message, url.clone());
                continue;
            }
            let Some(queue) = self.peers.get(&message.to) else {
                tracing::warn!(to = format_args!("{:x}", message.to), "message to an unknown member dropped");
                continue;
            };
            if let Err(error) = queue.try_send(keel_raft::encode_message(&message)) {
                let metrics = crate::metrics::get();
                metrics
                    .peer_sent_failures
                    .get_or_create(&crate::metrics::label("To", crate::metrics::peer(message.to)))
                    .inc();
                if message.get_msg_type() == MessageType::MsgHeartbeat {
                    metrics.heartbeat_send_failures.inc();
                }
                if matches!(error, mpsc::error::TrySendError::Full(_)) {
                    tracing::debug!(to = format_args!("{:x}", message.to), "peer queue full; message dropped");
                }
                let _ = self.commands.try_send(Command::Unreachable { id: message.to });
            }
        }
    }
}

/// Keeps a stream open to one peer and forwards its queue, reconnecting when the stream breaks.
async fn send_loop(
    cluster_id: u64,
    member_id: u64,
    peer_id: u64,
    url: String,
    mut queue: mpsc::Receiver<Vec<u8>>,
    commands: SyncSender<Command>,
) {
    let mut reported = false;
    let sent_bytes = crate::metrics::get()
        .peer_sent_bytes
        .get_or_create_owned(&crate::metrics::label("To", crate::metrics::peer(peer_id)));
    loop {
        let Ok(endpoint) = tonic::transport::Endpoint::from_shared(url.clone()) else {
            tracing::error!(%url, "peer URL is not usable");
            return;
        };
        // HTTP/2 pings find a link that went silent (a partition drops packets without a reset) within a
        // few seconds; the stream then breaks and reconnects, rather than waiting on TCP's retransmissions.
        let endpoint = endpoint
            .connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true);
        let channel = match endpoint.connect().await {
            Ok(channel) => channel,
            Err(error) => {
                if !reported {
                    tracing::warn!(peer = format_args!("{peer_id:x}"), %url, %error, "cannot reach peer");
                    reported = true;
                }
                let _ = commands.try_send(Command::Unreachable { id: peer_id });
                // Drop what queued while the peer was away: Raft will resend what still matters.
                while queue.try_recv().is_ok() {}
                tokio::time::sleep(RECONNECT_BACKOFF).await;
                continue;
            }
        };
        if reported {
            tracing::info!(peer = format_args!("{peer_id:x}"), %url, "peer reachable again");
            reported = false;
        }
        let (batches, outgoing) = mpsc::channel::<RaftBatch>(16);
        let mut client = PeerClient::new(channel);
        let call =
            tokio::spawn(async move { client.raft(tokio_stream::wrappers::ReceiverStream::new(outgoing)).await });
        loop {
            let Some(first) = queue.recv().await else { return };
            let mut bytes = first.len();
            let mut messages = vec![first];
            while messages.len() < BATCH_MESSAGES && bytes < BATCH_BYTES {
                match queue.try_recv() {
                    Ok(message) => {
                        bytes += message.len();
                        messages.push(message);
                    }
                    Err(_) => break,
                }
            }
            if batches.send(RaftBatch { cluster_id, from: member_id, messages }).await.is_err() {
                break;
            }
            sent_bytes.inc_by(bytes as u64);
        }
        if let Ok(Err(status)) = call.await {
            tracing::warn!(peer = format_args!("{peer_id:x}"), %status, "peer stream ended");
        }
        let _ = commands.try_send(Command::Unreachable { id: peer_id });
        tokio::time::sleep(RECONNECT_BACKOFF).await;
    }
}

/// The receiving side: steps peers' messages into this member's node, and answers lease questions
/// when this member leads.
pub struct PeerService {
    pub cluster_id: u64,
    pub member_id: u64,
    /// The node's queue: received messages are stepped through it.
    pub commands: SyncSender<Command>,
    pub lessor: Arc<Lessor>,
    pub node: Arc<NodeStatus>,
    pub snapshots: SnapshotReceiver,
    pub backend: Arc<keel_state::backend::Backend>,
    pub applied: tokio::sync::watch::Receiver<u64>,
}

impl PeerService {
    fn check_cluster(&self, from: u64, cluster_id: u64) -> Result<(), Status> {
        if cluster_id == self.cluster_id {
            return Ok(());
        }
        tracing::error!(
            from = format_args!("{from:x}"),
            their_cluster = format_args!("{cluster_id:x}"),
            "refusing Raft messages from another cluster"
        );
        Err(Status::failed_precondition(format!(
            "keel: cluster ID mismatch: this member is in cluster {:x}, the sender in {cluster_id:x}",
            self.cluster_id
        )))
    }

    fn check_lease_query(&self, query: &LeaseQuery) -> Result<(), Status> {
        if query.cluster_id != self.cluster_id {
            return Err(Status::failed_precondition("keel: cluster ID mismatch"));
        }
        let status = self.node.snapshot();
        if status.leader != self.member_id {
            return Err(Status::unavailable("keel: not the leader"));
        }
        self.lessor.lead(status.term);
        Ok(())
    }
}

/// A follower's way to the leader's lease clocks.
pub struct LeaderLink {
    cluster_id: u64,
    member_id: u64,
    node: Arc<NodeStatus>,
    applied: tokio::sync::watch::Receiver<u64>,
    peer_urls: HashMap<u64, String>,
    channels: std::sync::Mutex<HashMap<u64, tonic::transport::Channel>>,
    timeout: Duration,
}

/// Where a lease question is answered.
pub enum LeaseRoute {
    /// This member leads (in `term`): ask the local lessor.
    Local { term: u64 },
    /// Ask the leader over its peer URL.
    Leader(PeerClient<tonic::transport::Channel>),
}

impl LeaderLink {
    pub fn new(
        (cluster_id, member_id): (u64, u64),
        (node, applied): (Arc<NodeStatus>, tokio::sync::watch::Receiver<u64>),
        peers: &[(u64, String)],
        timeout: Duration,
    ) -> Self {
        LeaderLink {
            cluster_id,
            member_id,
            node,
            applied,
            peer_urls: peers.iter().cloned().collect(),
            channels: std::sync::Mutex::new(HashMap::new()),
            timeout,
        }
    }

    /// Waits (up to the request timeout) for a leader, and says how to reach it.
    pub async fn route(&self) -> Result<LeaseRoute, EtcdError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let status = self.node.snapshot();
            let leader = status.leader;
            if leader == self.member_id {
                // What is committed is applied first: a revocation already committed is not renewed over.
                crate::propose::wait_applied(&self.node, &self.applied).await?;
                return Ok(LeaseRoute::Local { term: status.term });
            }
            if leader != 0 {
                let url = self.peer_urls.get(&leader).ok_or(EtcdError::NoLeader)?;
                let channel = {
                    let mut channels = self.channels.lock().expect("channels lock");
                    match channels.get(&leader) {
                        Some(channel) => channel.clone(),
                        None => {
                            let endpoint = tonic::transport::Endpoint::from_shared(url.clone())
                                .map_err(|_| EtcdError::NoLeader)?;
                            let channel = endpoint.connect_timeout(Duration::from_secs(1)).connect_lazy();
                            channels.insert(leader, channel.clone());
                            channel
                        }
                    }
                };
                return Ok(LeaseRoute::Leader(PeerClient::new(channel)));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(EtcdError::NoLeader);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// How long a forwarded lease question may keep trying.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn query(&self, id: i64) -> LeaseQuery {
        LeaseQuery { cluster_id: self.cluster_id, id }
    }
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn raft(&self, request: Request<Streaming<RaftBatch>>) -> Result<Response<PeerAck>, Status> {
        let mut batches = request.into_inner();
        while let Some(batch) = batches.message().await? {
            self.check_cluster(batch.from, batch.cluster_id)?;
            let bytes: usize = batch.messages.iter().map(Vec::len).sum();
            crate::metrics::get()
                .peer_received_bytes
                .get_or_create(&crate::metrics::label("From", crate::metrics::peer(batch.from)))
                .inc_by(bytes as u64);
            for bytes in batch.messages {
                let message =
                    keel_raft::decode_message(&bytes).map_err(|error| Status::invalid_argument(error.to_string()))?;
                match self.commands.try_send(Command::Step(message)) {
                    Ok(()) => {}
                    // A full queue drops the message; Raft retransmits.
                    Err(TrySendError::Full(_)) => {}
                    Err(TrySendError::Disconnected(_)) => return Err(Status::unavailable("keel: member stopping")),
                }
            }
        }
        Ok(Response::new(PeerAck {}))
    }

    async fn snapshot(&self, request: Request<Streaming<SnapshotChunk>>) -> Result<Response<PeerAck>, Status> {
        let mut chunks = request.into_inner();
        let Some(first) = chunks.message().await? else { return Ok(Response::new(PeerAck {})) };
        self.check_cluster(first.from, first.cluster_id)?;
        let message = self.snapshots.receive(first.from, first, &mut chunks).await?;
        // The node blocks on nothing here: a full queue means the leader resends later.
        self.commands.try_send(Command::Step(message)).map_err(|_| Status::unavailable("keel: member busy"))?;
        Ok(Response::new(PeerAck {}))
    }

    async fn hash_kv(&self, request: Request<HashKvRequest>) -> Result<Response<HashKvResponse>, Status> {
        let revision = request.into_inner().revision;
        let backend = self.backend.clone();
        let (member_id, cluster_id) = (self.member_id, self.cluster_id);
        tokio::task::spawn_blocking(move || {
            let view = keel_state::mvcc::ReadView::open(&backend)?;
            let (hash, hash_revision) = view.hash_kv(revision)?;
            let header = ResponseHeader {
                cluster_id,
                member_id,
                revision: keel_state::mvcc::Reader::revision(&view),
                raft_term: 0,
            };
            Ok(HashKvResponse {
                header: Some(header),
                hash,
                compact_revision: keel_state::mvcc::Reader::compact_revision(&view),
                hash_revision,
            })
        })
        .await
        .map_err(|error| Status::internal(error.to_string()))?
        .map(Response::new)
        .map_err(crate::errors::status)
    }

    async fn lease_renew(&self, request: Request<LeaseQuery>) -> Result<Response<LeaseAnswer>, Status> {
        let query = request.into_inner();
        self.check_lease_query(&query)?;
        crate::propose::wait_applied(&self.node, &self.applied).await.map_err(crate::errors::etcd)?;
        let renewed = self.lessor.renew(query.id);
        Ok(Response::new(LeaseAnswer { found: renewed.is_some(), ttl: renewed.unwrap_or(0) }))
    }

    async fn ping(&self, request: Request<keel_api::keelpb::Probe>) -> Result<Response<PeerAck>, Status> {
        let probe = request.into_inner();
        self.check_cluster(probe.from, probe.cluster_id)?;
        Ok(Response::new(PeerAck {}))
    }

    async fn lease_remaining(&self, request: Request<LeaseQuery>) -> Result<Response<LeaseAnswer>, Status> {
        let query = request.into_inner();
        self.check_lease_query(&query)?;
        let remaining = self.lessor.remaining(query.id);
        Ok(Response::new(LeaseAnswer { found: remaining.is_some(), ttl: remaining.unwrap_or(-1) }))
    }
}
