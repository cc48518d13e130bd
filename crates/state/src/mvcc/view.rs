//! The two views of the store: a read snapshot (of every table, for the services' reads) and the apply
//! step's write view, which keeps only the key-value store: revisions, put, delete and compaction. Leases,
//! members, alarms and the defrag claim have stores of their own that `apply` composes with it.

use super::index::{self, Head};
use super::{Change, KeySpan, LeaseKeys, LeaseLookup, Reader};
use crate::alarm;
use crate::backend::{self, Backend, KEY_HEADS, KEY_REVISIONS, KV, LEASE_KEYS, LEASES, MEMBERS, META, meta};
use crate::error::StateError;
use crate::lease;
use crate::revision::Revision;
use keel_api::EtcdError;
use keel_api::etcdserverpb::AlarmMember;
use keel_api::keelpb::{LeaseRecord, MemberAttributes};
use keel_api::mvccpb::KeyValue;
use prost::Message;
use redb::{ReadOnlyTable, ReadableTable, Table, WriteTransaction};
use std::ops::Bound;

/// The compact revision of a store never compacted (etcd's -1: even revision 0 may be compacted once).
const NEVER_COMPACTED: i64 = -1;

/// The tables every read needs (the key index and the changes), over either transaction kind.
struct Tables<H, R, K> {
    heads: H,
    revisions: R,
    kv: K,
}

impl<H, R, K> Tables<H, R, K>
where
    H: ReadableTable<&'static [u8], &'static [u8]>,
    R: ReadableTable<(&'static [u8], u64, u64), u8>,
    K: ReadableTable<(u64, u64), &'static [u8]>,
{
    fn head(&self, key: &[u8]) -> Result<Option<Head>, StateError> {
        match self.heads.get(key)? {
            Some(record) => Ok(Some(Head::decode(record.value())?)),
            None => Ok(None),
        }
    }

    fn visible(&self, key: &[u8], head: Head, at: i64) -> Result<Option<Revision>, StateError> {
        head.visible_at(&self.revisions, key, at)
    }

    fn scan(
        &self,
        span: KeySpan<'_>,
        visit: &mut dyn FnMut(&[u8], Head) -> Result<bool, StateError>,
    ) -> Result<(), StateError> {
        let (start, end) = match span {
            KeySpan::Single(key) => (Bound::Included(key), Bound::Included(key)),
            KeySpan::Range { start, end: None } => (Bound::Included(start), Bound::Unbounded),
            KeySpan::Range { start, end: Some(end) } => {
                if end <= start {
                    return Ok(());
                }
                (Bound::Included(start), Bound::Excluded(end))
            }
        };
        for item in self.heads.range::<&[u8]>((start, end))? {
            let (key, record) = item?;
            if !visit(key.value(), Head::decode(record.value())?)? {
                break;
            }
        }
        Ok(())
    }

    fn change_at(&self, revision: Revision) -> Result<KeyValue, StateError> {
        let record = self
            .kv
            .get(revision.storage_key())?
            .ok_or_else(|| StateError::Corrupt(format!("indexed revision {revision:?} is missing")))?;
        KeyValue::decode(record.value()).map_err(|error| StateError::Corrupt(format!("revision {revision:?}: {error}")))
    }
}

/// A consistent snapshot of the store, as of the last backend commit when it was opened.
pub struct ReadView {
    tables: Tables<
        ReadOnlyTable<&'static [u8], &'static [u8]>,
        ReadOnlyTable<(&'static [u8], u64, u64), u8>,
        ReadOnlyTable<(u64, u64), &'static [u8]>,
    >,
    leases: ReadOnlyTable<u64, &'static [u8]>,
    lease_keys: ReadOnlyTable<(u64, &'static [u8]), ()>,
    members: ReadOnlyTable<u64, &'static [u8]>,
    meta: ReadOnlyTable<&'static str, &'static [u8]>,
    revision: i64,
    compact_revision: i64,
    /// Keeps the database these tables read open (the backend may switch files meanwhile).
    _transaction: backend::ReadTransaction,
}

impl ReadView {
    pub fn open(backend: &Backend) -> Result<Self, StateError> {
        let transaction = backend.begin_read()?;
        let meta_table = transaction.open_table(META)?;
        Ok(ReadView {
            revision: backend::read_u64(&meta_table, meta::REVISION)? as i64,
            compact_revision: backend::read_i64_or(&meta_table, meta::COMPACT_REVISION, NEVER_COMPACTED)?,
            tables: Tables {
                heads: transaction.open_table(KEY_HEADS)?,
                revisions: transaction.open_table(KEY_REVISIONS)?,
                kv: transaction.open_table(KV)?,
            },
            leases: transaction.open_table(LEASES)?,
            lease_keys: transaction.open_table(LEASE_KEYS)?,
            members: transaction.open_table(MEMBERS)?,
            meta: meta_table,
            _transaction: transaction,
        })
    }

    /// The active alarms.
    pub fn alarms(&self) -> Result<Vec<AlarmMember>, StateError> {
        alarm::active(&self.meta)
    }

    /// A CRC-32 of every stored revision up to `revision` (0: the current one), as etcd's HashKV: members
    /// that applied the same log agree on it when their compact revisions agree. Returns the hash and the
    /// revision it covers.
    pub fn hash_kv(&self, revision: i64) -> Result<(u32, i64), StateError> {
        let revision = if revision == 0 { self.revision } else { revision };
        if revision > self.revision {
            return Err(EtcdError::FutureRevision.into());
        }
        if revision < self.compact_revision {
            return Err(EtcdError::Compacted.into());
        }
        let mut hasher = crc32fast::Hasher::new();
        for item in self.tables.kv.range(..=(revision as u64, u64::MAX))? {
            let (key, value) = item?;
            let (main, sub) = key.value();
            hasher.update(&main.to_be_bytes());
            hasher.update(&sub.to_be_bytes());
            hasher.update(value.value());
        }
        Ok((hasher.finalize(), revision))
    }

    /// Keys with a current value (etcd's `etcd_debugging_mvcc_keys_total`), kept up to date by the writes.
    pub fn key_count(&self) -> Result<u64, StateError> {
        Ok(live_keys(&self.meta, &self.tables)?.0)
    }

    /// What every member published about itself.
    pub fn member_attributes(&self) -> Result<Vec<MemberAttributes>, StateError> {
        crate::member::all(&self.members)
    }

    /// A lease and the keys attached to it.
    pub fn lease(&self, id: i64) -> Result<Option<(LeaseRecord, Vec<Vec<u8>>)>, StateError> {
        match lease::lookup(&self.leases, id)? {
            Some(record) => Ok(Some((record, lease::keys(&self.lease_keys, id)?))),
            None => Ok(None),
        }
    }

    /// Every lease.
    pub fn leases(&self) -> Result<Vec<LeaseRecord>, StateError> {
        lease::all(&self.leases)
    }
}

impl ReadView {
    /// Every change with a main revision in `from..=to`, in revision order, at most `limit` revisions'
    /// worth (a revision's changes are never split). Tombstones come back as `Change::Delete`.
    pub fn history(&self, from: i64, to: i64, limit: usize) -> Result<Vec<Change>, StateError> {
        let mut changes = Vec::new();
        let mut revisions = 0;
        let mut last_main = None;
        let start = Revision::new(from.max(0), 0).storage_key();
        let end = Revision::new(to.max(0), i64::MAX).storage_key();
        for item in self.tables.kv.range(start..=end)? {
            let (key, record) = item?;
            let (main, _) = key.value();
            if last_main != Some(main) {
                if revisions == limit {
                    break;
                }
                revisions += 1;
                last_main = Some(main);
            }
            let kv = KeyValue::decode(record.value())
                .map_err(|error| StateError::Corrupt(format!("revision {main}: {error}")))?;
            changes.push(if kv.create_revision == 0 { Change::Delete(kv) } else { Change::Put(kv) });
        }
        Ok(changes)
    }
}

impl LeaseLookup for ReadView {
    fn lease_exists(&self, id: i64) -> Result<bool, StateError> {
        Ok(lease::lookup(&self.leases, id)?.is_some())
    }
}

impl Reader for ReadView {
    fn revision(&self) -> i64 {
        self.revision
    }
    fn compact_revision(&self) -> i64 {
        self.compact_revision
    }
    fn head(&self, key: &[u8]) -> Result<Option<Head>, StateError> {
        self.tables.head(key)
    }
    fn visible(&self, key: &[u8], head: Head, at: i64) -> Result<Option<Revision>, StateError> {
        self.tables.visible(key, head, at)
    }
    fn scan(
        &self,
        span: KeySpan<'_>,
        visit: &mut dyn FnMut(&[u8], Head) -> Result<bool, StateError>,
    ) -> Result<(), StateError> {
        self.tables.scan(span, visit)
    }
    fn change_at(&self, revision: Revision) -> Result<KeyValue, StateError> {
        self.tables.change_at(revision)
    }
}

/// The keys with a current value, and whether that count is stored: files written before the count
/// existed are counted by a scan of the index.
fn live_keys<H, R, K>(
    meta_table: &impl ReadableTable<&'static str, &'static [u8]>,
    tables: &Tables<H, R, K>,
) -> Result<(u64, Option<u64>), StateError>
where
    H: ReadableTable<&'static [u8], &'static [u8]>,
    R: ReadableTable<(&'static [u8], u64, u64), u8>,
    K: ReadableTable<(u64, u64), &'static [u8]>,
{
    if meta_table.get(meta::LIVE_KEYS)?.is_some() {
        let stored = backend::read_u64(meta_table, meta::LIVE_KEYS)?;
        return Ok((stored, Some(stored)));
    }
    let mut live = 0;
    tables.scan(KeySpan::Range { start: &[], end: None }, &mut |_, head| {
        live += u64::from(!head.deleted);
        Ok(true)
    })?;
    Ok((live, None))
}

/// The apply step's view: changes go into one backend write transaction. Changes made between
/// [`WriteView::begin`] and [`WriteView::end`] share one main revision.
pub struct WriteView<'t> {
    tables: Tables<
        Table<'t, &'static [u8], &'static [u8]>,
        Table<'t, (&'static [u8], u64, u64), u8>,
        Table<'t, (u64, u64), &'static [u8]>,
    >,
    pub(super) meta: Table<'t, &'static str, &'static [u8]>,
    /// The last committed main revision.
    committed: i64,
    /// Sub revision of the next change in the open transaction; 0 means nothing changed yet.
    next_sub: i64,
    pub(super) compact_revision: i64,
    changes: Vec<Change>,
    /// Keys with a current value, as of the changes made so far, and as stored (see `store_live_keys`).
    live_keys: u64,
    live_keys_stored: Option<u64>,
}

impl<'t> WriteView<'t> {
    pub fn open(transaction: &'t WriteTransaction) -> Result<Self, StateError> {
        let meta_table = transaction.open_table(META)?;
        let tables = Tables {
            heads: transaction.open_table(KEY_HEADS)?,
            revisions: transaction.open_table(KEY_REVISIONS)?,
            kv: transaction.open_table(KV)?,
        };
        let (live_keys, live_keys_stored) = live_keys(&meta_table, &tables)?;
        Ok(WriteView {
            committed: backend::read_u64(&meta_table, meta::REVISION)? as i64,
            compact_revision: backend::read_i64_or(&meta_table, meta::COMPACT_REVISION, NEVER_COMPACTED)?,
            meta: meta_table,
            tables,
            next_sub: 0,
            changes: Vec::new(),
            live_keys,
            live_keys_stored,
        })
    }

    /// The meta table, for the stores kept in it (alarms, the defrag claim) and the applied index.
    pub(crate) fn meta_table(&mut self) -> &mut Table<'t, &'static str, &'static [u8]> {
        &mut self.meta
    }

    /// Starts a write transaction of the store (one client request).
    pub fn begin(&mut self) {
        self.next_sub = 0;
    }

    /// Ends it: if anything changed, the main revision advances by one.
    pub fn end(&mut self) -> Result<(), StateError> {
        if self.next_sub > 0 {
            self.committed += 1;
            self.next_sub = 0;
            backend::write_u64(&mut self.meta, meta::REVISION, self.committed as u64)?;
        }
        Ok(())
    }

    /// Stores the live-key count if the batch changed it (once per batch, with the applied index).
    pub(crate) fn store_live_keys(&mut self) -> Result<(), StateError> {
        if self.live_keys_stored != Some(self.live_keys) {
            backend::write_u64(&mut self.meta, meta::LIVE_KEYS, self.live_keys)?;
            self.live_keys_stored = Some(self.live_keys);
        }
        Ok(())
    }

    /// Changes made since the view was opened, in order.
    pub fn take_changes(&mut self) -> Vec<Change> {
        std::mem::take(&mut self.changes)
    }

    pub(crate) fn write_meta(&mut self, name: &str, value: u64) -> Result<(), StateError> {
        backend::write_u64(&mut self.meta, name, value)
    }

    fn next_revision(&mut self) -> Revision {
        let revision = Revision::new(self.committed + 1, self.next_sub);
        self.next_sub += 1;
        revision
    }

    /// Puts `value` at `key`, attached to `lease` (0: none) in `leases`; returns the previous value.
    pub fn put(
        &mut self,
        key: &[u8],
        value: Vec<u8>,
        lease: i64,
        leases: &mut dyn LeaseKeys,
    ) -> Result<Option<KeyValue>, StateError> {
        let revision = self.next_revision();
        let previous = match self.tables.head(key)? {
            Some(head) if !head.deleted => Some(self.tables.change_at(head.latest)?),
            _ => None,
        };
        leases.attach(key, previous.as_ref().map_or(0, |kv| kv.lease), lease)?;
        // A put to a live key continues its generation; otherwise it starts one.
        let (create_revision, version) =
            previous.as_ref().map_or((revision.main, 1), |kv| (kv.create_revision, kv.version + 1));
        let stored =
            KeyValue { key: key.to_vec(), create_revision, mod_revision: revision.main, version, value, lease };
        self.store(key, Head { latest: revision, deleted: false }, &stored)?;
        self.changes.push(Change::Put(stored));
        if previous.is_none() {
            self.live_keys += 1;
        }
        Ok(previous)
    }

    /// Deletes every existing key in the span (detaching it from its lease in `leases`); returns their last
    /// values, in key order.
    pub fn delete_range(&mut self, span: KeySpan<'_>, leases: &mut dyn LeaseKeys) -> Result<Vec<KeyValue>, StateError> {
        let mut doomed = Vec::new();
        self.tables.scan(span, &mut |key, head| {
            if !head.deleted {
                doomed.push((key.to_vec(), head.latest));
            }
            Ok(true)
        })?;
        self.live_keys = self.live_keys.saturating_sub(doomed.len() as u64);
        let mut deleted = Vec::with_capacity(doomed.len());
        for (key, modified) in doomed {
            let last = self.tables.change_at(modified)?;
            leases.attach(&key, last.lease, 0)?;
            deleted.push(last);
            let revision = self.next_revision();
            let tombstone = KeyValue { key: key.clone(), mod_revision: revision.main, ..Default::default() };
            self.store(&key, Head { latest: revision, deleted: true }, &tombstone)?;
            self.changes.push(Change::Delete(tombstone));
        }
        Ok(deleted)
    }

    /// Stores a change: its value, the key's new head, and its row in the key's history.
    fn store(&mut self, key: &[u8], head: Head, value: &KeyValue) -> Result<(), StateError> {
        let (main, sub) = head.latest.storage_key();
        self.tables.kv.insert((main, sub), value.encode_to_vec().as_slice())?;
        self.tables.heads.insert(key, head.encode().as_slice())?;
        self.tables.revisions.insert((key, main, sub), u8::from(head.deleted))?;
        Ok(())
    }

    /// Compacts the history of the keys after `after` (all keys when None) at main revision `at`, at most
    /// `keys` of them; returns the last key looked at when there may be more.
    pub(super) fn compact_keys(
        &mut self,
        after: Option<&[u8]>,
        at: i64,
        keys: usize,
    ) -> Result<Option<Vec<u8>>, StateError> {
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut pass = Vec::new();
        let mut last_key = None;
        for (read, item) in self.tables.heads.range::<&[u8]>((start, Bound::Unbounded))?.enumerate() {
            let (key, record) = item?;
            let compacted = index::compact_key(&self.tables.revisions, key.value(), Head::decode(record.value())?, at)?;
            if !compacted.removed.is_empty() {
                pass.push((key.value().to_vec(), compacted));
            }
            if read + 1 == keys {
                last_key = Some(key.value().to_vec());
                break;
            }
        }
        for (key, compacted) in pass {
            for revision in compacted.removed {
                let (main, sub) = revision.storage_key();
                self.tables.kv.remove((main, sub))?;
                self.tables.revisions.remove((key.as_slice(), main, sub))?;
            }
            if compacted.gone {
                self.tables.heads.remove(key.as_slice())?;
            }
        }
        Ok(last_key)
    }
}

impl Reader for WriteView<'_> {
    fn revision(&self) -> i64 {
        if self.next_sub > 0 { self.committed + 1 } else { self.committed }
    }
    fn compact_revision(&self) -> i64 {
        self.compact_revision
    }
    fn head(&self, key: &[u8]) -> Result<Option<Head>, StateError> {
        self.tables.head(key)
    }
    fn visible(&self, key: &[u8], head: Head, at: i64) -> Result<Option<Revision>, StateError> {
        self.tables.visible(key, head, at)
    }
    fn scan(
        &self,
        span: KeySpan<'_>,
        visit: &mut dyn FnMut(&[u8], Head) -> Result<bool, StateError>,
    ) -> Result<(), StateError> {
        self.tables.scan(span, visit)
    }
    fn change_at(&self, revision: Revision) -> Result<KeyValue, StateError> {
        self.tables.change_at(revision)
    }
}
