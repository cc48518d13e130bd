//! Transactions: compares, then the success or failure branch, as etcd applies them.
//!
//! Like etcd, every compare on the chosen path (nested transactions included) is evaluated against the
//! store as it was before the transaction, and the ops on that path are checked before any of them runs,
//! so a transaction either applies whole or is refused with the store unchanged.

use super::{KeySpan, LeaseKeys, LeaseLookup, Reader, WriteView};
use crate::error::StateError;
use keel_api::EtcdError;
use keel_api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use keel_api::etcdserverpb::request_op::Request;
use keel_api::etcdserverpb::response_op::Response;
use keel_api::etcdserverpb::{
    Compare, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RequestOp, ResponseHeader, ResponseOp,
    TxnRequest, TxnResponse,
};
use keel_api::mvccpb::KeyValue;

/// The outcome of every compare on the chosen path, depth first: the root's first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnPlan {
    branches: Vec<bool>,
}

/// Evaluates the compares and checks the ops that will run. Fails without side effects.
pub fn plan_txn(reader: &impl Reader, leases: &impl LeaseLookup, request: &TxnRequest) -> Result<TxnPlan, StateError> {
    let mut branches = Vec::new();
    plan_level(reader, leases, request, &mut branches)?;
    Ok(TxnPlan { branches })
}

fn plan_level(
    reader: &impl Reader,
    leases: &impl LeaseLookup,
    request: &TxnRequest,
    branches: &mut Vec<bool>,
) -> Result<(), StateError> {
    let mut succeeded = true;
    for compare in &request.compare {
        if !evaluate(reader, compare)? {
            succeeded = false;
            break;
        }
    }
    branches.push(succeeded);
    let ops = if succeeded { &request.success } else { &request.failure };
    for op in ops {
        match &op.request {
            Some(Request::RequestPut(put)) => check_put(reader, leases, put)?,
            Some(Request::RequestRange(range)) if range.revision != 0 => {
                if range.revision > reader.revision() {
                    return Err(EtcdError::FutureRevision.into());
                }
                if range.revision < reader.compact_revision() {
                    return Err(EtcdError::Compacted.into());
                }
            }
            Some(Request::RequestTxn(nested)) => plan_level(reader, leases, nested, branches)?,
            _ => {}
        }
    }
    Ok(())
}

/// The checks a put must pass against the store before it is applied.
pub(crate) fn check_put(reader: &impl Reader, leases: &impl LeaseLookup, put: &PutRequest) -> Result<(), StateError> {
    if (put.ignore_value || put.ignore_lease) && reader.get(&put.key, reader.revision())?.is_none() {
        return Err(EtcdError::KeyNotFound.into());
    }
    if put.lease != 0 && !leases.lease_exists(put.lease)? {
        return Err(EtcdError::LeaseNotFound.into());
    }
    Ok(())
}

fn evaluate(reader: &impl Reader, compare: &Compare) -> Result<bool, StateError> {
    let target = CompareTarget::try_from(compare.target).unwrap_or(CompareTarget::Value);
    let mut kvs = Vec::new();
    let at = reader.revision();
    reader.scan(KeySpan::new(&compare.key, &compare.range_end), &mut |key, head| {
        if let Some(revision) = reader.visible(key, head, at)? {
            kvs.push(revision);
        }
        Ok(true)
    })?;
    if kvs.is_empty() {
        // A missing key has no value to compare: value compares fail; others compare against zero.
        return Ok(target != CompareTarget::Value && holds(compare, &KeyValue::default()));
    }
    for revision in kvs {
        if !holds(compare, &reader.change_at(revision)?) {
            return Ok(false);
        }
    }
    Ok(true)
}

fn holds(compare: &Compare, kv: &KeyValue) -> bool {
    let target = CompareTarget::try_from(compare.target).unwrap_or(CompareTarget::Value);
    let ordering = match (target, &compare.target_union) {
        (CompareTarget::Value, Some(TargetUnion::Value(value))) => kv.value.as_slice().cmp(value.as_slice()),
        (CompareTarget::Value, _) => kv.value.as_slice().cmp(&[]),
        (CompareTarget::Version, Some(TargetUnion::Version(version))) => kv.version.cmp(version),
        (CompareTarget::Create, Some(TargetUnion::CreateRevision(revision))) => kv.create_revision.cmp(revision),
        (CompareTarget::Mod, Some(TargetUnion::ModRevision(revision))) => kv.mod_revision.cmp(revision),
        (CompareTarget::Lease, Some(TargetUnion::Lease(lease))) => kv.lease.cmp(lease),
        (CompareTarget::Version, _) => kv.version.cmp(&0),
        (CompareTarget::Create, _) => kv.create_revision.cmp(&0),
        (CompareTarget::Mod, _) => kv.mod_revision.cmp(&0),
        (CompareTarget::Lease, _) => kv.lease.cmp(&0),
    };
    match CompareResult::try_from(compare.result).unwrap_or(CompareResult::Equal) {
        CompareResult::Equal => ordering.is_eq(),
        CompareResult::NotEqual => ordering.is_ne(),
        CompareResult::Greater => ordering.is_gt(),
        CompareResult::Less => ordering.is_lt(),
    }
}

/// Runs the planned branch in `view` (inside one store write transaction).
pub fn execute_txn(
    view: &mut WriteView<'_>,
    leases: &mut dyn LeaseKeys,
    request: &TxnRequest,
    plan: &TxnPlan,
) -> Result<TxnResponse, StateError> {
    let mut branches = plan.branches.iter().copied();
    let mut response = execute_level(view, leases, request, &mut branches)?;
    response.header = Some(header(view.revision()));
    Ok(response)
}

fn execute_level(
    view: &mut WriteView<'_>,
    leases: &mut dyn LeaseKeys,
    request: &TxnRequest,
    branches: &mut impl Iterator<Item = bool>,
) -> Result<TxnResponse, StateError> {
    let succeeded = branches.next().unwrap_or(false);
    let ops = if succeeded { &request.success } else { &request.failure };
    let mut responses = Vec::with_capacity(ops.len());
    for op in ops {
        responses.push(execute_op(view, leases, op, branches)?);
    }
    // Only the outermost response carries a revision; etcd leaves nested txn headers zeroed.
    Ok(TxnResponse { header: Some(ResponseHeader::default()), succeeded, responses })
}

fn execute_op(
    view: &mut WriteView<'_>,
    leases: &mut dyn LeaseKeys,
    op: &RequestOp,
    branches: &mut impl Iterator<Item = bool>,
) -> Result<ResponseOp, StateError> {
    let response = match &op.request {
        Some(Request::RequestRange(range)) => Response::ResponseRange(super::range(view, range)?),
        Some(Request::RequestPut(put)) => Response::ResponsePut(apply_put(view, leases, put)?),
        Some(Request::RequestDeleteRange(delete)) => Response::ResponseDeleteRange(apply_delete(view, leases, delete)?),
        Some(Request::RequestTxn(nested)) => Response::ResponseTxn(execute_level(view, leases, nested, branches)?),
        None => return Err(EtcdError::KeyNotFound.into()),
    };
    Ok(ResponseOp { response: Some(response) })
}

/// A put, already checked with [`check_put`].
pub(crate) fn apply_put(
    view: &mut WriteView<'_>,
    leases: &mut dyn LeaseKeys,
    put: &PutRequest,
) -> Result<PutResponse, StateError> {
    let existing = if put.ignore_value || put.ignore_lease { view.get(&put.key, view.revision())? } else { None };
    let value = match (&existing, put.ignore_value) {
        (Some(existing), true) => existing.value.clone(),
        _ => put.value.clone(),
    };
    let lease = match (&existing, put.ignore_lease) {
        (Some(existing), true) => existing.lease,
        _ => put.lease,
    };
    let previous = view.put(&put.key, value, lease, leases)?;
    Ok(PutResponse { header: Some(header(view.revision())), prev_kv: previous.filter(|_| put.prev_kv) })
}

pub(crate) fn apply_delete(
    view: &mut WriteView<'_>,
    leases: &mut dyn LeaseKeys,
    delete: &DeleteRangeRequest,
) -> Result<DeleteRangeResponse, StateError> {
    let deleted = view.delete_range(KeySpan::new(&delete.key, &delete.range_end), leases)?;
    Ok(DeleteRangeResponse {
        header: Some(header(view.revision())),
        deleted: deleted.len() as i64,
        prev_kvs: if delete.prev_kv { deleted } else { Vec::new() },
    })
}

/// A read-only transaction, served from a read view without going through the log.
pub fn read_only_txn(reader: &(impl Reader + LeaseLookup), request: &TxnRequest) -> Result<TxnResponse, StateError> {
    let plan = plan_txn(reader, reader, request)?;
    let mut branches = plan.branches.iter().copied();
    let mut response = read_only_level(reader, request, &mut branches)?;
    response.header = Some(header(reader.revision()));
    Ok(response)
}

fn read_only_level(
    reader: &impl Reader,
    request: &TxnRequest,
    branches: &mut impl Iterator<Item = bool>,
) -> Result<TxnResponse, StateError> {
    let succeeded = branches.next().unwrap_or(false);
    let ops = if succeeded { &request.success } else { &request.failure };
    let mut responses = Vec::with_capacity(ops.len());
    for op in ops {
        let response = match &op.request {
            Some(Request::RequestRange(range)) => Response::ResponseRange(super::range(reader, range)?),
            Some(Request::RequestTxn(nested)) => Response::ResponseTxn(read_only_level(reader, nested, branches)?),
            _ => return Err(StateError::Corrupt("a write in a read-only transaction".into())),
        };
        responses.push(ResponseOp { response: Some(response) });
    }
    Ok(TxnResponse { header: Some(ResponseHeader::default()), succeeded, responses })
}

/// Whether the transaction cannot write, whichever branches it takes.
pub fn is_read_only(request: &TxnRequest) -> bool {
    request.success.iter().chain(&request.failure).all(|op| match &op.request {
        Some(Request::RequestRange(_)) => true,
        Some(Request::RequestTxn(nested)) => is_read_only(nested),
        _ => false,
    })
}

fn header(revision: i64) -> ResponseHeader {
    ResponseHeader { revision, ..Default::default() }
}
