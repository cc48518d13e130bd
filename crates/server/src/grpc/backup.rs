//! `Maintenance.Snapshot`: a backup of this member's store, streamed in etcd's way (32 KiB pieces, each
//! saying how many bytes remain, the checksum in the last bytes; see `keel_state::backend::snapshot`).
//!
//! The snapshot is first written, from one read transaction, to an unlinked scratch file next to the
//! backend (so the member keeps serving, and `remaining_bytes` is exact from the first piece), then
//! streamed from it.

use super::Shared;
use keel_api::etcdserverpb::{ResponseHeader, SnapshotResponse};
use keel_state::backend::snapshot;
use std::io::{BufWriter, Read, Seek, SeekFrom};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

/// etcd's snapshot piece size.
const PIECE: usize = 32 * 1024;

pub type SnapshotStream = Pin<Box<dyn tokio_stream::Stream<Item = Result<SnapshotResponse, Status>> + Send + 'static>>;

/// Starts writing a snapshot; its pieces arrive on the returned stream.
pub fn stream(shared: &Arc<Shared>) -> Result<SnapshotStream, Status> {
    let (pieces, receiver) = tokio::sync::mpsc::channel(16);
    let backend = shared.backend.clone();
    let header = shared.header(Some(ResponseHeader::default()));
    std::thread::Builder::new()
        .name("snapshot".into())
        .spawn(move || {
            if let Err(error) = send(&backend, header, &pieces) {
                let _ = pieces.blocking_send(Err(error));
            }
        })
        .map_err(|error| Status::internal(format!("keel: cannot start the snapshot thread: {error}")))?;
    Ok(Box::pin(ReceiverStream::new(receiver)))
}

fn send(
    backend: &keel_state::backend::Backend,
    header: Option<ResponseHeader>,
    pieces: &tokio::sync::mpsc::Sender<Result<SnapshotResponse, Status>>,
) -> Result<(), Status> {
    let started = Instant::now();
    let dir = backend.path().parent().unwrap_or(std::path::Path::new("."));
    let scratch_path = dir.join(format!("snapshot-{}-{}.tmp", std::process::id(), started.elapsed().as_nanos()));
    let failed = |what: &str, error: &dyn std::fmt::Display| {
        tracing::warn!(%error, "snapshot: {what}");
        Status::internal(format!("keel: snapshot: {what}: {error}"))
    };
    let mut scratch = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&scratch_path)
        .map_err(|error| failed("cannot create a scratch file next to the backend (is the disk full?)", &error))?;
    // Unlinked at once: the space goes back when the stream ends, whatever happens.
    let _ = std::fs::remove_file(&scratch_path);
    let info = snapshot::write(backend, BufWriter::with_capacity(1024 * 1024, &scratch), |_| {})
        .map_err(|error| failed("writing the snapshot", &error))?;
    tracing::info!(
        bytes = info.bytes,
        revision = info.image.revision,
        took_ms = started.elapsed().as_millis() as u64,
        "snapshot: written; sending it"
    );
    scratch.seek(SeekFrom::Start(0)).map_err(|error| failed("rereading the snapshot", &error))?;
    let mut remaining = info.bytes;
    let mut buffer = vec![0u8; PIECE];
    while remaining > 0 {
        let take = remaining.min(PIECE as u64) as usize;
        scratch.read_exact(&mut buffer[..take]).map_err(|error| failed("rereading the snapshot", &error))?;
        remaining -= take as u64;
        let piece = SnapshotResponse {
            header,
            remaining_bytes: remaining,
            blob: buffer[..take].to_vec(),
            version: String::new(),
        };
        if pieces.blocking_send(Ok(piece)).is_err() {
            tracing::info!(sent = info.bytes - remaining, "snapshot: the client went away");
            return Ok(());
        }
    }
    let took = started.elapsed();
    crate::metrics::get().snapshot_duration.observe(took.as_secs_f64());
    tracing::info!(bytes = info.bytes, took_ms = took.as_millis() as u64, "snapshot: sent");
    Ok(())
}
