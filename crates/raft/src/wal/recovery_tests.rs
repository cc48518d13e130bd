//! Torn-tail repair and corruption detection.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::record::{Decoded, FRAME_HEADER_BYTES, decode_at};
use super::tests::{
    SMALL, copy_dir, entries, entry, expected, frame_offsets, open, reopen, segment_files, write_bytes_at, write_synced,
};
use super::*;

/// Builds a log whose last synced batch is the single entry 4 and returns
/// the tail segment and the byte range of that entry's frame.
fn log_with_last_record(dir: &Path) -> (PathBuf, u64, u64) {
    let (mut wal, _) = open(dir, WalOptions { segment_bytes: 4096, ..WalOptions::default() });
    write_synced(&mut wal, &entries(1..=3, "a"));
    let start = wal.tail_offset;
    write_synced(&mut wal, &[entry(4, "a")]);
    (wal.tail_path().to_path_buf(), start, wal.tail_offset)
}

/// Opens a damaged copy, which must repair to entries 1..=3 and accept appends.
fn assert_repairs_to_first_three(dir: &Path, repaired: bool) {
    let options = WalOptions { segment_bytes: 4096, ..WalOptions::default() };
    let (mut wal, replay) = open(dir, options);
    assert_eq!(replay.repaired_tail, repaired);
    assert_eq!(replay.entries, expected(1..=3, "a"));
    write_synced(&mut wal, &[entry(4, "retry")]);
    let (_wal, replay) = reopen(wal, options);
    assert!(!replay.repaired_tail);
    let mut want = expected(1..=3, "a");
    want.extend(expected(4..=4, "retry"));
    assert_eq!(replay.entries, want);
}

#[test]
fn truncation_at_every_offset_of_the_last_record_is_repaired() {
    let original = tempfile::tempdir().unwrap();
    let (tail, start, end) = log_with_last_record(original.path());
    for cut in start..end {
        let copy = copy_dir(original.path());
        let path = copy.path().join(tail.file_name().unwrap());
        OpenOptions::new().write(true).open(&path).unwrap().set_len(cut).unwrap();
        // Cutting exactly at a frame boundary leaves a clean, shorter file.
        assert_repairs_to_first_three(copy.path(), cut != start);
    }
}

#[test]
fn zeroing_any_suffix_of_the_last_record_is_repaired() {
    let original = tempfile::tempdir().unwrap();
    let (tail, start, end) = log_with_last_record(original.path());
    for cut in start + 1..end {
        let copy = copy_dir(original.path());
        let path = copy.path().join(tail.file_name().unwrap());
        write_bytes_at(&path, cut, &vec![0; (end - cut) as usize]);
        assert_repairs_to_first_three(copy.path(), true);
    }
}

#[test]
fn garbage_after_the_last_record_is_repaired() {
    for garbage_offset in [0, 3, 100] {
        let dir = tempfile::tempdir().unwrap();
        let (tail, start, _end) = log_with_last_record(dir.path());
        OpenOptions::new().write(true).open(&tail).unwrap().set_len(start).unwrap();
        write_bytes_at(&tail, start + garbage_offset, &[0xa5; 13]);
        assert_repairs_to_first_three(dir.path(), true);
        let bytes = fs::read(&tail).unwrap();
        assert!(bytes[(start + entry(4, "retry").frame_len() as u64) as usize..].iter().all(|&b| b == 0));
    }
}

#[test]
fn flipped_bit_in_the_last_record_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (tail, start, _end) = log_with_last_record(dir.path());
    let mut byte = [0];
    let position = start + FRAME_HEADER_BYTES as u64 + 3;
    fs::File::open(&tail).unwrap().read_exact_at(&mut byte, position).unwrap();
    write_bytes_at(&tail, position, &[byte[0] ^ 1]);
    assert_repairs_to_first_three(dir.path(), true);
}

/// Three or more segments, each holding several frames.
fn log_with_segments(dir: &Path) -> Vec<PathBuf> {
    let (mut wal, _) = open(dir, SMALL);
    write_synced(&mut wal, &[Record::State(b"state".to_vec())]);
    write_synced(&mut wal, &entries(1..=40, "a"));
    drop(wal);
    let files = segment_files(dir);
    assert!(files.len() >= 3);
    files
}

fn assert_corrupt_at(dir: &Path, want_path: &Path, want_offset: u64) {
    match Wal::open(dir, SMALL) {
        Err(WalError::Corrupt { path, offset, reason }) => {
            assert_eq!((path.as_path(), offset), (want_path, want_offset), "{reason}");
        }
        Err(other) => panic!("expected corruption, got {other}"),
        Ok(_) => panic!("expected corruption, log opened"),
    }
}

#[test]
fn bad_checksum_in_a_middle_segment_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let files = log_with_segments(dir.path());
    let offsets = frame_offsets(&files[1]);
    let position = offsets[2] + FRAME_HEADER_BYTES + 2;
    write_bytes_at(&files[1], position as u64, &[0xff]);
    assert_corrupt_at(dir.path(), &files[1], offsets[2] as u64);
    let error = Wal::open(dir.path(), SMALL).err().unwrap().to_string();
    assert!(error.contains("0000000000000001-") && error.contains("offset"), "{error}");
}

#[test]
fn short_or_dirty_middle_segment_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let files = log_with_segments(dir.path());
    let offsets = frame_offsets(&files[1]);
    let end = fs::read(&files[1]).unwrap().len();
    write_bytes_at(&files[1], end as u64 - 1, &[1]);
    let after_last = {
        let bytes = fs::read(&files[1]).unwrap();
        match decode_at(&bytes, *offsets.last().unwrap()) {
            Decoded::Record { next_offset, .. } => next_offset as u64,
            other => panic!("{other:?}"),
        }
    };
    assert_corrupt_at(dir.path(), &files[1], after_last);
    let truncate_at = offsets[1] as u64 + 5;
    OpenOptions::new().write(true).open(&files[1]).unwrap().set_len(truncate_at).unwrap();
    assert_corrupt_at(dir.path(), &files[1], offsets[1] as u64);
}

#[test]
fn middle_segment_cut_at_a_frame_boundary_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let files = log_with_segments(dir.path());
    let last_frame = *frame_offsets(&files[1]).last().unwrap() as u64;
    let file = OpenOptions::new().write(true).open(&files[1]).unwrap();
    file.set_len(last_frame).unwrap();
    file.set_len(SMALL.segment_bytes).unwrap();
    assert_corrupt_at(dir.path(), &files[1], last_frame);
}

#[test]
fn checksummed_record_of_unknown_type_is_corrupt_even_at_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (tail, start, _end) = log_with_last_record(dir.path());
    let mut frame = Vec::new();
    Record::State(b"x".to_vec()).encode_into(&mut frame);
    frame[FRAME_HEADER_BYTES] = 9;
    let checksum = {
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&frame[..4]);
        hasher.update(&frame[FRAME_HEADER_BYTES..]);
        hasher.finalize()
    };
    frame[4..8].copy_from_slice(&checksum.to_le_bytes());
    write_bytes_at(&tail, start, &frame);
    match Wal::open(dir.path(), WalOptions { segment_bytes: 4096, ..WalOptions::default() }) {
        Err(WalError::Corrupt { offset, .. }) => assert_eq!(offset, start),
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("opened"),
    }
}

#[test]
fn missing_middle_segment_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let files = log_with_segments(dir.path());
    fs::remove_file(&files[1]).unwrap();
    let error = Wal::open(dir.path(), SMALL).err().unwrap();
    assert!(matches!(error, WalError::MissingSegment { expected_sequence: 1, .. }), "{error}");
}
