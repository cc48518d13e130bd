//! etcd's Maintenance service: Alarm, Status, Defragment, Hash, HashKV, Snapshot (in `backup`),
//! MoveLeader.

use super::Shared;
use keel_api::EtcdError;
use keel_api::etcdserverpb::maintenance_server::Maintenance;
use keel_api::etcdserverpb::*;
use keel_api::keelpb::internal_request::Request as Internal;
use keel_state::Response as Applied;
use std::sync::Arc;
use tokio::sync::watch;
use tonic::{Request, Response, Status};

pub struct MaintenanceService {
    shared: Arc<Shared>,
    applied: watch::Receiver<u64>,
}

impl MaintenanceService {
    pub fn new(shared: Arc<Shared>, applied: watch::Receiver<u64>) -> Self {
        MaintenanceService { shared, applied }
    }
}

use super::backup::SnapshotStream;

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(&self, request: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        // As in etcd, every action goes through the log, so a GET sees every alarm raised before it.
        propose_and_reply!(self, Internal::Alarm(request.into_inner()), Applied::Alarm, "Alarm")
    }

    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        let node = self.shared.node.snapshot();
        let revision = self.shared.read_view().map(|view| keel_state::mvcc::Reader::revision(&view))?;
        let db_size_in_use = self.shared.size_in_use().await;
        let applied_index = *self.applied.borrow();
        let mut errors = Vec::new();
        if node.leader == 0 {
            errors.push(keel_api::EtcdError::NoLeader.message().to_string());
        }
        let alarms = self.shared.read_view()?.alarms().map_err(super::status)?;
        errors.extend(alarms.iter().map(keel_state::alarm::describe));
        Ok(Response::new(StatusResponse {
            header: self.shared.header(Some(ResponseHeader { revision, ..Default::default() })),
            version: keel_api::ETCD_API_VERSION.to_string(),
            db_size: self.shared.backend.file_size() as i64,
            leader: node.leader,
            raft_index: node.commit_index,
            raft_term: node.term,
            raft_applied_index: applied_index,
            errors,
            db_size_in_use,
            db_size_quota: self.shared.quota.map_or(0, |quota| quota as i64),
            is_learner: false,
            ..Default::default()
        }))
    }

    async fn defragment(&self, _: Request<DefragmentRequest>) -> Result<Response<DefragmentResponse>, Status> {
        let report = self
            .shared
            .defragmenter
            .defragment()
            .await
            .map_err(|error| Status::internal(format!("keel: defragment: {error}")))?;
        *self.shared.size_in_use_cache.lock().expect("size lock") = None;
        tracing::info!(?report, "defragmented on request");
        // etcd answers with an empty response, no header (clients' tests compare it).
        Ok(Response::new(DefragmentResponse::default()))
    }

    async fn hash(&self, _: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        // A CRC-32 of the whole store's image (every table), less this member's own identity.
        let backend = self.shared.backend.clone();
        let hash = tokio::task::spawn_blocking(move || {
            let mut sink = CrcSink(crc32fast::Hasher::new());
            keel_state::backend::image::export(&backend, &[keel_state::backend::meta::MEMBER_ID], &mut sink, |_| {})?;
            Ok::<_, keel_state::StateError>(sink.0.finalize())
        })
        .await
        .map_err(|error| Status::internal(error.to_string()))?
        .map_err(super::status)?;
        let revision = self.shared.read_view().map(|view| keel_state::mvcc::Reader::revision(&view))?;
        Ok(Response::new(HashResponse {
            header: self.shared.header(Some(ResponseHeader { revision, ..Default::default() })),
            hash,
        }))
    }

    async fn hash_kv(&self, request: Request<HashKvRequest>) -> Result<Response<HashKvResponse>, Status> {
        let revision = request.into_inner().revision;
        let shared = self.shared.clone();
        let (hash, hash_revision, compact_revision, current) = tokio::task::spawn_blocking(move || {
            let view = shared.read_view()?;
            let (hash, hash_revision) = view.hash_kv(revision).map_err(super::status)?;
            Ok::<_, Status>((
                hash,
                hash_revision,
                keel_state::mvcc::Reader::compact_revision(&view),
                keel_state::mvcc::Reader::revision(&view),
            ))
        })
        .await
        .map_err(|error| Status::internal(error.to_string()))??;
        Ok(Response::new(HashKvResponse {
            header: self.shared.header(Some(ResponseHeader { revision: current, ..Default::default() })),
            hash,
            compact_revision,
            hash_revision,
        }))
    }

    type SnapshotStream = SnapshotStream;

    async fn snapshot(&self, _: Request<SnapshotRequest>) -> Result<Response<Self::SnapshotStream>, Status> {
        super::backup::stream(&self.shared).map(Response::new)
    }

    async fn move_leader(&self, request: Request<MoveLeaderRequest>) -> Result<Response<MoveLeaderResponse>, Status> {
        let target = request.into_inner().target_id;
        let member = &self.shared.member;
        if self.shared.node.snapshot().leader != member.member_id {
            return Err(EtcdError::NotLeader.into());
        }
        if !member.members.iter().any(|peer| peer.id == target) {
            return Err(EtcdError::BadLeaderTransferee.into());
        }
        if target != member.member_id {
            self.shared.proposer.transfer_leader(target).await.map_err(Status::from)?;
        }
        // etcd 3.5 answers MoveLeader without a header.
        Ok(Response::new(MoveLeaderResponse::default()))
    }

    async fn downgrade(&self, _: Request<DowngradeRequest>) -> Result<Response<DowngradeResponse>, Status> {
        Err(Status::unimplemented("keel: Downgrade is not supported"))
    }
}

/// Feeds everything written into a CRC-32.
struct CrcSink(crc32fast::Hasher);

impl std::io::Write for CrcSink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
