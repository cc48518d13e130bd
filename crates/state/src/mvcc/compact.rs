//! Compaction: drop every revision that no read at or above the compact point can see.

use super::{Reader, WriteView};
use crate::backend::meta;
use crate::error::StateError;
use keel_api::EtcdError;

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
        while let Some(last_key) = self.compact_keys(after.as_deref(), at, KEYS_PER_PASS)? {
            after = Some(last_key);
        }
        self.compact_revision = at;
        self.write_meta(meta::COMPACT_REVISION, at as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Backend;
    use crate::mvcc::{Change, KeySpan, ReadView};

    /// Applies each batch of writes as one store transaction (one revision).
    fn write(backend: &Backend, batches: &[&[(&str, Option<&str>)]]) {
        let transaction = backend.begin_write(false).unwrap();
        {
            let mut view = WriteView::open(&transaction).unwrap();
            let mut leases = crate::lease::LeaseStore::open(&transaction).unwrap();
            for batch in batches {
                view.begin();
                for (key, value) in *batch {
                    match value {
                        Some(value) => {
                            drop(view.put(key.as_bytes(), value.as_bytes().to_vec(), 0, &mut leases).unwrap())
                        }
                        None => drop(view.delete_range(KeySpan::Single(key.as_bytes()), &mut leases).unwrap()),
                    }
                }
                view.end().unwrap();
            }
        }
        transaction.commit().unwrap();
    }

    fn compact(backend: &Backend, at: i64) {
        let transaction = backend.begin_write(false).unwrap();
        WriteView::open(&transaction).unwrap().compact(at).unwrap();
        transaction.commit().unwrap();
    }

    /// Every stored change's (main revision, key, deleted).
    fn stored(backend: &Backend) -> Vec<(i64, String, bool)> {
        let history = ReadView::open(backend).unwrap().history(0, i64::MAX, usize::MAX).unwrap();
        history
            .into_iter()
            .map(|change| match change {
                Change::Put(kv) => (kv.mod_revision, String::from_utf8(kv.key).unwrap(), false),
                Change::Delete(kv) => (kv.mod_revision, String::from_utf8(kv.key).unwrap(), true),
            })
            .collect()
    }

    #[test]
    fn compaction_keeps_what_reads_at_or_above_the_point_can_see() {
        let dir = tempfile::tempdir().unwrap();
        let backend = Backend::open(&dir.path().join("db")).unwrap();
        // Revisions: a@2, a@3, b@4, a deleted @5, b@6, a@7 (a new generation), c@8, c deleted @9.
        write(
            &backend,
            &[
                &[("a", Some("1"))],
                &[("a", Some("2"))],
                &[("b", Some("1"))],
                &[("a", None)],
                &[("b", Some("2"))],
                &[("a", Some("3"))],
                &[("c", Some("1"))],
                &[("c", None)],
            ],
        );
        compact(&backend, 6);
        // a: its first generation ended at 5, before the point: all of it goes; 7 stays. b: 6 is what a
        // read at 6 sees. c: untouched, all above the point.
        let expected = [(6, "b", false), (7, "a", false), (8, "c", false), (9, "c", true)]
            .map(|(main, key, deleted)| (main, key.to_string(), deleted));
        assert_eq!(stored(&backend), expected);
        let view = ReadView::open(&backend).unwrap();
        assert!(view.get(b"a", 6).unwrap().is_none());
        let a = view.get(b"a", 9).unwrap().unwrap();
        assert_eq!((a.create_revision, a.mod_revision, a.version), (7, 7, 1));
        let b = view.get(b"b", 6).unwrap().unwrap();
        assert_eq!((b.create_revision, b.mod_revision, b.version), (4, 6, 2));
        drop(view);

        // Past c's delete: c has no history left, and is gone from the index too.
        compact(&backend, 9);
        let expected = [(6, "b", false), (7, "a", false)].map(|(main, key, deleted)| (main, key.to_string(), deleted));
        assert_eq!(stored(&backend), expected);
        let view = ReadView::open(&backend).unwrap();
        assert!(view.head(b"c").unwrap().is_none());
        assert_eq!(view.key_count().unwrap(), 2);
    }

    #[test]
    fn a_key_written_many_times_keeps_one_row_per_change_and_reads_any_of_them() {
        let dir = tempfile::tempdir().unwrap();
        let backend = Backend::open(&dir.path().join("db")).unwrap();
        let values: Vec<String> = (0..3000).map(|index| index.to_string()).collect();
        let batches: Vec<[(&str, Option<&str>); 1]> =
            values.iter().map(|value| [("hot", Some(value.as_str()))]).collect();
        let batches: Vec<&[(&str, Option<&str>)]> = batches.iter().map(|batch| batch.as_slice()).collect();
        write(&backend, &batches);
        let view = ReadView::open(&backend).unwrap();
        for at in [2, 3, 1000, 3001] {
            let kv = view.get(b"hot", at).unwrap().unwrap();
            assert_eq!((kv.mod_revision, kv.version, kv.create_revision), (at, at - 1, 2));
            assert_eq!(kv.value, (at - 2).to_string().into_bytes());
        }
        assert!(view.get(b"hot", 1).unwrap().is_none());
        drop(view);
        compact(&backend, 2500);
        assert_eq!(stored(&backend).len(), 3001 - 2500 + 1);
        let kv = ReadView::open(&backend).unwrap().get(b"hot", 2500).unwrap().unwrap();
        assert_eq!((kv.mod_revision, kv.version), (2500, 2499));
    }
}
