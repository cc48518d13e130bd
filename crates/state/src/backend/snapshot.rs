//! Backup snapshots: what `Maintenance.Snapshot` streams and `keelctl snapshot` saves, checks and
//! restores.
//!
//! A snapshot is a backend [image](super::image) without the member's identity, zero-padded to a
//! multiple of 512 bytes, then the SHA-256 of everything before it. That is etcd's outer shape: `etcdctl
//! snapshot save` accepts a stream only if its size is 32 more than a multiple of 512, and restore tools
//! check that the last 32 bytes are the SHA-256 of the rest. The content is Keel's image, not a bbolt
//! file, so etcd's tools can save a Keel snapshot but not read or restore it.
//!
//! A restored file is the first state of a new cluster: its Raft history starts over (applied index 0)
//! while the store keeps every revision, and it carries the new cluster's ids.

use super::image::{self, ImageInfo};
use super::{Backend, MEMBERS, META, meta};
use crate::error::StateError;
use crate::mvcc::{ReadView, Reader};
use sha2::{Digest, Sha256};
use std::io::{BufReader, Read, Write};
use std::path::Path;

/// Snapshots are padded to whole sectors of this size before their checksum.
pub const SECTOR: u64 = 512;
const DIGEST: u64 = 32;

/// What a written snapshot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub image: ImageInfo,
    /// The whole snapshot's size, checksum included.
    pub bytes: u64,
    pub sha256: [u8; 32],
}

/// Writes a snapshot of `backend` to `out`. `progress` hears the bytes written so far, now and then.
pub fn write(backend: &Backend, out: impl Write, progress: impl FnMut(u64)) -> Result<SnapshotInfo, StateError> {
    let mut out = Hashing { out, hasher: Sha256::new(), bytes: 0 };
    let image = image::export(backend, &[meta::CLUSTER_ID, meta::MEMBER_ID], &mut out, progress)?;
    let padding = (SECTOR - out.bytes % SECTOR) % SECTOR;
    out.write_all(&vec![0u8; padding as usize]).map_err(io)?;
    let sha256: [u8; 32] = out.hasher.finalize_reset().into();
    out.out.write_all(&sha256).map_err(io)?;
    out.out.flush().map_err(io)?;
    Ok(SnapshotInfo { image, bytes: out.bytes + DIGEST, sha256 })
}

/// Checks a snapshot file's size and trailing SHA-256; returns its checksum.
pub fn verify(path: &Path, mut progress: impl FnMut(u64)) -> Result<[u8; 32], StateError> {
    let file = std::fs::File::open(path).map_err(|source| StateError::Io { path: path.into(), source })?;
    let size = file.metadata().map_err(|source| StateError::Io { path: path.into(), source })?.len();
    if size % SECTOR != DIGEST || size < SECTOR + DIGEST {
        return Err(StateError::Corrupt(format!(
            "{}: {size} bytes is not a snapshot's size (a multiple of {SECTOR} plus its {DIGEST}-byte SHA-256); \
             was the file cut short or is it not a Keel snapshot?",
            path.display()
        )));
    }
    let mut reader = BufReader::with_capacity(1024 * 1024, file);
    let mut hasher = Sha256::new();
    let mut remaining = size - DIGEST;
    let mut buffer = vec![0u8; 1024 * 1024];
    while remaining > 0 {
        let take = remaining.min(buffer.len() as u64) as usize;
        reader.read_exact(&mut buffer[..take]).map_err(|source| StateError::Io { path: path.into(), source })?;
        hasher.update(&buffer[..take]);
        remaining -= take as u64;
        progress(size - DIGEST - remaining);
    }
    let mut stored = [0u8; 32];
    reader.read_exact(&mut stored).map_err(|source| StateError::Io { path: path.into(), source })?;
    let computed: [u8; 32] = hasher.finalize().into();
    if computed != stored {
        return Err(StateError::Corrupt(format!(
            "{}: the SHA-256 at the end of the snapshot does not match its content; the file is damaged, take \
             another snapshot",
            path.display()
        )));
    }
    Ok(stored)
}

/// Who a restored store belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestoredIdentity {
    pub cluster_id: u64,
    pub member_id: u64,
}

/// Builds the backend file `db` of a member of a new cluster from a snapshot: checks the snapshot (unless
/// told not to), imports it, and makes it the new cluster's first state — no Raft history, no members'
/// published attributes, no defragmentation claim, the new ids. Every revision, lease and alarm stays.
pub fn restore(
    snapshot: &Path,
    db: &Path,
    identity: RestoredIdentity,
    check_hash: bool,
    progress: impl FnMut(u64),
) -> Result<ImageInfo, StateError> {
    if check_hash {
        verify(snapshot, |_| {})?;
    }
    if let Some(parent) = db.parent() {
        std::fs::create_dir_all(parent).map_err(|source| StateError::Io { path: parent.into(), source })?;
    }
    let file = std::fs::File::open(snapshot).map_err(|source| StateError::Io { path: snapshot.into(), source })?;
    let cluster = identity.cluster_id.to_be_bytes();
    let member = identity.member_id.to_be_bytes();
    let local: [(&str, &[u8]); 2] = [(meta::CLUSTER_ID, &cluster), (meta::MEMBER_ID, &member)];
    let info = image::import(BufReader::with_capacity(1024 * 1024, file), db, &local, progress)?;
    let backend = Backend::open(db)?;
    let transaction = backend.begin_write(true)?;
    {
        let mut meta_table = transaction.open_table(META)?;
        meta_table.remove(meta::CONF_STATE)?;
        meta_table.remove(meta::DEFRAG_CLAIM)?;
        meta_table.insert(meta::APPLIED_INDEX, 0u64.to_be_bytes().as_slice())?;
        meta_table.insert(meta::APPLIED_TERM, 0u64.to_be_bytes().as_slice())?;
        transaction.open_table(MEMBERS)?.retain(|_, _| false)?;
    }
    transaction.commit()?;
    Ok(info)
}

/// What `keelctl snapshot status` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// The store's HashKV at `revision` (what `etcdctl endpoint hashkv` shows for a member at that revision).
    pub hash: u32,
    pub revision: i64,
    pub compact_revision: i64,
    /// Keys with a current value.
    pub total_keys: u64,
    /// The snapshot file's size.
    pub total_size: u64,
    pub sha256: [u8; 32],
}

/// Checks a snapshot and reads what it holds (by importing it into a scratch file in `scratch_dir`).
pub fn status(snapshot: &Path, scratch_dir: &Path) -> Result<Status, StateError> {
    let sha256 = verify(snapshot, |_| {})?;
    let total_size =
        std::fs::metadata(snapshot).map_err(|source| StateError::Io { path: snapshot.into(), source })?.len();
    let scratch = scratch_dir.join(format!(".keel-snapshot-status-{}.db", std::process::id()));
    let file = std::fs::File::open(snapshot).map_err(|source| StateError::Io { path: snapshot.into(), source })?;
    let result = image::import(BufReader::with_capacity(1024 * 1024, file), &scratch, &[], |_| {}).and_then(|_| {
        let backend = Backend::open(&scratch)?;
        let view = ReadView::open(&backend)?;
        let revision = view.revision();
        let compact_revision = view.compact_revision();
        let (hash, _) = view.hash_kv(0)?;
        Ok(Status { hash, revision, compact_revision, total_keys: view.key_count()?, total_size, sha256 })
    });
    let _ = std::fs::remove_file(&scratch);
    result
}

struct Hashing<W: Write> {
    out: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let written = self.out.write(bytes)?;
        self.hasher.update(&bytes[..written]);
        self.bytes += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

fn io(source: std::io::Error) -> StateError {
    StateError::Io { path: "<snapshot>".into(), source }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::KV;
    use redb::ReadableTable;

    #[test]
    fn a_snapshot_has_etcds_shape_restores_and_detects_damage() {
        let dir = tempfile::tempdir().unwrap();
        let backend = Backend::open(&dir.path().join("db")).unwrap();
        let transaction = backend.begin_write(true).unwrap();
        {
            let mut kv = transaction.open_table(KV).unwrap();
            for main in 1..=50u64 {
                kv.insert((main, 0), vec![main as u8; 300].as_slice()).unwrap();
            }
            let mut meta_table = transaction.open_table(META).unwrap();
            meta_table.insert(meta::REVISION, 50u64.to_be_bytes().as_slice()).unwrap();
            meta_table.insert(meta::APPLIED_INDEX, 77u64.to_be_bytes().as_slice()).unwrap();
            meta_table.insert(meta::MEMBER_ID, 9u64.to_be_bytes().as_slice()).unwrap();
            meta_table.insert(meta::CONF_STATE, b"old".as_slice()).unwrap();
            transaction.open_table(MEMBERS).unwrap().insert(9u64, b"old member".as_slice()).unwrap();
        }
        transaction.commit().unwrap();

        let path = dir.path().join("backup.snap");
        let info = write(&backend, std::fs::File::create(&path).unwrap(), |_| {}).unwrap();
        let size = std::fs::metadata(&path).unwrap().len();
        assert_eq!(size, info.bytes);
        assert_eq!(size % SECTOR, DIGEST, "etcdctl's hasChecksum: size % 512 == 32");
        assert_eq!(verify(&path, |_| {}).unwrap(), info.sha256);

        let restored = dir.path().join("restored/member/snap/db");
        let identity = RestoredIdentity { cluster_id: 0xc1, member_id: 0xa1 };
        let image = restore(&path, &restored, identity, true, |_| {}).unwrap();
        assert_eq!(image.revision, 50);
        let backend = Backend::open(&restored).unwrap();
        let read = backend.begin_read().unwrap();
        let meta_table = read.open_table(META).unwrap();
        assert_eq!(super::super::read_u64(&meta_table, meta::APPLIED_INDEX).unwrap(), 0);
        assert_eq!(super::super::read_u64(&meta_table, meta::MEMBER_ID).unwrap(), 0xa1);
        assert_eq!(super::super::read_u64(&meta_table, meta::CLUSTER_ID).unwrap(), 0xc1);
        assert!(meta_table.get(meta::CONF_STATE).unwrap().is_none());
        assert_eq!(read.open_table(MEMBERS).unwrap().iter().unwrap().count(), 0);
        assert_eq!(read.open_table(KV).unwrap().iter().unwrap().count(), 50);

        // One flipped byte in the middle, and a cut-short file, are refused.
        let mut bytes = std::fs::read(&path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(verify(&path, |_| {}).is_err());
        assert!(restore(&path, &dir.path().join("other/db"), identity, true, |_| {}).is_err());
        std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
        assert!(verify(&path, |_| {}).is_err());
    }
}
