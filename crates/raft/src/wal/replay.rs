//! Reading the segments back in order, and repairing a torn tail.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use super::Replay;
use super::error::{IoContext, WalError};
use super::record::{Decoded, Record, decode_at, is_all_zero};
use super::segment::{SegmentInfo, open_segment, preallocate, sync_data};

/// Folds records, in log order, into what a reader needs.
#[derive(Debug, Default)]
pub(crate) struct ReplayBuilder {
    snapshot: Option<(u64, u64)>,
    state: Option<Vec<u8>>,
    /// The live log: contiguous indexes, possibly starting at or below the snapshot.
    entries: Vec<(u64, Vec<u8>)>,
    /// Index of the last entry record applied, or where the first segment
    /// read says the log stood before it.
    last_entry_index: u64,
}

impl ReplayBuilder {
    /// A builder for a log whose oldest kept segment is named `first_index`.
    fn starting_before(first_index: u64) -> Self {
        ReplayBuilder { last_entry_index: first_index.saturating_sub(1), ..ReplayBuilder::default() }
    }

    /// One less than the name a segment cut at this point would get.
    fn position(&self) -> u64 {
        let snapshot_index = self.snapshot.map_or(0, |(index, _)| index);
        self.last_entry_index.max(snapshot_index)
    }

    pub(crate) fn apply(&mut self, record: Record) {
        match record {
            Record::Entry { index, bytes } => self.apply_entry(index, bytes),
            Record::State(bytes) => self.state = Some(bytes),
            Record::Snapshot { index, term } => self.apply_snapshot(index, term),
        }
    }

    /// An index at or below the last one replaces that suffix (raft overwrote
    /// a conflicting tail); an index past a hole starts the log afresh (only
    /// legitimate right after a snapshot, which `finish` checks).
    fn apply_entry(&mut self, index: u64, bytes: Vec<u8>) {
        self.last_entry_index = index;
        if let (Some(&(first, _)), Some(&(last, _))) = (self.entries.first(), self.entries.last()) {
            if index <= last {
                let kept = usize::try_from(index.saturating_sub(first)).unwrap_or(usize::MAX);
                self.entries.truncate(kept);
            } else if index > last + 1 {
                self.entries.clear();
            }
        }
        self.entries.push((index, bytes));
    }

    /// Keeps the highest snapshot and drops the entries it covers.
    fn apply_snapshot(&mut self, index: u64, term: u64) {
        if self.snapshot.is_some_and(|(current, _)| current > index) {
            return;
        }
        self.snapshot = Some((index, term));
        let covered = self.entries.partition_point(|&(entry_index, _)| entry_index <= index);
        self.entries.drain(..covered);
    }

    /// The entries after the snapshot, which must follow it without a hole.
    pub(crate) fn finish(mut self, repaired_tail: bool) -> Result<Replay, WalError> {
        let snapshot_index = self.snapshot.map_or(0, |(index, _)| index);
        let covered = self.entries.partition_point(|&(index, _)| index <= snapshot_index);
        self.entries.drain(..covered);
        if let Some(&(first, _)) = self.entries.first()
            && first != snapshot_index + 1
        {
            return Err(WalError::EntryGap { expected: snapshot_index + 1, found: first });
        }
        Ok(Replay { snapshot: self.snapshot, state: self.state, entries: self.entries, repaired_tail })
    }
}

/// Where scanning one segment stopped.
struct ScanOutcome {
    /// Offset just past the last good record.
    end: u64,
    /// Why scanning stopped before a clean, all-zero end, if it did.
    damage: Option<&'static str>,
}

/// Applies every good record of `buffer` to `builder`. A record whose
/// checksum matches but whose content is impossible is always an error.
fn scan_segment(path: &Path, buffer: &[u8], builder: &mut ReplayBuilder) -> Result<ScanOutcome, WalError> {
    let mut offset = 0;
    loop {
        let damage = match decode_at(buffer, offset) {
            Decoded::Record { record, next_offset } => {
                builder.apply(record);
                offset = next_offset;
                continue;
            }
            Decoded::End if is_all_zero(&buffer[offset..]) => None,
            Decoded::End => Some("non-zero bytes after the last record"),
            Decoded::Torn(reason) => Some(reason),
            Decoded::Malformed(reason) => {
                return Err(WalError::Corrupt { path: path.to_path_buf(), offset: offset as u64, reason });
            }
        };
        return Ok(ScanOutcome { end: offset as u64, damage });
    }
}

/// The last segment, ready for appending.
pub(crate) struct Tail {
    pub file: File,
    /// Offset just past the last good record.
    pub offset: u64,
    pub repaired: bool,
}

/// Replays all segments in order. Damage in any segment but the last is
/// corruption; damage in the last is a torn write, cut off and zeroed.
pub(crate) fn replay_segments(segments: &[SegmentInfo], segment_bytes: u64) -> Result<(ReplayBuilder, Tail), WalError> {
    let mut builder = ReplayBuilder::starting_before(segments[0].first_index);
    for (segment, successor) in segments.iter().zip(&segments[1..]) {
        replay_sealed(segment, successor, &mut builder)?;
    }
    let last = segments.last().expect("the log always has a segment");
    let tail = replay_tail(&last.path, segment_bytes, &mut builder)?;
    Ok((builder, tail))
}

/// Replays a segment that was fdatasynced before `successor` was created:
/// it must end cleanly, exactly where `successor`'s name says it did.
fn replay_sealed(segment: &SegmentInfo, successor: &SegmentInfo, builder: &mut ReplayBuilder) -> Result<(), WalError> {
    let buffer = std::fs::read(&segment.path).at(&segment.path)?;
    let outcome = scan_segment(&segment.path, &buffer, builder)?;
    let reason = match outcome.damage {
        Some(reason) => reason,
        None if builder.position() + 1 == successor.first_index => return Ok(()),
        None => "records are missing: the next segment's name expects more",
    };
    Err(WalError::Corrupt { path: segment.path.clone(), offset: outcome.end, reason })
}

fn replay_tail(path: &Path, segment_bytes: u64, builder: &mut ReplayBuilder) -> Result<Tail, WalError> {
    let mut file = open_segment(path)?;
    let mut buffer = Vec::new();
    file.read_to_end(&mut buffer).at(path)?;
    let outcome = scan_segment(path, &buffer, builder)?;
    drop(buffer);
    if let Some(reason) = outcome.damage {
        repair_torn_tail(&file, path, outcome.end, segment_bytes, reason)?;
    } else {
        preallocate(&file, path, segment_bytes)?;
    }
    Ok(Tail { file, offset: outcome.end, repaired: outcome.damage.is_some() })
}

/// Cuts the file at `offset` and re-preallocates it, so that everything after
/// the last good record reads as zeros again, then makes that durable.
fn repair_torn_tail(file: &File, path: &Path, offset: u64, segment_bytes: u64, reason: &str) -> Result<(), WalError> {
    tracing::warn!(path = %path.display(), offset, reason, "repairing torn tail of the wal");
    file.set_len(offset).at(path)?;
    preallocate(file, path, segment_bytes)?;
    sync_data(file, path)
}
