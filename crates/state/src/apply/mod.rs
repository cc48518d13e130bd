//! The apply step: committed Raft entries, in order, become changes to the store.
//!
//! A batch of entries is applied in one backend transaction, together with the applied index and term,
//! so replaying the log after a crash skips exactly what the backend already holds. Apply is pure: no
//! clock, no randomness, no network; every member computes the same store from the same entries.

use crate::alarm;
use crate::backend::{self, Backend, META, meta};
use crate::defrag_claim;
use crate::error::StateError;
use crate::lease::{LeaseChange, LeaseStore};
use crate::member::MemberStore;
use crate::mvcc::{self, Change, KeySpan, ReadView, Reader, WriteView};
use keel_api::EtcdError;
use keel_api::etcdserverpb::{
    AlarmMember, AlarmRequest, AlarmResponse, AlarmType, CompactionRequest, CompactionResponse, DeleteRangeResponse,
    LeaseCheckpointResponse, LeaseGrantResponse, LeaseRevokeResponse, PutResponse, ResponseHeader, TxnResponse,
    alarm_request::AlarmAction,
};
use keel_api::keelpb::InternalRequest;
use keel_api::keelpb::internal_request::Request;
use prost::Message;
use std::path::Path;
use std::sync::Arc;

/// One committed log entry; `data` is an encoded [`InternalRequest`], or empty for Raft's own entries.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    pub index: u64,
    pub term: u64,
    pub data: &'a [u8],
}

/// What applying a client request produced, for the caller waiting on `id`.
#[derive(Debug)]
pub struct Applied {
    pub id: u64,
    pub index: u64,
    pub result: Result<Response, EtcdError>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    Compaction(CompactionResponse),
    LeaseGrant(LeaseGrantResponse),
    LeaseRevoke(LeaseRevokeResponse),
    LeaseCheckpoint(LeaseCheckpointResponse),
    Alarm(AlarmResponse),
    /// Whether a defrag claim was granted (or a release taken), and who holds the right now (0: nobody).
    DefragClaim {
        granted: bool,
        holder: u64,
    },
    MemberPublished,
}

/// Where the state machine stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AppliedState {
    pub index: u64,
    pub term: u64,
    pub revision: i64,
    pub compact_revision: i64,
}

/// The result of applying a batch.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    pub applied: Vec<Applied>,
    pub changes: Vec<Change>,
    pub lease_changes: Vec<LeaseChange>,
    /// How long the backend commit took (with its fsync when the batch was durable).
    pub commit_duration: std::time::Duration,
}

pub struct StateMachine {
    backend: Arc<Backend>,
    state: AppliedState,
}

impl StateMachine {
    pub fn open(path: &Path) -> Result<Self, StateError> {
        let backend = Arc::new(Backend::open(path)?);
        let state = stored_state(&backend)?;
        Ok(StateMachine { backend, state })
    }

    /// Replaces the whole store by `file`, a backend file built from an image (an installed Raft
    /// snapshot); the state machine then stands where the image stood.
    pub fn install(&mut self, file: &Path) -> Result<AppliedState, StateError> {
        self.backend.replace_with(file)?;
        self.state = stored_state(&self.backend)?;
        Ok(self.state)
    }

    /// Replaces the whole store by `other`'s (a defragmented copy that caught up with this one).
    pub fn adopt(&mut self, other: StateMachine) -> Result<AppliedState, StateError> {
        let backend = Arc::into_inner(other.backend)
            .ok_or_else(|| StateError::Corrupt("the adopted store is still shared".to_string()))?;
        self.backend.adopt(backend)?;
        self.state = stored_state(&self.backend)?;
        Ok(self.state)
    }

    pub fn state(&self) -> AppliedState {
        self.state
    }

    /// The backend, shared with readers.
    pub fn backend(&self) -> &Arc<Backend> {
        &self.backend
    }

    /// A consistent read snapshot as of the last applied batch.
    pub fn read(&self) -> Result<ReadView, StateError> {
        ReadView::open(&self.backend)
    }

    /// A member-level meta value stored outside the apply path (configuration, identity), if any.
    pub fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, StateError> {
        let transaction = self.backend.begin_read()?;
        let table = transaction.open_table(META)?;
        Ok(table.get(name)?.map(|value| value.value().to_vec()))
    }

    /// Stores a member-level meta value, durably.
    pub fn store_meta(&mut self, name: &str, value: &[u8]) -> Result<(), StateError> {
        let transaction = self.backend.begin_write(true)?;
        transaction.open_table(META)?.insert(name, value)?;
        transaction.commit()?;
        Ok(())
    }

    /// Applies committed entries in order. Entries at or below the applied index are skipped (replay).
    /// With `durable`, the backend commit reaches the disk before this returns.
    pub fn apply(&mut self, entries: &[Entry<'_>], durable: bool) -> Result<BatchOutcome, StateError> {
        let mut outcome = BatchOutcome::default();
        let fresh: Vec<&Entry<'_>> = entries.iter().filter(|entry| entry.index > self.state.index).collect();
        let Some(last) = fresh.last() else { return Ok(outcome) };
        let (last_index, last_term) = (last.index, last.term);
        let transaction = self.backend.begin_write(durable)?;
        {
            let mut stores = Stores {
                kv: WriteView::open(&transaction)?,
                leases: LeaseStore::open(&transaction)?,
                members: MemberStore::open(&transaction)?,
            };
            for entry in &fresh {
                if entry.data.is_empty() {
                    continue;
                }
                let request = InternalRequest::decode(entry.data)
                    .map_err(|error| StateError::BadEntry { index: entry.index, reason: error.to_string() })?;
                let result = apply_request(&mut stores, request.request)?;
                outcome.applied.push(Applied { id: request.id, index: entry.index, result });
            }
            let view = &mut stores.kv;
            view.write_meta(meta::APPLIED_INDEX, last_index)?;
            view.write_meta(meta::APPLIED_TERM, last_term)?;
            view.store_live_keys()?;
            outcome.changes = view.take_changes();
            outcome.lease_changes = stores.leases.take_changes();
            self.state.revision = view.revision();
            self.state.compact_revision = view.compact_revision();
        }
        let committing = std::time::Instant::now();
        transaction.commit()?;
        outcome.commit_duration = committing.elapsed();
        self.state.index = last_index;
        self.state.term = last_term;
        Ok(outcome)
    }

    /// Makes everything applied so far durable in the backend.
    pub fn persist(&mut self) -> Result<(), StateError> {
        let transaction = self.backend.begin_write(true)?;
        transaction.commit()?;
        Ok(())
    }
}

fn stored_state(backend: &Backend) -> Result<AppliedState, StateError> {
    let view = ReadView::open(backend)?;
    let transaction = backend.begin_read()?;
    let meta_table = transaction.open_table(META)?;
    Ok(AppliedState {
        index: backend::read_u64(&meta_table, meta::APPLIED_INDEX)?,
        term: backend::read_u64(&meta_table, meta::APPLIED_TERM)?,
        revision: view.revision(),
        compact_revision: view.compact_revision(),
    })
}

/// The stores one batch is applied to, inside one backend write transaction.
struct Stores<'t> {
    /// Revisions, put, delete, compaction; the meta table, where alarms and the defrag claim live.
    kv: WriteView<'t>,
    leases: LeaseStore<'t>,
    members: MemberStore<'t>,
}

/// Applies one request; a request error leaves the store unchanged and goes back to the caller.
fn apply_request(stores: &mut Stores<'_>, request: Option<Request>) -> Result<Result<Response, EtcdError>, StateError> {
    if let Some(refusal) = refused_by_alarm(&alarm::active(stores.kv.meta_table())?, request.as_ref()) {
        return Ok(Err(refusal));
    }
    let Stores { kv: view, leases, members } = stores;
    view.begin();
    let result = match request {
        Some(Request::Put(put)) => {
            mvcc::check_put(view, leases, &put).and_then(|()| mvcc::apply_put(view, leases, &put).map(Response::Put))
        }
        Some(Request::DeleteRange(delete)) => mvcc::apply_delete(view, leases, &delete).map(Response::DeleteRange),
        Some(Request::Txn(txn)) => mvcc::plan_txn(view, leases, &txn)
            .and_then(|plan| mvcc::execute_txn(view, leases, &txn, &plan))
            .map(Response::Txn),
        Some(Request::Compaction(compaction)) => compact(view, &compaction).map(Response::Compaction),
        Some(Request::LeaseGrant(grant)) => leases.grant(grant.id, grant.ttl).map(|()| {
            Response::LeaseGrant(LeaseGrantResponse {
                header: Some(header(view)),
                id: grant.id,
                ttl: grant.ttl,
                error: String::new(),
            })
        }),
        Some(Request::LeaseRevoke(revoke)) => revoke_lease(view, leases, revoke.id)
            .map(|()| Response::LeaseRevoke(LeaseRevokeResponse { header: Some(header(view)) })),
        Some(Request::LeaseCheckpoint(checkpoint)) => checkpoint
            .checkpoints
            .iter()
            .try_for_each(|lease| leases.checkpoint(lease.id, lease.remaining_ttl))
            .map(|()| Response::LeaseCheckpoint(LeaseCheckpointResponse { header: Some(header(view)) })),
        Some(Request::MemberAttributes(attributes)) => members.publish(&attributes).map(|()| Response::MemberPublished),
        Some(Request::Alarm(request)) => apply_alarm(view, &request).map(Response::Alarm),
        Some(Request::DefragClaim(claim)) => defrag_claim::apply(view.meta_table(), &claim)
            .map(|(granted, holder)| Response::DefragClaim { granted, holder }),
        None => Err(EtcdError::KeyNotFound.into()),
    };
    view.end()?;
    match result {
        Ok(response) => Ok(Ok(response)),
        Err(StateError::Request(error)) => Ok(Err(error)),
        Err(fatal) => Err(fatal),
    }
}

/// Revokes a lease: every key attached to it is deleted (in key order, in one revision), then the lease.
fn revoke_lease(view: &mut WriteView<'_>, leases: &mut LeaseStore<'_>, id: i64) -> Result<(), StateError> {
    for key in leases.keys(id)? {
        view.delete_range(KeySpan::Single(&key), leases)?;
    }
    leases.remove(id)
}

/// What the active alarms refuse (etcd's capped and corrupt appliers): with NOSPACE, puts and txns with
/// puts; with CORRUPT, every write.
fn refused_by_alarm(alarms: &[AlarmMember], request: Option<&Request>) -> Option<EtcdError> {
    if alarms.is_empty() {
        return None;
    }
    let writes = matches!(
        request,
        Some(
            Request::Put(_)
                | Request::DeleteRange(_)
                | Request::Txn(_)
                | Request::Compaction(_)
                | Request::LeaseGrant(_)
                | Request::LeaseRevoke(_)
        )
    );
    if writes && alarm::is_active(alarms, AlarmType::Corrupt) {
        return Some(EtcdError::Corrupt);
    }
    // A lease grant is checked against the quota when proposed, not here: etcd's capped applier lets it
    // through while the (member's own) file has room, which apply cannot know deterministically.
    let grows = match request {
        Some(Request::Put(_)) => true,
        Some(Request::Txn(txn)) => alarm::txn_cost(txn) > 0,
        _ => false,
    };
    (grows && alarm::is_active(alarms, AlarmType::Nospace)).then_some(EtcdError::NoSpace)
}

fn apply_alarm(view: &mut WriteView<'_>, request: &AlarmRequest) -> Result<AlarmResponse, StateError> {
    let named = AlarmMember { member_id: request.member_id, alarm: request.alarm };
    let alarms = match AlarmAction::try_from(request.action) {
        Ok(AlarmAction::Activate) if request.alarm != AlarmType::None as i32 => {
            vec![alarm::activate(view.meta_table(), named)?]
        }
        Ok(AlarmAction::Deactivate) => alarm::deactivate(view.meta_table(), named)?.into_iter().collect(),
        Ok(AlarmAction::Get) => alarm::active(view.meta_table())?
            .into_iter()
            .filter(|alarm| request.alarm == AlarmType::None as i32 || alarm.alarm == request.alarm)
            .collect(),
        _ => Vec::new(),
    };
    Ok(AlarmResponse { header: Some(header(view)), alarms })
}

fn header(view: &WriteView<'_>) -> ResponseHeader {
    ResponseHeader { revision: view.revision(), ..Default::default() }
}

fn compact(view: &mut WriteView<'_>, request: &CompactionRequest) -> Result<CompactionResponse, StateError> {
    view.compact(request.revision)?;
    Ok(CompactionResponse { header: Some(ResponseHeader { revision: view.revision(), ..Default::default() }) })
}

/// Whether every key of `span` is absent at the current revision (used by tests and checks).
pub fn span_is_empty(reader: &impl Reader, span: KeySpan<'_>) -> Result<bool, StateError> {
    let mut empty = true;
    reader.scan(span, &mut |_, head| {
        empty = head.deleted;
        Ok(empty)
    })?;
    Ok(empty)
}
