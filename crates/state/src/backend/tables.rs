//! The one list of the backend's tables. Each entry says how its records travel in a backend image (its
//! tag, and how its key and value are written as bytes) and is what `Backend::open` creates, what
//! `image::export` walks (in this order) and what `image::import` inserts into. Adding a table is adding
//! an entry here (and its tag to the image format's doc).

use super::{KEY_HEADS, KEY_REVISIONS, KV, LEASE_KEYS, LEASES, MEMBERS, META};
use crate::error::StateError;
use redb::{ReadTransaction, ReadableTable, WriteTransaction};

/// One table: how to create it, export its records and import one.
pub(crate) struct TableSpec {
    /// The record tag in images (0 ends an image; 1 is the legacy key index, see `legacy`).
    pub tag: u8,
    create: fn(&WriteTransaction) -> Result<(), StateError>,
    export: fn(&ReadTransaction, &mut dyn FnMut(&[u8], &[u8]) -> Result<(), StateError>) -> Result<(), StateError>,
    import: fn(&WriteTransaction, &[u8], &[u8]) -> Result<(), StateError>,
}

impl TableSpec {
    /// Creates the table if the file has none (so readers always find it).
    pub fn create(&self, transaction: &WriteTransaction) -> Result<(), StateError> {
        (self.create)(transaction)
    }

    /// Calls `record` with every record's key and value as images write them, in key order.
    pub fn export(
        &self,
        transaction: &ReadTransaction,
        record: &mut dyn FnMut(&[u8], &[u8]) -> Result<(), StateError>,
    ) -> Result<(), StateError> {
        (self.export)(transaction, record)
    }

    /// Inserts one image record.
    pub fn import(&self, transaction: &WriteTransaction, key: &[u8], value: &[u8]) -> Result<(), StateError> {
        (self.import)(transaction, key, value)
    }
}

/// Every table, in image order: small ones first, the key index, then the changes.
pub(crate) const TABLES: &[TableSpec] = &[
    TableSpec {
        tag: 3,
        create: |transaction| create(transaction, META),
        export: |transaction, record| {
            for row in transaction.open_table(META)?.iter()? {
                let (key, value) = row?;
                record(key.value().as_bytes(), value.value())?;
            }
            Ok(())
        },
        import: |transaction, key, value| {
            let name = std::str::from_utf8(key).map_err(|_| corrupt("a meta key is not UTF-8"))?;
            transaction.open_table(META)?.insert(name, value)?;
            Ok(())
        },
    },
    TableSpec {
        tag: 6,
        create: |transaction| create(transaction, MEMBERS),
        export: |transaction, record| {
            for row in transaction.open_table(MEMBERS)?.iter()? {
                let (id, value) = row?;
                record(&id.value().to_be_bytes(), value.value())?;
            }
            Ok(())
        },
        import: |transaction, key, value| {
            transaction.open_table(MEMBERS)?.insert(id_of(key)?, value)?;
            Ok(())
        },
    },
    TableSpec {
        tag: 4,
        create: |transaction| create(transaction, LEASES),
        export: |transaction, record| {
            for row in transaction.open_table(LEASES)?.iter()? {
                let (id, value) = row?;
                record(&id.value().to_be_bytes(), value.value())?;
            }
            Ok(())
        },
        import: |transaction, key, value| {
            transaction.open_table(LEASES)?.insert(id_of(key)?, value)?;
            Ok(())
        },
    },
    TableSpec {
        tag: 5,
        create: |transaction| create(transaction, LEASE_KEYS),
        export: |transaction, record| {
            for row in transaction.open_table(LEASE_KEYS)?.iter()? {
                let (key, _) = row?;
                let (id, user_key) = key.value();
                record(&[&id.to_be_bytes()[..], user_key].concat(), &[])?;
            }
            Ok(())
        },
        import: |transaction, key, _| {
            if key.len() < 8 {
                return Err(corrupt("a lease key record is too short"));
            }
            transaction.open_table(LEASE_KEYS)?.insert((id_of(&key[..8])?, &key[8..]), ())?;
            Ok(())
        },
    },
    TableSpec {
        tag: 7,
        create: |transaction| create(transaction, KEY_HEADS),
        export: |transaction, record| {
            for row in transaction.open_table(KEY_HEADS)?.iter()? {
                let (key, value) = row?;
                record(key.value(), value.value())?;
            }
            Ok(())
        },
        import: |transaction, key, value| {
            transaction.open_table(KEY_HEADS)?.insert(key, value)?;
            Ok(())
        },
    },
    TableSpec {
        tag: 8,
        create: |transaction| create(transaction, KEY_REVISIONS),
        export: |transaction, record| {
            for row in transaction.open_table(KEY_REVISIONS)?.iter()? {
                let (key, deleted) = row?;
                let (user_key, main, sub) = key.value();
                record(&[user_key, &main.to_be_bytes(), &sub.to_be_bytes()].concat(), &[deleted.value()])?;
            }
            Ok(())
        },
        import: |transaction, key, value| {
            let split = key.len().checked_sub(16).ok_or_else(|| corrupt("a key revision is shorter than 16 bytes"))?;
            let (main, sub) = revision(&key[split..])?;
            let [deleted] = value else { return Err(corrupt("a key revision's value is not one byte")) };
            transaction.open_table(KEY_REVISIONS)?.insert((&key[..split], main, sub), *deleted)?;
            Ok(())
        },
    },
    TableSpec {
        tag: 2,
        create: |transaction| create(transaction, KV),
        export: |transaction, record| {
            for row in transaction.open_table(KV)?.iter()? {
                let (key, value) = row?;
                let (main, sub) = key.value();
                record(&[main.to_be_bytes(), sub.to_be_bytes()].concat(), value.value())?;
            }
            Ok(())
        },
        import: |transaction, key, value| {
            let (main, sub) = revision(key)?;
            transaction.open_table(KV)?.insert((main, sub), value)?;
            Ok(())
        },
    },
];

fn create<K: redb::Key + 'static, V: redb::Value + 'static>(
    transaction: &WriteTransaction,
    definition: redb::TableDefinition<K, V>,
) -> Result<(), StateError> {
    transaction.open_table(definition)?;
    Ok(())
}

/// The table an image record tag names.
pub(crate) fn by_tag(tag: u8) -> Option<&'static TableSpec> {
    TABLES.iter().find(|table| table.tag == tag)
}

/// A (main, sub) revision written as 16 bytes.
fn revision(bytes: &[u8]) -> Result<(u64, u64), StateError> {
    let revision: [u8; 16] = bytes.try_into().map_err(|_| corrupt("a revision is not 16 bytes"))?;
    let main = u64::from_be_bytes(revision[..8].try_into().expect("8 bytes"));
    let sub = u64::from_be_bytes(revision[8..].try_into().expect("8 bytes"));
    Ok((main, sub))
}

fn id_of(key: &[u8]) -> Result<u64, StateError> {
    let bytes: [u8; 8] = key.try_into().map_err(|_| corrupt("an id key is not 8 bytes"))?;
    Ok(u64::from_be_bytes(bytes))
}

fn corrupt(what: &str) -> StateError {
    StateError::Corrupt(format!("backend image: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_has_its_own_tag_and_every_table_travels_in_images() {
        let mut tags: Vec<u8> = TABLES.iter().map(|table| table.tag).collect();
        tags.sort();
        tags.dedup();
        assert_eq!(tags.len(), TABLES.len());
        assert!(!tags.contains(&0) && !tags.contains(&1), "0 ends an image, 1 is the legacy key index");
        // One record in every table, through export and import, comes back record for record.
        let dir = tempfile::tempdir().unwrap();
        let backend = crate::backend::Backend::open(&dir.path().join("a.db")).unwrap();
        let transaction = backend.begin_write(true).unwrap();
        for table in TABLES {
            let (key, value): (Vec<u8>, Vec<u8>) = match table.tag {
                8 => ([b"k".as_slice(), &2u64.to_be_bytes(), &0u64.to_be_bytes()].concat(), vec![0]),
                2 => ([2u64.to_be_bytes(), 0u64.to_be_bytes()].concat(), b"value".to_vec()),
                5 => ([&7u64.to_be_bytes()[..], b"k"].concat(), Vec::new()),
                4 | 6 => (7u64.to_be_bytes().to_vec(), b"record".to_vec()),
                _ => (b"name".to_vec(), b"value".to_vec()),
            };
            table.import(&transaction, &key, &value).unwrap();
        }
        transaction.commit().unwrap();
        let exported = |backend: &crate::backend::Backend| {
            let transaction = backend.begin_read().unwrap();
            let mut records = Vec::new();
            for table in TABLES {
                table
                    .export(&transaction, &mut |key, value| {
                        records.push((table.tag, key.to_vec(), value.to_vec()));
                        Ok(())
                    })
                    .unwrap();
            }
            records
        };
        let before = exported(&backend);
        for table in TABLES {
            assert!(before.iter().any(|(tag, _, _)| *tag == table.tag), "table {} exported nothing", table.tag);
        }
        let mut image = Vec::new();
        crate::backend::image::export(&backend, &[], &mut image, |_| {}).unwrap();
        let copy = dir.path().join("b.db");
        crate::backend::image::import(image.as_slice(), &copy, &[], |_| {}).unwrap();
        assert_eq!(exported(&crate::backend::Backend::open(&copy).unwrap()), before);
    }
}
