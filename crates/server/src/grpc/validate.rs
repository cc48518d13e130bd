//! etcd's request checks, done before a request is proposed (etcd's `v3rpc/key.go`).

use keel_api::EtcdError;
use keel_api::etcdserverpb::request_op::Request;
use keel_api::etcdserverpb::{DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest};
use std::collections::HashSet;

pub fn range(request: &RangeRequest) -> Result<(), EtcdError> {
    if request.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    Ok(())
}

pub fn put(request: &PutRequest) -> Result<(), EtcdError> {
    if request.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    if request.ignore_value && !request.value.is_empty() {
        return Err(EtcdError::ValueProvided);
    }
    if request.ignore_lease && request.lease != 0 {
        return Err(EtcdError::LeaseProvided);
    }
    Ok(())
}

pub fn delete_range(request: &DeleteRangeRequest) -> Result<(), EtcdError> {
    if request.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    Ok(())
}

/// etcd's `checkTxnRequest` then `checkIntervals` on each top-level branch.
pub fn txn(request: &TxnRequest, max_ops: usize) -> Result<(), EtcdError> {
    txn_ops(request, max_ops)?;
    intervals(&request.success)?;
    intervals(&request.failure)?;
    Ok(())
}

fn txn_ops(request: &TxnRequest, max_ops: usize) -> Result<(), EtcdError> {
    let widest = request.compare.len().max(request.success.len()).max(request.failure.len());
    if widest > max_ops {
        return Err(EtcdError::TooManyOps);
    }
    if request.compare.iter().any(|compare| compare.key.is_empty()) {
        return Err(EtcdError::EmptyKey);
    }
    for op in request.success.iter().chain(&request.failure) {
        request_op(op, max_ops - widest)?;
    }
    Ok(())
}

fn request_op(op: &RequestOp, max_ops: usize) -> Result<(), EtcdError> {
    match &op.request {
        Some(Request::RequestRange(request)) => range(request),
        Some(Request::RequestPut(request)) => put(request),
        Some(Request::RequestDeleteRange(request)) => delete_range(request),
        Some(Request::RequestTxn(request)) => txn_ops(request, max_ops),
        None => Err(EtcdError::KeyNotFound),
    }
}

/// A delete's keys: a point, or `[start, end)`.
#[derive(Clone)]
struct Deleted {
    start: Vec<u8>,
    end: Option<Vec<u8>>,
}

impl Deleted {
    fn covers(&self, key: &[u8]) -> bool {
        match &self.end {
            None => self.start == key,
            Some(end) => key >= self.start.as_slice() && key < end.as_slice(),
        }
    }
}

/// etcd's `checkIntervals`: no key may be put twice, or put and deleted, on one path through a txn.
/// Returns the keys put and the ranges deleted at this level and below.
fn intervals(ops: &[RequestOp]) -> Result<(HashSet<Vec<u8>>, Vec<Deleted>), EtcdError> {
    let mut deletes: Vec<Deleted> = ops
        .iter()
        .filter_map(|op| match &op.request {
            Some(Request::RequestDeleteRange(delete)) => Some(Deleted {
                start: delete.key.clone(),
                end: (!delete.range_end.is_empty()).then(|| delete.range_end.clone()),
            }),
            _ => None,
        })
        .collect();
    let mut puts: HashSet<Vec<u8>> = HashSet::new();
    let conflicts = |key: &[u8], deletes: &[Deleted]| deletes.iter().any(|deleted| deleted.covers(key));
    for op in ops {
        let Some(Request::RequestTxn(nested)) = &op.request else { continue };
        let (puts_then, deletes_then) = intervals(&nested.success)?;
        let (puts_else, deletes_else) = intervals(&nested.failure)?;
        for key in &puts_then {
            if puts.contains(key) || conflicts(key, &deletes) {
                return Err(EtcdError::DuplicateKey);
            }
        }
        puts.extend(puts_then.iter().cloned());
        for key in puts_else {
            // The same key in both branches of one nested txn is fine: only one branch runs.
            if (puts.contains(&key) && !puts_then.contains(&key)) || conflicts(&key, &deletes) {
                return Err(EtcdError::DuplicateKey);
            }
            puts.insert(key);
        }
        deletes.extend(deletes_then);
        deletes.extend(deletes_else);
    }
    for op in ops {
        let Some(Request::RequestPut(put)) = &op.request else { continue };
        if puts.contains(&put.key) || conflicts(&put.key, &deletes) {
            return Err(EtcdError::DuplicateKey);
        }
        puts.insert(put.key.clone());
    }
    Ok((puts, deletes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put_op(key: &str) -> RequestOp {
        RequestOp { request: Some(Request::RequestPut(PutRequest { key: key.into(), ..Default::default() })) }
    }
    fn delete_op(key: &str, end: &str) -> RequestOp {
        let request = DeleteRangeRequest { key: key.into(), range_end: end.into(), ..Default::default() };
        RequestOp { request: Some(Request::RequestDeleteRange(request)) }
    }
    fn nested(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> RequestOp {
        RequestOp { request: Some(Request::RequestTxn(TxnRequest { compare: vec![], success, failure })) }
    }
    fn check(success: Vec<RequestOp>) -> Result<(), EtcdError> {
        txn(&TxnRequest { compare: vec![], success, failure: vec![] }, 128)
    }

    #[test]
    fn duplicate_puts_and_put_delete_overlaps_are_refused() {
        assert_eq!(check(vec![put_op("a"), put_op("a")]), Err(EtcdError::DuplicateKey));
        assert_eq!(check(vec![put_op("b"), delete_op("a", "c")]), Err(EtcdError::DuplicateKey));
        assert_eq!(check(vec![put_op("a"), nested(vec![put_op("a")], vec![])]), Err(EtcdError::DuplicateKey));
        assert_eq!(check(vec![delete_op("a", ""), nested(vec![], vec![put_op("a")])]), Err(EtcdError::DuplicateKey));
    }

    #[test]
    fn disjoint_and_exclusive_branches_are_allowed() {
        assert_eq!(check(vec![put_op("a"), put_op("b"), delete_op("c", "d"), delete_op("c", "")]), Ok(()));
        assert_eq!(check(vec![nested(vec![put_op("a")], vec![put_op("a")])]), Ok(()));
        let both_branches = TxnRequest { compare: vec![], success: vec![put_op("a")], failure: vec![put_op("a")] };
        assert_eq!(txn(&both_branches, 128), Ok(()));
    }

    #[test]
    fn too_many_ops_and_empty_ops() {
        let many =
            TxnRequest { compare: vec![], success: (0..3).map(|i| put_op(&i.to_string())).collect(), failure: vec![] };
        assert_eq!(txn(&many, 2), Err(EtcdError::TooManyOps));
        assert_eq!(check(vec![RequestOp { request: None }]), Err(EtcdError::KeyNotFound));
        assert_eq!(check(vec![put_op("")]), Err(EtcdError::EmptyKey));
    }
}
