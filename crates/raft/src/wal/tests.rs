//! Scenario tests of the write-ahead log, and helpers shared with
//! `recovery_tests`.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::record::{Decoded, decode_at};
use super::*;

pub(super) const SMALL: WalOptions = WalOptions { segment_bytes: 256, fsync_delay: Duration::ZERO };

pub(super) fn entry(index: u64, tag: &str) -> Record {
    Record::Entry { index, bytes: format!("{tag}-{index}").into_bytes() }
}

pub(super) fn entries(indexes: std::ops::RangeInclusive<u64>, tag: &str) -> Vec<Record> {
    indexes.map(|index| entry(index, tag)).collect()
}

pub(super) fn expected(indexes: std::ops::RangeInclusive<u64>, tag: &str) -> Vec<(u64, Vec<u8>)> {
    indexes.map(|index| (index, format!("{tag}-{index}").into_bytes())).collect()
}

pub(super) fn open(dir: &Path, options: WalOptions) -> (Wal, Replay) {
    Wal::open(dir, options).expect("open wal")
}

pub(super) fn reopen(wal: Wal, options: WalOptions) -> (Wal, Replay) {
    let dir = wal.dir().to_path_buf();
    drop(wal);
    open(&dir, options)
}

pub(super) fn write_synced(wal: &mut Wal, records: &[Record]) -> SyncStats {
    wal.append(records).expect("append");
    wal.sync().expect("sync")
}

pub(super) fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "wal"))
        .collect();
    files.sort();
    files
}

/// Start offsets of the frames of a segment file.
pub(super) fn frame_offsets(path: &Path) -> Vec<usize> {
    let bytes = fs::read(path).unwrap();
    let mut offsets = Vec::new();
    let mut offset = 0;
    while let Decoded::Record { next_offset, .. } = decode_at(&bytes, offset) {
        offsets.push(offset);
        offset = next_offset;
    }
    offsets
}

pub(super) fn write_bytes_at(path: &Path, offset: u64, bytes: &[u8]) {
    let file = OpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(bytes, offset).unwrap();
}

pub(super) fn copy_dir(from: &Path) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    for path in segment_files(from) {
        fs::copy(&path, copy.path().join(path.file_name().unwrap())).unwrap();
    }
    copy
}

#[test]
fn fresh_log_is_empty_with_one_preallocated_segment() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, replay) =
        open(&dir.path().join("nested/wal"), WalOptions { segment_bytes: 4096, ..WalOptions::default() });
    assert_eq!(replay, Replay::default());
    let files = segment_files(wal.dir());
    assert_eq!(files.len(), 1);
    assert!(files[0].ends_with("0000000000000000-0000000000000000.wal"));
    assert_eq!(fs::metadata(&files[0]).unwrap().len(), 4096);
    assert_eq!(wal.last_index(), 0);
}

#[test]
fn round_trip_and_replay_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = open(dir.path(), WalOptions::default());
    let mut records = entries(1..=10, "a");
    records.push(Record::State(b"hard-state-1".to_vec()));
    let stats = write_synced(&mut wal, &records);
    let frame_bytes: usize = records.iter().map(Record::frame_len).sum();
    assert_eq!(stats.bytes_written, frame_bytes as u64);
    assert_eq!(stats.segments_cut, 0);

    let (mut wal, replay) = reopen(wal, WalOptions::default());
    assert_eq!(replay.entries, expected(1..=10, "a"));
    assert_eq!(replay.state.as_deref(), Some(&b"hard-state-1"[..]));
    assert_eq!(replay.snapshot, None);
    assert!(!replay.repaired_tail);
    assert_eq!(wal.last_index(), 10);

    write_synced(&mut wal, &[entry(11, "a"), Record::State(b"hard-state-2".to_vec())]);
    let (_wal, replay) = reopen(wal, WalOptions::default());
    assert_eq!(replay.entries, expected(1..=11, "a"));
    assert_eq!(replay.state.as_deref(), Some(&b"hard-state-2"[..]));
}

#[test]
fn unsynced_records_are_lost_on_drop() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = open(dir.path(), SMALL);
    write_synced(&mut wal, &entries(1..=3, "a"));
    wal.append(&entries(4..=30, "a")).unwrap();
    let (_wal, replay) = reopen(wal, SMALL);
    assert_eq!(replay.entries, expected(1..=3, "a"));
    assert!(!replay.repaired_tail);
}

#[test]
fn empty_sync_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = open(dir.path(), SMALL);
    assert_eq!(wal.sync().unwrap(), SyncStats::default());
}

#[test]
fn overwritten_suffix_replaces_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = open(dir.path(), SMALL);
    write_synced(&mut wal, &entries(1..=30, "old"));
    assert!(segment_files(dir.path()).len() > 2, "the overwrite should reach back across segments");
    write_synced(&mut wal, &entries(5..=7, "new"));
    assert_eq!(wal.last_index(), 7);
    let (_wal, replay) = reopen(wal, SMALL);
    let mut want = expected(1..=4, "old");
    want.extend(expected(5..=7, "new"));
    assert_eq!(replay.entries, want);
}

#[test]
fn snapshot_hides_covered_entries_and_lowest_snapshot_never_wins() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = open(dir.path(), SMALL);
    write_synced(&mut wal, &entries(1..=10, "a"));
    let snapshots = [Record::Snapshot { index: 6, term: 2 }, Record::Snapshot { index: 4, term: 1 }];
    write_synced(&mut wal, &snapshots);
    let (mut wal, replay) = reopen(wal, SMALL);
    assert_eq!(replay.snapshot, Some((6, 2)));
    assert_eq!(replay.entries, expected(7..=10, "a"));

    // A follower installing a snapshot past its log continues after it.
    write_synced(&mut wal, &[Record::Snapshot { index: 50, term: 3 }, entry(51, "b")]);
    let (wal, replay) = reopen(wal, SMALL);
    assert_eq!(replay.snapshot, Some((50, 3)));
    assert_eq!(replay.entries, expected(51..=51, "b"));
    assert_eq!(wal.last_index(), 51);
}

#[test]
fn append_rejects_a_gap_and_keeps_nothing_of_the_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = open(dir.path(), SMALL);
    write_synced(&mut wal, &entries(1..=2, "a"));
    let error = wal.append(&[entry(3, "a"), entry(5, "a")]).unwrap_err();
    assert!(matches!(error, WalError::NonContiguousAppend { index: 5, next_allowed: 4 }), "{error}");
    assert_eq!(wal.sync().unwrap().bytes_written, 0);
    let error = wal.append(&[entry(4, "a")]).unwrap_err();
    assert!(matches!(error, WalError::NonContiguousAppend { index: 4, next_allowed: 3 }), "{error}");
    write_synced(&mut wal, &[Record::Snapshot { index: 9, term: 1 }, entry(10, "a")]);
}

#[test]
fn rotation_then_release_keeps_state_and_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = open(dir.path(), SMALL);
    write_synced(&mut wal, &[Record::State(b"vote-for-2".to_vec())]);
    let mut cuts = 0;
    for first in (1..=60).step_by(5) {
        cuts += write_synced(&mut wal, &entries(first..=first + 4, "a")).segments_cut;
    }
    let files = segment_files(dir.path());
    assert_eq!(files.len(), cuts + 1);
    assert!(files.len() >= 5, "only {} segments", files.len());
    for (sequence, path) in files.iter().enumerate() {
        let name = path.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with(&format!("{sequence:016x}-")), "{name}");
        assert!(fs::metadata(path).unwrap().len() >= SMALL.segment_bytes);
    }

    // Unsynced snapshots release nothing; synced ones release whole segments.
    wal.append(&[Record::Snapshot { index: 45, term: 7 }]).unwrap();
    assert_eq!(wal.release_to(45).unwrap(), 0);
    wal.sync().unwrap();
    let removed = wal.release_to(1_000).unwrap();
    assert!(removed >= 3, "removed {removed}");
    let remaining = segment_files(dir.path());
    assert_eq!(remaining.len(), files.len() - removed);
    assert_eq!(remaining[..], files[removed..]);
    let (mut wal, replay) = reopen(wal, SMALL);
    assert_eq!(replay.snapshot, Some((45, 7)));
    assert_eq!(replay.state.as_deref(), Some(&b"vote-for-2"[..]));
    assert_eq!(replay.entries, expected(46..=60, "a"));

    // Compacting everything leaves only the last segment, whose header keeps both.
    write_synced(&mut wal, &[Record::Snapshot { index: 60, term: 8 }]);
    write_synced(&mut wal, &entries(61..=80, "b"));
    assert!(wal.release_to(60).unwrap() >= 1);
    let (_wal, replay) = reopen(wal, SMALL);
    assert_eq!(replay.snapshot, Some((60, 8)));
    assert_eq!(replay.state.as_deref(), Some(&b"vote-for-2"[..]));
    assert_eq!(replay.entries, expected(61..=80, "b"));
}

#[test]
fn record_larger_than_a_segment_gets_its_own_segment() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = open(dir.path(), SMALL);
    let big = Record::Entry { index: 2, bytes: vec![7; 1000] };
    write_synced(&mut wal, &[entry(1, "a"), big.clone(), entry(3, "a")]);
    let (_wal, replay) = reopen(wal, SMALL);
    assert_eq!(replay.entries.len(), 3);
    assert_eq!(replay.entries[1], (2, vec![7; 1000]));
}

#[test]
fn leftover_prepared_files_are_removed_and_the_directory_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let stray = dir.path().join("0000000000000099.wal.tmp");
    fs::write(&stray, b"junk").unwrap();
    let (wal, _) = open(dir.path(), SMALL);
    assert!(!stray.exists());
    let error = Wal::open(dir.path(), SMALL).err().unwrap();
    assert!(matches!(error, WalError::Locked { .. }), "{error}");
    drop(wal);
    let leftovers = fs::read_dir(dir.path()).unwrap().filter(|entry| {
        let name = entry.as_ref().unwrap().file_name();
        name.to_string_lossy().ends_with(".tmp")
    });
    assert_eq!(leftovers.count(), 0, "dropping the wal removes its prepared file");
    open(dir.path(), SMALL);
}

#[test]
fn handles_and_errors_can_cross_threads() {
    fn assert_send<T: Send>() {}
    fn assert_error<T: std::error::Error + Send + Sync + 'static>() {}
    assert_send::<Wal>();
    assert_error::<WalError>();
}

#[test]
fn zero_segment_size_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let error = Wal::open(dir.path(), WalOptions { segment_bytes: 0, ..WalOptions::default() }).err().unwrap();
    assert!(matches!(error, WalError::InvalidOptions(_)));
}
