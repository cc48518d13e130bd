//! The embedded store: one redb file holding the key index, every retained revision, and the meta keys.
//!
//! Tables (listed once, in [`tables::TABLES`], which drives `Backend::open` and the image codec):
//! - `key_heads`: user key -> its latest change; `key_revisions`: (user key, main, sub) -> whether that
//!   retained change was a delete (see `crate::mvcc::index`). Files from before these two tables have
//!   one `key_index` record per key instead, and are converted when opened (see [`legacy`]).
//! - `kv`: (main, sub) revision -> encoded `mvccpb.KeyValue` (a tombstone has `create_revision == 0`).
//! - `leases`: lease id -> encoded `keelpb.LeaseRecord`; `lease_keys`: (lease id, user key) -> ().
//! - `members`: member id -> encoded `keelpb.MemberAttributes` (name and client URLs it published).
//! - `meta`: named values: applied index and term, current and compacted revision, conf state.
//!
//! Durability: the Raft WAL is what makes a write durable. Most backend commits are made with
//! `Durability::None` (visible to readers at once, on disk later); every so often a commit is durable,
//! and after a crash the member replays the WAL from the applied index of the last durable commit.
//! The applied index is written in the same transaction as the data, so replay is idempotent.

use crate::error::StateError;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

pub mod image;
mod legacy;
pub mod snapshot;
pub(crate) mod tables;

pub(crate) const KEY_HEADS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("key_heads");
pub(crate) const KEY_REVISIONS: TableDefinition<(&[u8], u64, u64), u8> = TableDefinition::new("key_revisions");
pub(crate) const KV: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("kv");
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
pub(crate) const LEASES: TableDefinition<u64, &[u8]> = TableDefinition::new("leases");
pub(crate) const LEASE_KEYS: TableDefinition<(u64, &[u8]), ()> = TableDefinition::new("lease_keys");
pub(crate) const MEMBERS: TableDefinition<u64, &[u8]> = TableDefinition::new("members");

/// Names of the meta keys.
pub mod meta {
    pub const APPLIED_INDEX: &str = "applied_index";
    pub const APPLIED_TERM: &str = "applied_term";
    pub const REVISION: &str = "revision";
    pub const COMPACT_REVISION: &str = "compact_revision";
    /// The Raft configuration (an encoded raft `ConfState`).
    pub const CONF_STATE: &str = "conf_state";
    /// The member's identity, fixed at bootstrap: 8-byte big-endian ids.
    pub const CLUSTER_ID: &str = "cluster_id";
    pub const MEMBER_ID: &str = "member_id";
    /// Keys with a current (not deleted) value; counted on first use where absent (older files).
    pub const LIVE_KEYS: &str = "live_keys";
    /// The cluster-wide defragmentation claim (see `WriteView::defrag_claim`).
    pub const DEFRAG_CLAIM: &str = "defrag_claim";
}

/// Bytes of redb's page cache.
const CACHE_BYTES: usize = 128 * 1024 * 1024;

/// The backend file. Its database can be replaced by a complete new file (an installed Raft snapshot, a
/// defragmented copy) while readers hold the `Backend`: transactions begun before the switch finish on
/// the old file.
pub struct Backend {
    database: RwLock<Arc<Database>>,
    path: PathBuf,
}

impl Backend {
    /// Opens or creates the backend file; creates the tables so read transactions always find them.
    pub fn open(path: &Path) -> Result<Self, StateError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| StateError::Io { path: parent.into(), source })?;
        }
        let database = create_database(path)?;
        let transaction = database.begin_write()?;
        for table in tables::TABLES {
            table.create(&transaction)?;
        }
        legacy::convert_key_index(&transaction)?;
        {
            let mut meta_table = transaction.open_table(META)?;
            // As in etcd, an empty store is at revision 1: the first write makes revision 2.
            if meta_table.get(meta::REVISION)?.is_none() {
                write_u64(&mut meta_table, meta::REVISION, 1)?;
            }
        }
        transaction.commit()?;
        Ok(Backend { database: RwLock::new(Arc::new(database)), path: path.to_path_buf() })
    }

    /// Replaces the whole database by `file`, a complete backend file in the same directory (made by
    /// [`image::import`]). The caller must be the only writer (the applier), so no write transaction is
    /// open. Readers wait only for the switch of one pointer, not for the new file to open.
    pub fn replace_with(&self, file: &Path) -> Result<(), StateError> {
        self.adopt(Backend::open(file)?)
    }

    /// Like [`Backend::replace_with`], for a backend already open (its file is renamed over this one's).
    pub fn adopt(&self, other: Backend) -> Result<(), StateError> {
        let incoming = other.database.into_inner().expect("backend lock");
        let old = {
            let mut database = self.database.write().expect("backend lock");
            std::fs::rename(&other.path, &self.path)
                .map_err(|source| StateError::Io { path: other.path.clone(), source })?;
            std::mem::replace(&mut *database, incoming)
        };
        // Closing the old database writes to its (now unlinked) file; nobody needs to wait for that.
        let _ = std::thread::Builder::new().name("backend-close".into()).spawn(move || drop(old));
        sync_parent(&self.path)
    }

    fn database(&self) -> Arc<Database> {
        self.database.read().expect("backend lock").clone()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A read transaction; it keeps its database open even if the backend switches files meanwhile.
    pub(crate) fn begin_read(&self) -> Result<ReadTransaction, StateError> {
        let database = self.database();
        Ok(ReadTransaction { transaction: database.begin_read()?, _database: database })
    }

    /// A write transaction; `durable` decides whether its commit reaches the disk before returning.
    pub(crate) fn begin_write(&self, durable: bool) -> Result<WriteTransaction, StateError> {
        let mut transaction = self.database().begin_write()?;
        if durable {
            transaction.set_durability(Durability::Immediate)?;
            // Saves the allocator state with the commit, so reopening after a crash is quick.
            transaction.set_quick_repair(true);
        } else {
            transaction.set_durability(Durability::None)?;
        }
        Ok(transaction)
    }

    /// Size of the backend file in bytes (etcd's `dbSize`).
    pub fn file_size(&self) -> u64 {
        std::fs::metadata(&self.path).map(|metadata| metadata.len()).unwrap_or(0)
    }

    /// Bytes of the file that hold live pages (etcd's `dbSizeInUse`). Walks the trees: call it rarely.
    pub fn size_in_use(&self) -> Result<u64, StateError> {
        let transaction = self.database().begin_write()?;
        let stats = transaction.stats()?;
        transaction.abort()?;
        Ok(stats.allocated_pages() * stats.page_size() as u64)
    }
}

/// A redb read transaction together with the database it reads (redb fails reads on a closed database).
pub(crate) struct ReadTransaction {
    transaction: redb::ReadTransaction,
    // Dropped after the transaction (fields drop in order).
    _database: Arc<Database>,
}

impl std::ops::Deref for ReadTransaction {
    type Target = redb::ReadTransaction;

    fn deref(&self) -> &redb::ReadTransaction {
        &self.transaction
    }
}

fn create_database(path: &Path) -> Result<Database, StateError> {
    // redb's own cache is anonymous memory; the OS page cache backs the file anyway, so a modest cache
    // keeps the member's memory small without costing reads much.
    Ok(Database::builder().set_cache_size(CACHE_BYTES).create(path)?)
}

/// Makes a rename or a new file in `path`'s directory durable.
pub(crate) fn sync_parent(path: &Path) -> Result<(), StateError> {
    let Some(parent) = path.parent() else { return Ok(()) };
    std::fs::File::open(parent)
        .and_then(|directory| directory.sync_all())
        .map_err(|source| StateError::Io { path: parent.into(), source })
}

pub(crate) fn read_u64<T: ReadableTable<&'static str, &'static [u8]>>(
    table: &T,
    name: &str,
) -> Result<u64, StateError> {
    let Some(value) = table.get(name)? else { return Ok(0) };
    let bytes: [u8; 8] = value.value().try_into().map_err(|_| StateError::Corrupt(format!("meta key {name}")))?;
    Ok(u64::from_be_bytes(bytes))
}

/// A stored revision-like value, or `absent` when it was never written.
pub(crate) fn read_i64_or<T: ReadableTable<&'static str, &'static [u8]>>(
    table: &T,
    name: &str,
    absent: i64,
) -> Result<i64, StateError> {
    if table.get(name)?.is_none() {
        return Ok(absent);
    }
    Ok(read_u64(table, name)? as i64)
}

pub(crate) fn write_u64(table: &mut redb::Table<&str, &[u8]>, name: &str, value: u64) -> Result<(), StateError> {
    table.insert(name, value.to_be_bytes().as_slice())?;
    Ok(())
}
