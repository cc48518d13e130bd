//! Compaction: drop every revision that no read at or above the compact point can see.

use super::key_index::KeyIndex;
use super::{Reader, WriteView};
use crate::backend::meta;
use crate::error::StateError;
use keel_api::EtcdError;
use redb::ReadableTable;
use std::ops::Bound;

/// Keys compacted per pass over the index, so memory stays small on large stores.
const KEYS_PER_PASS: usize = 1024;

impl WriteView<'_> {
    /// Compacts the history at main revision `at`: reads below it fail with `Compacted` from now on.
    pub fn compact(&mut self, at: i64) -> Result<(), StateError> {
        if at <= self.compact_revision {
            return Err(EtcdError::Compacted.into());
        }
        if at > self.revision() {
            return Err(EtcdError::FutureRevision.into());
        }
        let mut after: Option<Vec<u8>> = None;
        loop {
            let (pass, last_key) = self.compaction_pass(after.as_deref(), at)?;
            let (index_table, kv_table) = self.tables_mut();
            for (key, index, removed) in pass {
                for revision in removed {
                    kv_table.remove(revision.storage_key())?;
                }
                if index.is_empty() {
                    index_table.remove(key.as_slice())?;
                } else {
                    index_table.insert(key.as_slice(), index.encode().as_slice())?;
                }
            }
            match last_key {
                Some(key) => after = Some(key),
                None => break,
            }
        }
        self.compact_revision = at;
        self.write_meta(meta::COMPACT_REVISION, at as u64)
    }

    /// Reads up to [`KEYS_PER_PASS`] keys after `after` and works out their compacted indexes. Returns the
    /// keys that change, and the last key read if there may be more.
    #[allow(clippy::type_complexity)]
    fn compaction_pass(
        &mut self,
        after: Option<&[u8]>,
        at: i64,
    ) -> Result<(Vec<(Vec<u8>, KeyIndex, Vec<crate::Revision>)>, Option<Vec<u8>>), StateError> {
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        let (index_table, _) = self.tables_mut();
        let mut pass = Vec::new();
        let mut read = 0;
        let mut last_key = None;
        for item in index_table.range::<&[u8]>((start, Bound::Unbounded))? {
            let (key, record) = item?;
            let mut index = KeyIndex::decode(record.value())?;
            let removed = index.compact(at);
            if !removed.is_empty() {
                pass.push((key.value().to_vec(), index, removed));
            }
            read += 1;
            if read == KEYS_PER_PASS {
                last_key = Some(key.value().to_vec());
                break;
            }
        }
        Ok((pass, last_key))
    }
}
