//! Files written before the key index was split into heads and per-change rows held one `key_index` record
//! per key: its generations, each a list of revisions, every closed one ending with its delete. Opening such
//! a file converts it in the opening transaction (so a crash leaves the old form, and the next open converts
//! again). Snapshot images of that time carry the same records, and convert the same way once restored.

use super::{KEY_HEADS, KEY_REVISIONS};
use crate::error::StateError;
use crate::mvcc::index::Head;
use crate::revision::Revision;
use prost::encoding::decode_varint;
use redb::{ReadableTable, TableDefinition, TableHandle, WriteTransaction};

pub(crate) const KEY_INDEX: TableDefinition<&[u8], &[u8]> = TableDefinition::new("key_index");

/// Converts the old `key_index` table, if the file has one, and drops it.
pub(super) fn convert_key_index(transaction: &WriteTransaction) -> Result<(), StateError> {
    if !transaction.list_tables()?.any(|table| table.name() == KEY_INDEX.name()) {
        return Ok(());
    }
    {
        let old = transaction.open_table(KEY_INDEX)?;
        let mut heads = transaction.open_table(KEY_HEADS)?;
        let mut revisions = transaction.open_table(KEY_REVISIONS)?;
        for row in old.iter()? {
            let (key, record) = row?;
            let key = key.value();
            let mut head = None;
            for (revision, deleted) in changes(record.value())? {
                revisions.insert((key, revision.main as u64, revision.sub as u64), u8::from(deleted))?;
                head = Some(Head { latest: revision, deleted });
            }
            if let Some(head) = head {
                heads.insert(key, head.encode().as_slice())?;
            }
        }
    }
    transaction.delete_table(KEY_INDEX)?;
    tracing::info!("converted the key index to heads and per-change rows");
    Ok(())
}

/// The changes an old record lists, oldest first, each with whether it was a delete: the last revision of
/// every generation but the last one.
fn changes(mut bytes: &[u8]) -> Result<Vec<(Revision, bool)>, StateError> {
    let buffer = &mut bytes;
    let mut read =
        || decode_varint(buffer).map_err(|_| StateError::Corrupt("an old key index record is malformed".into()));
    let generations = read()?;
    let mut changes = Vec::new();
    for generation in 0..generations {
        let _created_main = read()?;
        let _created_sub = read()?;
        let _version = read()?;
        let count = read()?;
        let mut main = 0i64;
        for position in 0..count {
            main += read()? as i64;
            let sub = read()? as i64;
            let closes = generation + 1 < generations && position + 1 == count;
            changes.push((Revision::new(main, sub), closes));
        }
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::encoding::encode_varint;

    /// An old record: generations of (created, version, revisions), as the old encoder wrote them.
    fn old_record(generations: &[(i64, &[i64])]) -> Vec<u8> {
        let mut bytes = Vec::new();
        encode_varint(generations.len() as u64, &mut bytes);
        for (version, mains) in generations {
            encode_varint(mains.first().copied().unwrap_or(0) as u64, &mut bytes);
            encode_varint(0, &mut bytes);
            encode_varint(*version as u64, &mut bytes);
            encode_varint(mains.len() as u64, &mut bytes);
            let mut previous = 0;
            for main in *mains {
                encode_varint((main - previous) as u64, &mut bytes);
                encode_varint(0, &mut bytes);
                previous = *main;
            }
        }
        bytes
    }

    #[test]
    fn closed_generations_end_with_their_delete() {
        // Put at 2 and 3, deleted at 4, put again at 6; the live generation is open.
        let record = old_record(&[(3, &[2, 3, 4]), (1, &[6])]);
        let expected = vec![
            (Revision::new(2, 0), false),
            (Revision::new(3, 0), false),
            (Revision::new(4, 0), true),
            (Revision::new(6, 0), false),
        ];
        assert_eq!(changes(&record).unwrap(), expected);
        // Deleted last: the empty live generation follows the closed one.
        let record = old_record(&[(1, &[2, 5]), (0, &[])]);
        assert_eq!(changes(&record).unwrap(), vec![(Revision::new(2, 0), false), (Revision::new(5, 0), true)]);
        assert!(changes(&[0x80]).is_err());
    }

    #[test]
    fn an_old_file_is_converted_when_opened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let database = redb::Database::create(&path).unwrap();
            let transaction = database.begin_write().unwrap();
            transaction
                .open_table(KEY_INDEX)
                .unwrap()
                .insert(b"k".as_slice(), old_record(&[(1, &[2, 4]), (0, &[])]).as_slice())
                .unwrap();
            transaction.commit().unwrap();
        }
        let backend = super::super::Backend::open(&path).unwrap();
        let transaction = backend.begin_read().unwrap();
        assert!(!transaction.list_tables().unwrap().any(|table| table.name() == KEY_INDEX.name()));
        let heads = transaction.open_table(KEY_HEADS).unwrap();
        let head = Head::decode(heads.get(b"k".as_slice()).unwrap().unwrap().value()).unwrap();
        assert_eq!(head, Head { latest: Revision::new(4, 0), deleted: true });
        let revisions = transaction.open_table(KEY_REVISIONS).unwrap();
        let rows: Vec<_> = revisions
            .iter()
            .unwrap()
            .map(|row| {
                let (key, deleted) = row.unwrap();
                let (_, main, _) = key.value();
                (main, deleted.value())
            })
            .collect();
        assert_eq!(rows, vec![(2, 0), (4, 1)]);
    }
}
