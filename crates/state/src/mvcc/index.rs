//! The key index: for every key, its latest change (the head), and one row per retained change.
//!
//! etcd keeps a `keyIndex` per key in memory: generations of revisions. Keel keeps the same facts in the
//! backend, so reads get a consistent snapshot from the backend's read transaction, a restart rebuilds
//! nothing, and memory does not grow with the key count. Two tables:
//! - `key_heads`: key -> its latest revision, and whether that change was a delete. A read at the current
//!   revision needs nothing more.
//! - `key_revisions`: (key, main, sub) -> whether the change was a delete. One row per retained change, so a
//!   put costs the same however long the key's history is, and a read at an older revision is one ordered
//!   lookup: the key's last change at or below it.
//!
//! A generation (etcd's term: from the put that creates a key to the delete that ends it) is not stored as
//! such: each stored `KeyValue` carries its `create_revision` and `version`, and a delete row closes one.

use crate::error::StateError;
use crate::revision::Revision;
use redb::ReadableTable;

/// A key's latest change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub latest: Revision,
    /// The latest change was a delete: the key does not exist now.
    pub deleted: bool,
}

const HEAD_BYTES: usize = 17;

impl Head {
    pub(crate) fn encode(self) -> [u8; HEAD_BYTES] {
        let mut bytes = [0u8; HEAD_BYTES];
        let (main, sub) = self.latest.storage_key();
        bytes[..8].copy_from_slice(&main.to_be_bytes());
        bytes[8..16].copy_from_slice(&sub.to_be_bytes());
        bytes[16] = u8::from(self.deleted);
        bytes
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Head, StateError> {
        let bytes: &[u8; HEAD_BYTES] =
            bytes.try_into().map_err(|_| StateError::Corrupt(format!("a key head of {} bytes", bytes.len())))?;
        let main = u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes"));
        let sub = u64::from_be_bytes(bytes[8..16].try_into().expect("8 bytes"));
        Ok(Head { latest: Revision::new(main as i64, sub as i64), deleted: bytes[16] != 0 })
    }

    /// The change of the key visible at main revision `at`, if the key existed then. `revisions` is the
    /// `key_revisions` table, read only when `at` is older than the head.
    pub(crate) fn visible_at(
        self,
        revisions: &impl ReadableTable<(&'static [u8], u64, u64), u8>,
        key: &[u8],
        at: i64,
    ) -> Result<Option<Revision>, StateError> {
        if self.latest.main <= at {
            return Ok((!self.deleted).then_some(self.latest));
        }
        match last_change_at_or_below(revisions, key, at)? {
            Some((revision, false)) => Ok(Some(revision)),
            _ => Ok(None),
        }
    }
}

/// The key's last retained change at or below main revision `at`, and whether it was a delete.
fn last_change_at_or_below(
    revisions: &impl ReadableTable<(&'static [u8], u64, u64), u8>,
    key: &[u8],
    at: i64,
) -> Result<Option<(Revision, bool)>, StateError> {
    if at < 0 {
        return Ok(None);
    }
    let mut range = revisions.range::<(&[u8], u64, u64)>((key, 0, 0)..=(key, at as u64, u64::MAX))?;
    match range.next_back() {
        Some(row) => {
            let (stored, deleted) = row?;
            let (_, main, sub) = stored.value();
            Ok(Some((Revision::new(main as i64, sub as i64), deleted.value() != 0)))
        }
        None => Ok(None),
    }
}

/// What compacting one key at main revision `at` removes: every change at or below `at` but the last one,
/// and that one too when it was a delete (the key did not exist at `at`). `gone` says the key has no
/// history left, so its head goes as well.
pub(crate) struct Compacted {
    pub removed: Vec<Revision>,
    pub gone: bool,
}

pub(crate) fn compact_key(
    revisions: &impl ReadableTable<(&'static [u8], u64, u64), u8>,
    key: &[u8],
    head: Head,
    at: i64,
) -> Result<Compacted, StateError> {
    let mut removed = Vec::new();
    let mut last_deleted = false;
    for row in revisions.range::<(&[u8], u64, u64)>((key, 0, 0)..=(key, at as u64, u64::MAX))? {
        let (stored, deleted) = row?;
        let (_, main, sub) = stored.value();
        removed.push(Revision::new(main as i64, sub as i64));
        last_deleted = deleted.value() != 0;
    }
    let last = if last_deleted { None } else { removed.pop() };
    let gone = last.is_none() && removed.last().is_some_and(|newest| *newest == head.latest);
    Ok(Compacted { removed, gone })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_round_trips_and_refuses_other_lengths() {
        for head in [
            Head { latest: Revision::new(2, 0), deleted: false },
            Head { latest: Revision::new(i64::MAX, 7), deleted: true },
        ] {
            assert_eq!(Head::decode(&head.encode()).unwrap(), head);
        }
        assert!(Head::decode(&[0u8; 16]).is_err());
    }
}
