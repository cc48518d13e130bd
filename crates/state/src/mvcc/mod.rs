//! Multi-version storage with etcd's semantics: one store-wide revision counter, per-key generations,
//! tombstones on delete, reads at any retained revision, and compaction.
//!
//! [`ReadView`] reads one consistent backend snapshot; [`WriteView`] is the apply step's view inside one
//! backend write transaction, and sees its own changes. Both implement [`Reader`], so range, compare and
//! read-only transactions are written once. Leases are another store's: the writes reach them through
//! [`LeaseKeys`] (attaching keys) and [`LeaseLookup`] (does a lease exist).

mod compact;
pub(crate) mod index;
mod range;
mod txn;
mod view;

pub use range::range;
pub use txn::{TxnPlan, execute_txn, is_read_only, plan_txn, read_only_txn};
pub(crate) use txn::{apply_delete, apply_put, check_put};
pub use view::{ReadView, WriteView};

use crate::error::StateError;
use crate::revision::Revision;
use index::Head;
use keel_api::mvccpb::KeyValue;

/// The keys a request names, from etcd's `key` and `range_end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySpan<'a> {
    /// `range_end` empty: the key alone.
    Single(&'a [u8]),
    /// `[start, end)`; `end == None` (range_end `"\0"`) means every key from `start` on.
    Range { start: &'a [u8], end: Option<&'a [u8]> },
}

impl<'a> KeySpan<'a> {
    pub fn new(key: &'a [u8], range_end: &'a [u8]) -> Self {
        match range_end {
            [] => KeySpan::Single(key),
            [0] => KeySpan::Range { start: key, end: None },
            end => KeySpan::Range { start: key, end: Some(end) },
        }
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        match *self {
            KeySpan::Single(single) => single == key,
            KeySpan::Range { start, end } => key >= start && end.is_none_or(|end| key < end),
        }
    }
}

/// Read access shared by the read and write views.
pub trait Reader {
    /// The current revision as this view sees it (a write view counts its own pending changes).
    fn revision(&self) -> i64;
    fn compact_revision(&self) -> i64;
    /// The key's latest change, if the index has the key.
    fn head(&self, key: &[u8]) -> Result<Option<Head>, StateError>;
    /// The revision of the key's value at main revision `at` (None: the key did not exist then).
    fn visible(&self, key: &[u8], head: Head, at: i64) -> Result<Option<Revision>, StateError>;
    /// Calls `visit` for every indexed key in the span, in key order, until it returns false.
    fn scan(
        &self,
        span: KeySpan<'_>,
        visit: &mut dyn FnMut(&[u8], Head) -> Result<bool, StateError>,
    ) -> Result<(), StateError>;
    /// The stored change at `revision` (a tombstone has `create_revision == 0`).
    fn change_at(&self, revision: Revision) -> Result<KeyValue, StateError>;

    /// The key's value as of main revision `at`.
    fn get(&self, key: &[u8], at: i64) -> Result<Option<KeyValue>, StateError> {
        let Some(head) = self.head(key)? else { return Ok(None) };
        match self.visible(key, head, at)? {
            Some(revision) => Ok(Some(self.change_at(revision)?)),
            None => Ok(None),
        }
    }

    /// Checks `at` (0 = current) against the retained history and returns the revision to read at.
    fn resolve_revision(&self, at: i64) -> Result<i64, StateError> {
        let current = self.revision();
        if at <= 0 {
            return Ok(current);
        }
        if at > current {
            return Err(keel_api::EtcdError::FutureRevision.into());
        }
        if at < self.compact_revision() {
            return Err(keel_api::EtcdError::Compacted.into());
        }
        Ok(at)
    }
}

/// Whether a lease exists: a put naming a lease that does not is refused.
pub trait LeaseLookup {
    fn lease_exists(&self, id: i64) -> Result<bool, StateError>;
}

/// What the key-value writes need of the lease store: moving a key between leases (0: none) as a put
/// or delete changes the lease it is attached to.
pub trait LeaseKeys: LeaseLookup {
    fn attach(&mut self, key: &[u8], previous: i64, lease: i64) -> Result<(), StateError>;
}

/// How a write changes the store, in apply order; the watch hub will be fed from these.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Put(KeyValue),
    Delete(KeyValue),
}
