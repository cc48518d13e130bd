//! Alarms (etcd's NOSPACE and CORRUPT): raised and cleared through the log, so every member agrees, and
//! kept in the backend's meta table. While NOSPACE is active, requests that would grow the store are
//! refused when applied (etcd's "capped" applier); while CORRUPT is active, every write is.
//!
//! The quota's cost estimates are etcd's own (`server/etcdserver/quota.go`): what a request would add.

use crate::error::StateError;
use keel_api::etcdserverpb::{AlarmMember, AlarmResponse, AlarmType, PutRequest, TxnRequest, request_op};
use prost::Message;
use redb::{ReadableTable, Table};

/// The meta key holding the active alarms (an encoded `AlarmResponse` without header).
pub const META_KEY: &str = "alarms";

/// etcd's estimate of a key's metadata cost.
const KV_OVERHEAD: u64 = 256;
/// etcd's estimate of a lease's cost.
pub const LEASE_COST: u64 = 64;

pub fn decode(bytes: Option<&[u8]>) -> Vec<AlarmMember> {
    bytes.and_then(|bytes| AlarmResponse::decode(bytes).ok()).map(|list| list.alarms).unwrap_or_default()
}

pub fn encode(alarms: &[AlarmMember]) -> Vec<u8> {
    AlarmResponse { header: None, alarms: alarms.to_vec() }.encode_to_vec()
}

/// The active alarms, as the meta table keeps them.
pub(crate) fn active(
    meta_table: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<Vec<AlarmMember>, StateError> {
    Ok(decode(meta_table.get(META_KEY)?.as_ref().map(|value| value.value())))
}

/// Raises an alarm (a no-op if it is already active); returns it.
pub(crate) fn activate(
    meta_table: &mut Table<'_, &str, &[u8]>,
    raised: AlarmMember,
) -> Result<AlarmMember, StateError> {
    let mut alarms = active(meta_table)?;
    if !alarms.contains(&raised) {
        alarms.push(raised);
        meta_table.insert(META_KEY, encode(&alarms).as_slice())?;
    }
    Ok(raised)
}

/// Clears an alarm; returns it if it was active.
pub(crate) fn deactivate(
    meta_table: &mut Table<'_, &str, &[u8]>,
    cleared: AlarmMember,
) -> Result<Option<AlarmMember>, StateError> {
    let mut alarms = active(meta_table)?;
    let before = alarms.len();
    alarms.retain(|alarm| *alarm != cleared);
    if alarms.len() == before {
        return Ok(None);
    }
    meta_table.insert(META_KEY, encode(&alarms).as_slice())?;
    Ok(Some(cleared))
}

pub fn is_active(alarms: &[AlarmMember], kind: AlarmType) -> bool {
    alarms.iter().any(|alarm| alarm.alarm == kind as i32)
}

/// What a put would add to the store.
pub fn put_cost(put: &PutRequest) -> u64 {
    KV_OVERHEAD + put.key.len() as u64 + put.value.len() as u64
}

/// What a txn would add: its costlier branch's puts (as etcd 3.4 counts: nested txns cost nothing).
pub fn txn_cost(txn: &TxnRequest) -> u64 {
    let branch = |ops: &[keel_api::etcdserverpb::RequestOp]| -> u64 {
        ops.iter()
            .map(|op| match &op.request {
                Some(request_op::Request::RequestPut(put)) => put_cost(put),
                _ => 0,
            })
            .sum()
    };
    branch(&txn.success).max(branch(&txn.failure))
}

/// etcd's text for an alarm, as `Status.errors` and `etcdctl endpoint status` show it.
pub fn describe(alarm: &AlarmMember) -> String {
    let kind = AlarmType::try_from(alarm.alarm).map(|kind| kind.as_str_name()).unwrap_or("UNKNOWN");
    format!("memberID:{} alarm:{kind} ", alarm.member_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_api::etcdserverpb::{DeleteRangeRequest, RequestOp};

    #[test]
    fn a_txn_costs_its_costlier_branch_of_puts() {
        let put = |value: &str| RequestOp {
            request: Some(request_op::Request::RequestPut(PutRequest {
                key: b"k".to_vec(),
                value: value.into(),
                ..Default::default()
            })),
        };
        let delete =
            RequestOp { request: Some(request_op::Request::RequestDeleteRange(DeleteRangeRequest::default())) };
        let txn = TxnRequest { compare: vec![], success: vec![put("abc"), delete.clone()], failure: vec![put("a")] };
        assert_eq!(txn_cost(&txn), 256 + 1 + 3);
        let deletes_only = TxnRequest { compare: vec![], success: vec![delete], failure: vec![] };
        assert_eq!(txn_cost(&deletes_only), 0);
    }

    #[test]
    fn alarms_survive_their_encoding() {
        let alarms = vec![AlarmMember { member_id: 7, alarm: AlarmType::Nospace as i32 }];
        assert_eq!(decode(Some(&encode(&alarms))), alarms);
        assert!(is_active(&alarms, AlarmType::Nospace));
        assert!(!is_active(&alarms, AlarmType::Corrupt));
        assert_eq!(describe(&alarms[0]), "memberID:7 alarm:NOSPACE ");
    }
}
