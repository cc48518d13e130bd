//! A backend image: every table's records, in key order, from one read transaction, as a byte stream
//! that ends with its own SHA-256. It is how a whole store travels: a Raft snapshot sent to a lagging
//! follower, and (later) backups and defragmentation, which rebuild a fresh file from it.
//!
//! ```text
//! "KEELIMG1"
//! record*:  table: u8 (a tag of `tables::TABLES`, 2..=8; 1 in older images) | key length: u32 BE | key |
//!           value length: u32 BE | value
//! end:      0u8 | sha256 of every byte before it (32 bytes)
//! ```
//!
//! Keys are written as redb stores them: byte strings as they are, integers as 8 bytes big-endian,
//! `(u64, bytes)` pairs as the integer followed by the bytes, and `(bytes, u64, u64)` as the bytes followed
//! by the integers. Images made before the key index was split hold table 1 (one record per key), which
//! is restored as it is and converted when the restored file is opened.

use super::legacy::KEY_INDEX;
use super::tables::{self, TABLES};
use super::{META, meta, read_u64, sync_parent};
use crate::error::StateError;
use redb::{Database, Durability, WriteTransaction};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::Path;

const MAGIC: &[u8; 8] = b"KEELIMG1";
const END: u8 = 0;
/// The key index of older images (see `super::legacy`).
const TABLE_KEY_INDEX: u8 = 1;
/// The meta table's tag (a member's own identity is left out of images; see [`export`]).
const META_TAG: u8 = 3;
/// Records inserted per (non-durable) import transaction.
const IMPORT_BATCH: u64 = 50_000;
/// A record field larger than this is refused as corrupt (etcd's own requests are far smaller).
const MAX_FIELD: u32 = 256 * 1024 * 1024;

/// What an image holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ImageInfo {
    pub applied_index: u64,
    pub applied_term: u64,
    pub revision: i64,
    pub records: u64,
    pub bytes: u64,
    pub sha256: [u8; 32],
}

/// Writes an image of `backend` to `out`, leaving out the meta keys in `skip_meta` (a member's own
/// identity). `progress` hears the bytes written so far, now and then.
pub fn export(
    backend: &super::Backend,
    skip_meta: &[&str],
    out: impl Write,
    mut progress: impl FnMut(u64),
) -> Result<ImageInfo, StateError> {
    let transaction = backend.begin_read()?;
    let mut writer = ImageWriter { out, hasher: Sha256::new(), bytes: 0, records: 0, reported: 0 };
    writer.write(MAGIC)?;
    let meta_table = transaction.open_table(META)?;
    let mut info = ImageInfo {
        applied_index: read_u64(&meta_table, meta::APPLIED_INDEX)?,
        applied_term: read_u64(&meta_table, meta::APPLIED_TERM)?,
        revision: read_u64(&meta_table, meta::REVISION)? as i64,
        ..ImageInfo::default()
    };
    drop(meta_table);
    for table in TABLES {
        let is_meta = table.tag == META_TAG;
        table.export(&transaction, &mut |key, value| {
            if is_meta && skip_meta.iter().any(|name| name.as_bytes() == key) {
                return Ok(());
            }
            writer.record(table.tag, key, value)?;
            writer.report(&mut progress);
            Ok(())
        })?;
    }
    writer.write(&[END])?;
    let digest: [u8; 32] = writer.hasher.finalize_reset().into();
    writer.out.write_all(&digest).map_err(image_io)?;
    writer.out.flush().map_err(image_io)?;
    info.records = writer.records;
    info.bytes = writer.bytes + digest.len() as u64;
    info.sha256 = digest;
    progress(info.bytes);
    Ok(info)
}

/// Builds a new backend file at `path` from an image (replacing any file there), checks the image's
/// checksum, adds `local_meta` (the receiving member's identity), and makes the file durable. On any
/// error the partial file is removed.
pub fn import(
    input: impl Read,
    path: &Path,
    local_meta: &[(&str, &[u8])],
    progress: impl FnMut(u64),
) -> Result<ImageInfo, StateError> {
    let result = import_into(input, path, local_meta, progress);
    if result.is_err() {
        let _ = std::fs::remove_file(path);
    }
    result
}

fn import_into(
    input: impl Read,
    path: &Path,
    local_meta: &[(&str, &[u8])],
    mut progress: impl FnMut(u64),
) -> Result<ImageInfo, StateError> {
    match std::fs::remove_file(path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            return Err(StateError::Io { path: path.into(), source: error });
        }
        _ => {}
    }
    let database = super::create_database(path)?;
    let mut reader = ImageReader { input, hasher: Sha256::new(), bytes: 0 };
    let mut magic = [0u8; 8];
    reader.read(&mut magic)?;
    if &magic != MAGIC {
        return Err(corrupt("not a Keel backend image (bad magic)"));
    }
    let mut transaction = begin(&database, false)?;
    let mut records = 0u64;
    let mut reported = 0u64;
    loop {
        let mut tag = [0u8; 1];
        reader.read(&mut tag)?;
        if tag[0] == END {
            break;
        }
        let key = reader.field()?;
        let value = reader.field()?;
        insert(&transaction, tag[0], &key, &value)?;
        records += 1;
        if records.is_multiple_of(IMPORT_BATCH) {
            transaction.commit()?;
            transaction = begin(&database, false)?;
        }
        if reader.bytes - reported >= 64 * 1024 * 1024 {
            reported = reader.bytes;
            progress(reported);
        }
    }
    let computed: [u8; 32] = reader.hasher.finalize_reset().into();
    let mut stored = [0u8; 32];
    reader.input.read_exact(&mut stored).map_err(|_| corrupt("the image ends before its checksum"))?;
    if computed != stored {
        return Err(corrupt("the image's SHA-256 does not match its content"));
    }
    {
        let mut meta_table = transaction.open_table(META)?;
        for (name, value) in local_meta {
            meta_table.insert(*name, *value)?;
        }
    }
    transaction.commit()?;
    let mut last = begin(&database, true)?;
    last.set_quick_repair(true);
    let info = {
        let meta_table = last.open_table(META)?;
        ImageInfo {
            applied_index: read_u64(&meta_table, meta::APPLIED_INDEX)?,
            applied_term: read_u64(&meta_table, meta::APPLIED_TERM)?,
            revision: read_u64(&meta_table, meta::REVISION)? as i64,
            records,
            bytes: reader.bytes + stored.len() as u64,
            sha256: stored,
        }
    };
    // Tables the image had no record for still exist, so readers always find them.
    for table in TABLES {
        table.create(&last)?;
    }
    last.commit()?;
    drop(database);
    sync_parent(path)?;
    progress(info.bytes);
    Ok(info)
}

/// Copies `backend` into a fresh, compact file at `path` (what defragmentation does): an export on a
/// helper thread feeds an import on this one through a bounded in-memory pipe.
pub fn copy(backend: &super::Backend, path: &Path, progress: impl FnMut(u64)) -> Result<ImageInfo, StateError> {
    let (writer, reader) = pipe(16);
    std::thread::scope(|scope| {
        let exporter = scope.spawn(move || export(backend, &[], writer, |_| {}));
        let imported = import(reader, path, &[], progress);
        let exported = exporter.join().expect("the export thread does not panic");
        // When the import gives up first, the export fails on the closed pipe: the import's error says why.
        let imported = imported?;
        exported?;
        Ok(imported)
    })
}

/// A bounded in-memory byte pipe between two threads, `chunks` of up to 1 MiB in flight.
pub fn pipe(chunks: usize) -> (PipeWriter, PipeReader) {
    let (sender, receiver) = std::sync::mpsc::sync_channel(chunks);
    (PipeWriter { sender, buffer: Vec::new() }, PipeReader { receiver, current: Vec::new(), offset: 0 })
}

const PIPE_CHUNK: usize = 1024 * 1024;

pub struct PipeWriter {
    sender: std::sync::mpsc::SyncSender<Vec<u8>>,
    buffer: Vec<u8>,
}

impl PipeWriter {
    /// Hands over a chunk as it is (for producers that already cut their data).
    pub fn send_chunk(&self, chunk: Vec<u8>) -> std::io::Result<()> {
        self.sender
            .send(chunk)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the pipe's reader is gone"))
    }
}

impl Write for PipeWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= PIPE_CHUNK {
            self.flush()?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buffer, Vec::with_capacity(PIPE_CHUNK));
        self.send_chunk(chunk)
    }
}

pub struct PipeReader {
    receiver: std::sync::mpsc::Receiver<Vec<u8>>,
    current: Vec<u8>,
    offset: usize,
}

impl Read for PipeReader {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        while self.offset == self.current.len() {
            match self.receiver.recv() {
                Ok(chunk) => {
                    self.current = chunk;
                    self.offset = 0;
                }
                // The writer is gone: the end of the data.
                Err(_) => return Ok(0),
            }
        }
        let count = buffer.len().min(self.current.len() - self.offset);
        buffer[..count].copy_from_slice(&self.current[self.offset..self.offset + count]);
        self.offset += count;
        Ok(count)
    }
}

fn begin(database: &Database, durable: bool) -> Result<WriteTransaction, StateError> {
    let mut transaction = database.begin_write()?;
    transaction.set_durability(if durable { Durability::Immediate } else { Durability::None })?;
    Ok(transaction)
}

fn insert(transaction: &WriteTransaction, tag: u8, key: &[u8], value: &[u8]) -> Result<(), StateError> {
    match (tag, tables::by_tag(tag)) {
        (TABLE_KEY_INDEX, _) => {
            transaction.open_table(KEY_INDEX)?.insert(key, value)?;
        }
        (_, Some(table)) => table.import(transaction, key, value)?,
        (other, None) => return Err(corrupt(&format!("unknown table tag {other}"))),
    }
    Ok(())
}

fn corrupt(what: &str) -> StateError {
    StateError::Corrupt(format!("backend image: {what}"))
}

fn image_io(source: std::io::Error) -> StateError {
    StateError::Io { path: "<backend image>".into(), source }
}

struct ImageWriter<W: Write> {
    out: W,
    hasher: Sha256,
    bytes: u64,
    records: u64,
    reported: u64,
}

impl<W: Write> ImageWriter<W> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), StateError> {
        self.out.write_all(bytes).map_err(image_io)?;
        self.hasher.update(bytes);
        self.bytes += bytes.len() as u64;
        Ok(())
    }

    fn record(&mut self, table: u8, key: &[u8], value: &[u8]) -> Result<(), StateError> {
        self.write(&[table])?;
        self.write(&(key.len() as u32).to_be_bytes())?;
        self.write(key)?;
        self.write(&(value.len() as u32).to_be_bytes())?;
        self.write(value)?;
        self.records += 1;
        Ok(())
    }

    fn report(&mut self, progress: &mut impl FnMut(u64)) {
        if self.bytes - self.reported >= 64 * 1024 * 1024 {
            self.reported = self.bytes;
            progress(self.bytes);
        }
    }
}

struct ImageReader<R: Read> {
    input: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> ImageReader<R> {
    fn read(&mut self, buffer: &mut [u8]) -> Result<(), StateError> {
        self.input.read_exact(buffer).map_err(|error| match error.kind() {
            std::io::ErrorKind::UnexpectedEof => corrupt("the image is cut short"),
            _ => image_io(error),
        })?;
        self.hasher.update(&*buffer);
        self.bytes += buffer.len() as u64;
        Ok(())
    }

    fn field(&mut self) -> Result<Vec<u8>, StateError> {
        let mut length = [0u8; 4];
        self.read(&mut length)?;
        let length = u32::from_be_bytes(length);
        if length > MAX_FIELD {
            return Err(corrupt(&format!("a field of {length} bytes")));
        }
        let mut field = vec![0u8; length as usize];
        self.read(&mut field)?;
        Ok(field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Backend;
    use crate::backend::{KEY_HEADS, KEY_REVISIONS, KV, LEASE_KEYS, LEASES, MEMBERS};
    use redb::ReadableTableMetadata;

    fn filled(dir: &Path) -> Backend {
        let backend = Backend::open(&dir.join("db")).unwrap();
        let transaction = backend.begin_write(true).unwrap();
        {
            let mut kv = transaction.open_table(KV).unwrap();
            for main in 2..500u64 {
                kv.insert((main, 0), format!("value {main}").as_bytes()).unwrap();
            }
            let head = crate::mvcc::index::Head { latest: crate::Revision::new(499, 0), deleted: false };
            transaction.open_table(KEY_HEADS).unwrap().insert(b"a".as_slice(), head.encode().as_slice()).unwrap();
            let mut revisions = transaction.open_table(KEY_REVISIONS).unwrap();
            revisions.insert((b"a".as_slice(), 498, 0), 1).unwrap();
            revisions.insert((b"a".as_slice(), 499, 0), 0).unwrap();
            let lease = keel_api::keelpb::LeaseRecord { id: 7, ttl: 60, ..Default::default() };
            let lease = prost::Message::encode_to_vec(&lease);
            transaction.open_table(LEASES).unwrap().insert(7, lease.as_slice()).unwrap();
            transaction.open_table(LEASE_KEYS).unwrap().insert((7, b"a".as_slice()), ()).unwrap();
            transaction.open_table(MEMBERS).unwrap().insert(9, b"member".as_slice()).unwrap();
            let mut meta_table = transaction.open_table(META).unwrap();
            meta_table.insert(meta::APPLIED_INDEX, 42u64.to_be_bytes().as_slice()).unwrap();
            meta_table.insert(meta::APPLIED_TERM, 3u64.to_be_bytes().as_slice()).unwrap();
            meta_table.insert(meta::MEMBER_ID, 1u64.to_be_bytes().as_slice()).unwrap();
        }
        transaction.commit().unwrap();
        backend
    }

    fn dump(backend: &Backend) -> Vec<u8> {
        let mut bytes = Vec::new();
        export(backend, &[], &mut bytes, |_| {}).unwrap();
        bytes
    }

    #[test]
    fn an_image_rebuilds_the_same_tables_and_keeps_the_local_identity() {
        let dir = tempfile::tempdir().unwrap();
        let source = filled(dir.path());
        let mut image = Vec::new();
        let exported = export(&source, &[meta::MEMBER_ID], &mut image, |_| {}).unwrap();
        assert_eq!((exported.applied_index, exported.applied_term), (42, 3));
        let copy = dir.path().join("copy");
        let local = 5u64.to_be_bytes();
        let imported = import(image.as_slice(), &copy, &[(meta::MEMBER_ID, &local)], |_| {}).unwrap();
        assert_eq!(imported, exported);

        let rebuilt = Backend::open(&copy).unwrap();
        let transaction = rebuilt.begin_read().unwrap();
        assert_eq!(read_u64(&transaction.open_table(META).unwrap(), meta::MEMBER_ID).unwrap(), 5);
        drop(transaction);
        // Apart from the member's own id, the two stores export byte for byte the same image.
        let skip = [meta::MEMBER_ID];
        let mut left = Vec::new();
        let mut right = Vec::new();
        export(&source, &skip, &mut left, |_| {}).unwrap();
        export(&rebuilt, &skip, &mut right, |_| {}).unwrap();
        assert_eq!(left, right);
        assert_ne!(dump(&source), dump(&rebuilt));
    }

    #[test]
    fn a_damaged_or_short_image_is_refused_and_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let image = dump(&filled(dir.path()));
        let target = dir.path().join("copy");
        let mut flipped = image.clone();
        flipped[image.len() / 2] ^= 0x40;
        for (damaged, why) in [(flipped, "flipped byte"), (image[..image.len() - 5].to_vec(), "cut short")] {
            let error = import(damaged.as_slice(), &target, &[], |_| {}).expect_err(why);
            assert!(matches!(error, StateError::Corrupt(_)), "{why}: {error}");
            assert!(!target.exists(), "{why}: partial file left behind");
        }
    }

    #[test]
    fn a_copy_is_the_same_store_in_a_smaller_file() {
        let dir = tempfile::tempdir().unwrap();
        let backend = filled(dir.path());
        // Churn: overwrite and remove most of the kv table, leaving free pages in the file.
        for round in 0..20u64 {
            let transaction = backend.begin_write(true).unwrap();
            {
                let mut kv = transaction.open_table(KV).unwrap();
                for main in 1000..1500u64 {
                    kv.insert((main, round), vec![round as u8; 4000].as_slice()).unwrap();
                }
            }
            transaction.commit().unwrap();
            let transaction = backend.begin_write(true).unwrap();
            transaction.open_table(KV).unwrap().retain(|(main, _), _| main < 1000).unwrap();
            transaction.commit().unwrap();
        }
        let copy = dir.path().join("copy");
        let info = super::copy(&backend, &copy, |_| {}).unwrap();
        assert_eq!(info.applied_index, 42);
        let copied = Backend::open(&copy).unwrap();
        assert_eq!(dump(&copied), dump(&backend));
        assert!(copied.file_size() < backend.file_size() / 2, "{} vs {}", copied.file_size(), backend.file_size());
    }

    #[test]
    fn replacing_the_database_keeps_old_readers_working() {
        let dir = tempfile::tempdir().unwrap();
        let backend = filled(dir.path());
        let old_reader = backend.begin_read().unwrap();
        let old_view = crate::mvcc::ReadView::open(&backend).unwrap();
        let empty = Backend::open(&dir.path().join("empty")).unwrap();
        let image = dump(&empty);
        drop(empty);
        let incoming = dir.path().join("incoming");
        import(image.as_slice(), &incoming, &[], |_| {}).unwrap();
        backend.replace_with(&incoming).unwrap();
        assert!(!incoming.exists());
        assert_eq!(old_reader.open_table(KV).unwrap().len().unwrap(), 498);
        let lease = old_view.lease(7).unwrap().map(|(record, _)| record.ttl);
        assert_eq!(lease, Some(60), "a view opened before the switch still reads");
        let new_reader = backend.begin_read().unwrap();
        assert_eq!(new_reader.open_table(KV).unwrap().len().unwrap(), 0);
        drop(new_reader);
        // And the replaced database takes writes.
        let transaction = backend.begin_write(true).unwrap();
        transaction.open_table(KV).unwrap().insert((2, 0), b"x".as_slice()).unwrap();
        transaction.commit().unwrap();
    }
}
