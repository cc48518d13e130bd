//! Leases as the state machine keeps them: the lease records and which keys each lease holds.
//!
//! Time lives elsewhere: the leader's lessor decides when a lease expires and proposes its revocation,
//! so every member deletes the same keys at the same revision. Here a lease only exists or not, with the
//! TTL it was granted (and the remaining TTL last checkpointed, so a new leader does not start long leases
//! over from their full TTL).

mod store;

pub use store::LeaseStore;

use crate::error::StateError;
use keel_api::keelpb::LeaseRecord;
use prost::Message;
use redb::ReadableTable;

/// etcd's largest TTL (`MaxLeaseTTL`), in seconds.
pub const MAX_TTL: i64 = 9_000_000_000;

/// Lease ids are stored as their two's-complement bits, so the table orders them like u64.
pub(crate) fn storage_id(id: i64) -> u64 {
    id as u64
}

pub(crate) fn lookup<T: ReadableTable<u64, &'static [u8]>>(
    table: &T,
    id: i64,
) -> Result<Option<LeaseRecord>, StateError> {
    match table.get(storage_id(id))? {
        Some(bytes) => Ok(Some(
            LeaseRecord::decode(bytes.value())
                .map_err(|error| StateError::Corrupt(format!("lease {id:x}: {error}")))?,
        )),
        None => Ok(None),
    }
}

pub(crate) fn all<T: ReadableTable<u64, &'static [u8]>>(table: &T) -> Result<Vec<LeaseRecord>, StateError> {
    let mut records = Vec::with_capacity(table.len()? as usize);
    for item in table.iter()? {
        let (_, bytes) = item?;
        records
            .push(LeaseRecord::decode(bytes.value()).map_err(|error| StateError::Corrupt(format!("lease: {error}")))?);
    }
    Ok(records)
}

pub(crate) fn keys<T: ReadableTable<(u64, &'static [u8]), ()>>(table: &T, id: i64) -> Result<Vec<Vec<u8>>, StateError> {
    let start = (storage_id(id), &[][..]);
    let mut keys = Vec::new();
    for item in table.range(start..)? {
        let (key, _) = item?;
        let (owner, user_key) = key.value();
        if owner != storage_id(id) {
            break;
        }
        keys.push(user_key.to_vec());
    }
    Ok(keys)
}

/// A change to the set of leases, for the lessor that keeps their clocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseChange {
    Granted { id: i64, ttl: i64 },
    Revoked { id: i64 },
    Checkpointed { id: i64, remaining_ttl: i64 },
}

pub(crate) fn encode(record: &LeaseRecord) -> Vec<u8> {
    record.encode_to_vec()
}
