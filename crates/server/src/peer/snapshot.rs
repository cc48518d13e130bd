//! Raft snapshots between members: the leader streams an image of its backend to a follower that lags
//! behind the leader's log; the follower rebuilds a backend file from it, then steps the snapshot message
//! into its node, which records the snapshot in its log and has the applier switch to the new file.
//!
//! raft-rs asks for a snapshot at its commit index `C` (its `MemStorage` carries no data). The leader waits
//! until its own store has applied `C`, then takes the image from one read transaction, which may stand
//! at a later index `A`; the message sent names `A` and its term, so the follower's log and store agree.

use crate::datadir::DataDir;
use keel_api::keelpb::SnapshotChunk;
use keel_api::keelpb::peer_client::PeerClient;
use keel_raft::Command;
use keel_raft::raft::eraftpb::Message;
use keel_state::backend::{Backend, image, meta};
use std::io::Write;
use std::sync::Arc;
use std::sync::mpsc::SyncSender;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tonic::{Status, Streaming};

/// Bytes of image per chunk.
const CHUNK_BYTES: usize = 1024 * 1024;
/// Chunks buffered between the image reader and the network.
const CHUNKS_IN_FLIGHT: usize = 8;
/// How long the leader waits for its own store to reach the index raft-rs asked for.
const APPLY_WAIT: Duration = Duration::from_secs(60);

/// The leader's side: everything needed to ship an image to a follower.
pub struct SnapshotShipper {
    pub cluster_id: u64,
    pub member_id: u64,
    pub backend: Arc<Backend>,
    pub applied: watch::Receiver<u64>,
    pub commands: SyncSender<Command>,
    pub runtime: tokio::runtime::Handle,
}

impl SnapshotShipper {
    /// Starts shipping `message` (a `MsgSnapshot`) to `url`; called on the Raft thread, never waits.
    /// The node hears how it ended through `Command::SnapshotSent`.
    pub fn ship(self: &Arc<Self>, message: Message, url: String) {
        let shipper = self.clone();
        self.runtime.spawn(async move {
            let to = message.to;
            let started = Instant::now();
            let result = shipper.send(message, &url).await;
            let delivered = match result {
                Ok((index, bytes)) => {
                    tracing::info!(
                        to = format_args!("{to:x}"),
                        index,
                        bytes,
                        took_ms = started.elapsed().as_millis() as u64,
                        "snapshot delivered to a lagging follower"
                    );
                    true
                }
                Err(error) => {
                    tracing::warn!(to = format_args!("{to:x}"), %error, "snapshot not delivered; raft will retry");
                    false
                }
            };
            let _ = shipper.commands.try_send(Command::SnapshotSent { id: to, delivered });
        });
    }

    /// Streams the image, then the message naming where the image stands. Returns that index and the
    /// image's size.
    async fn send(&self, mut message: Message, url: &str) -> anyhow::Result<(u64, u64)> {
        let wanted = message.get_snapshot().get_metadata().index;
        let mut applied = self.applied.clone();
        tokio::time::timeout(APPLY_WAIT, applied.wait_for(|index| *index >= wanted))
            .await
            .map_err(|_| anyhow::anyhow!("this member has not applied index {wanted} within {APPLY_WAIT:?}"))??;
        let endpoint =
            tonic::transport::Endpoint::from_shared(url.to_string())?.connect_timeout(Duration::from_secs(2));
        let mut client = PeerClient::new(endpoint.connect().await?).max_decoding_message_size(usize::MAX);
        let (chunks, outgoing) = mpsc::channel::<SnapshotChunk>(CHUNKS_IN_FLIGHT);
        let call =
            tokio::spawn(async move { client.snapshot(tokio_stream::wrappers::ReceiverStream::new(outgoing)).await });

        let (cluster_id, from, backend, to) = (self.cluster_id, self.member_id, self.backend.clone(), message.to);
        let image_chunks = chunks.clone();
        let info = tokio::task::spawn_blocking(move || {
            let sink = ChunkSink { chunks: image_chunks, cluster_id, from, buffer: Vec::with_capacity(CHUNK_BYTES) };
            image::export(&backend, &[meta::MEMBER_ID], sink, |bytes| {
                tracing::info!(to = format_args!("{to:x}"), mb = bytes >> 20, "sending snapshot");
            })
        })
        .await??;

        let metadata = message.mut_snapshot().mut_metadata();
        metadata.index = info.applied_index;
        metadata.term = info.applied_term;
        let last = SnapshotChunk { cluster_id, from, data: Vec::new(), message: keel_raft::encode_message(&message) };
        chunks.send(last).await.map_err(|_| anyhow::anyhow!("the follower closed the snapshot stream"))?;
        drop(chunks);
        call.await??;
        Ok((info.applied_index, info.bytes))
    }
}

/// Cuts the image into chunks for the stream (a `Write` on a blocking thread).
struct ChunkSink {
    chunks: mpsc::Sender<SnapshotChunk>,
    cluster_id: u64,
    from: u64,
    buffer: Vec<u8>,
}

impl ChunkSink {
    fn send_buffer(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let data = std::mem::replace(&mut self.buffer, Vec::with_capacity(CHUNK_BYTES));
        let chunk = SnapshotChunk { cluster_id: self.cluster_id, from: self.from, data, message: Vec::new() };
        self.chunks
            .blocking_send(chunk)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the snapshot stream closed"))
    }
}

impl Write for ChunkSink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= CHUNK_BYTES {
            self.send_buffer()?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send_buffer()
    }
}

/// The follower's side: rebuilds a backend file from the chunks as they arrive.
pub struct SnapshotReceiver {
    pub member_id: u64,
    pub data_dir: DataDir,
}

impl SnapshotReceiver {
    /// Takes the image from `chunks` (pieces of data, then the message; `first` already read); returns the
    /// decoded message once the image is a durable backend file named for the message's index.
    pub async fn receive(
        &self,
        from: u64,
        first: SnapshotChunk,
        chunks: &mut Streaming<SnapshotChunk>,
    ) -> Result<Message, Status> {
        let incoming = self.data_dir.incoming_image(from);
        let (data, reader) = image::pipe(CHUNKS_IN_FLIGHT);
        let target = incoming.clone();
        let member_id = self.member_id.to_be_bytes();
        let import = tokio::task::spawn_blocking(move || {
            image::import(reader, &target, &[(meta::MEMBER_ID, &member_id)], |bytes| {
                tracing::info!(from = format_args!("{from:x}"), mb = bytes >> 20, "receiving snapshot");
            })
        });
        let mut chunk = Some(first);
        let message = loop {
            let Some(current) = chunk.take() else {
                return Err(Status::invalid_argument("keel: the snapshot stream ended before its message"));
            };
            if !current.message.is_empty() {
                break Some(
                    keel_raft::decode_message(&current.message)
                        .map_err(|error| Status::invalid_argument(error.to_string()))?,
                );
            }
            // A send fails only when the importer gave up; its error says why.
            if data.send_chunk(current.data).is_err() {
                break None;
            }
            chunk = chunks.message().await?;
        };
        drop(data);
        let info = import
            .await
            .map_err(|error| Status::internal(error.to_string()))?
            .map_err(|error| Status::data_loss(format!("keel: snapshot image refused: {error}")))?;
        let message =
            message.ok_or_else(|| Status::invalid_argument("keel: the snapshot stream ended before its message"))?;
        let index = message.get_snapshot().get_metadata().index;
        if info.applied_index != index || index == 0 {
            let _ = std::fs::remove_file(&incoming);
            return Err(Status::invalid_argument(format!(
                "keel: snapshot image stands at index {} but its message names {index}",
                info.applied_index
            )));
        }
        let file = self.data_dir.snapshot_image(index);
        std::fs::rename(&incoming, &file).map_err(|error| Status::internal(error.to_string()))?;
        tracing::info!(from = format_args!("{from:x}"), index, bytes = info.bytes, "snapshot image received");
        Ok(message)
    }
}
