//! The member: who it is and what every service of it shares (the member context, today's
//! [`Shared`]), and how it comes up from its data dir ([`bootstrap`]: identity, Raft configuration,
//! opening the log). Serving clients and peers is `crate::serve`'s, above this module.
//!
//! Layering: this module sits above the applier, the proposer and the error mapping, and below every
//! service (gRPC, HTTP, space management); it never names them.

pub mod bootstrap;

use crate::errors::{etcd, status};
use crate::propose::Proposer;
use keel_api::EtcdError;
use keel_api::etcdserverpb::{AlarmRequest, AlarmType, ResponseHeader, alarm_request};
use keel_raft::NodeStatus;
use keel_state::backend::Backend;
use keel_state::mvcc::ReadView;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Who this member is, as the Cluster service and response headers tell it.
#[derive(Debug, Clone)]
pub struct MemberInfo {
    pub cluster_id: u64,
    pub member_id: u64,
    /// This member's advertised client URLs.
    pub client_urls: Vec<String>,
    /// Every member of the initial cluster, this one included.
    pub members: Vec<ClusterMember>,
}

#[derive(Debug, Clone)]
pub struct ClusterMember {
    pub id: u64,
    pub peer_urls: Vec<String>,
}

/// What every service shares.
pub struct Shared {
    pub member: MemberInfo,
    pub proposer: Arc<Proposer>,
    pub backend: Arc<Backend>,
    pub node: Arc<NodeStatus>,
    pub max_txn_ops: usize,
    /// `--quota-backend-bytes`; None when disabled.
    pub quota: Option<u64>,
    pub defragmenter: crate::applier::Defragmenter,
    /// The index this member has applied.
    pub applied: tokio::sync::watch::Receiver<u64>,
    /// The last measured backend size in use, and when.
    pub size_in_use_cache: Mutex<Option<(Instant, i64)>>,
}

/// How long a measured backend size in use is reused (measuring walks every tree of the backend).
const SIZE_IN_USE_REUSE: Duration = Duration::from_secs(30);

impl Shared {
    /// Completes a header the state machine started (it sets only the revision).
    pub fn header(&self, header: Option<ResponseHeader>) -> Option<ResponseHeader> {
        let revision = header.map(|header| header.revision).unwrap_or_default();
        Some(ResponseHeader {
            cluster_id: self.member.cluster_id,
            member_id: self.member.member_id,
            revision,
            raft_term: self.node.snapshot().term,
        })
    }

    /// etcd's quota check before a request that grows the store: if the backend file plus what the
    /// request adds would reach the quota, NOSPACE is raised for this member (through the log, so the
    /// whole cluster refuses such requests from then on) and the request is refused.
    pub async fn check_quota(&self, cost: u64) -> Result<(), tonic::Status> {
        let Some(quota) = self.quota else { return Ok(()) };
        // Requests that add nothing (a txn of deletes) always pass, as in etcd.
        if cost == 0 || self.backend.file_size() + cost < quota {
            return Ok(());
        }
        let raise = AlarmRequest {
            action: alarm_request::AlarmAction::Activate as i32,
            member_id: self.member.member_id,
            alarm: AlarmType::Nospace as i32,
        };
        tracing::warn!(
            quota,
            db_size = self.backend.file_size(),
            "the backend reached its quota: raising the NOSPACE alarm"
        );
        if let Err(error) = self.proposer.propose(keel_api::keelpb::internal_request::Request::Alarm(raise)).await {
            tracing::warn!(%error, "raising the NOSPACE alarm failed");
        }
        Err(etcd(EtcdError::NoSpace))
    }

    pub fn applied_index(&self) -> u64 {
        *self.applied.borrow()
    }

    /// etcd's `dbSizeInUse`, measured on demand and reused for a while (Status and /metrics share it).
    pub async fn size_in_use(&self) -> i64 {
        if let Some((measured_at, bytes)) = *self.size_in_use_cache.lock().expect("size lock")
            && measured_at.elapsed() < SIZE_IN_USE_REUSE
        {
            return bytes;
        }
        let backend = self.backend.clone();
        match tokio::task::spawn_blocking(move || backend.size_in_use()).await {
            Ok(Ok(bytes)) => {
                *self.size_in_use_cache.lock().expect("size lock") = Some((Instant::now(), bytes as i64));
                bytes as i64
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, "cannot measure the backend's size in use");
                0
            }
            Err(_) => 0,
        }
    }

    /// What the metrics' gauges mirror, read now.
    pub async fn live(&self) -> crate::metrics::Live {
        use keel_state::mvcc::Reader;
        let status = self.node.snapshot();
        let store = self.read_view().ok().map(|view| crate::metrics::LiveStore {
            revision: view.revision(),
            compact_revision: view.compact_revision(),
            keys: view.key_count().unwrap_or(0),
            alarms: view
                .alarms()
                .unwrap_or_default()
                .iter()
                .filter_map(|alarm| AlarmType::try_from(alarm.alarm).ok())
                .collect(),
        });
        crate::metrics::Live {
            member_id: self.member.member_id,
            leader: status.leader,
            leader_changes: status.leader_changes,
            commit_index: status.commit_index,
            applied_index: self.applied_index(),
            db_size: self.backend.file_size(),
            db_size_in_use: self.size_in_use().await,
            quota: self.quota,
            store,
        }
    }

    /// A snapshot of the store as applied on this member.
    pub fn read_view(&self) -> Result<ReadView, tonic::Status> {
        ReadView::open(&self.backend).map_err(status)
    }
}
