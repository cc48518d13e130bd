//! The raft write-ahead log: raft entries, hard states and snapshot markers,
//! made durable before raft acts on them.
//!
//! # Files
//!
//! A log is a directory of *segments* named `{sequence:016x}-{first_index:016x}.wal`
//! (lower-case hex). Sequence numbers are contiguous from the oldest segment
//! kept. `first_index` is one past the highest live entry index (or snapshot
//! index) when the segment was started, so every live entry written before
//! it is below `first_index`. Each segment is preallocated to
//! `segment_bytes` with zeros (fallocate, or `set_len` where unsupported);
//! only the last one is written to. A segment is prepared ahead of time as
//! `{sequence:016x}.wal.tmp`; files with that suffix are deleted on open.
//!
//! # Records
//!
//! A segment is a run of frames followed by zeros:
//!
//! ```text
//! length: u32 LE | crc32: u32 LE | type: u8 | payload
//! ```
//!
//! `length` counts the type byte and payload, so it is never 0; `crc32`
//! (crc32fast, IEEE) covers the length bytes, the type byte and the payload.
//! Types: 1 = entry (index u64 LE, then the entry bytes), 2 = hard state
//! (bytes), 3 = snapshot (index u64 LE, term u64 LE).
//!
//! Every segment starts with a header: the latest state and the highest
//! snapshot at the time it was cut (either may be absent). So a segment
//! together with those after it holds everything needed for replay, and
//! older segments can be deleted once a snapshot covers their entries.
//!
//! # Writing
//!
//! `append` only validates and encodes into memory. `sync` writes everything
//! buffered with positional writes and calls fdatasync once. When a frame
//! would overflow the current segment (and that segment holds more than its
//! header), the segment is *cut*: the old one is fdatasynced, the prepared
//! file gets the header, is fdatasynced, renamed to its final name, and the
//! directory is fsynced. A segment thus never exists under its final name
//! without its whole header. A single record larger than a segment gets a
//! segment to itself, which grows past `segment_bytes`. Any failure during
//! `sync` poisons the `Wal`: what reached the disk is unknown, so it must be
//! reopened (which replays and repairs) before it is written again.
//!
//! # Recovery rules
//!
//! Segments are read in sequence order; records are applied in order:
//! the last state wins, the highest snapshot wins (the later one on a tie),
//! and an entry whose index is at or below the last one replaces that suffix
//! of the log (raft overwrote a conflicting tail). Replay returns the entries
//! after the snapshot, which must start right after it and be contiguous
//! ([`WalError::EntryGap`]); `append` refuses entries that would break this.
//!
//! Reading a segment stops at the first frame that is not a whole,
//! checksummed record; normally that is a zero length field followed by
//! nothing but zeros. Then:
//! - in the **last** segment, a short frame, a checksum mismatch, or non-zero
//!   bytes after the stopping point are a *torn tail*, left by a crash during
//!   a write that was never acknowledged: the file is cut there, zeroed again
//!   up to `segment_bytes`, fdatasynced, and `Replay::repaired_tail` is set;
//! - in **any other** segment, which was fdatasynced before its successor
//!   existed, the same damage is [`WalError::Corrupt`] naming file and offset.
//!   Such a segment must also end exactly where its successor's
//!   `first_index` says (the highest entry or snapshot index seen so far is
//!   `first_index - 1`), which catches records lost at a frame boundary;
//! - a frame whose checksum matches but whose content is impossible (unknown
//!   type, wrong payload size) is `Corrupt` wherever it is.
//!
//! A missing segment in the middle of the sequence is
//! [`WalError::MissingSegment`]. The directory is locked (advisory `flock`)
//! while a `Wal` is open.
//!
//! # Compaction
//!
//! `release_to(index)` deletes the oldest segments up to (not including) the
//! newest segment whose `first_index <= index + 1`, never the last segment,
//! and fsyncs the directory. `index` is capped at the highest snapshot already
//! synced. What remains still replays to the same result: every entry above
//! the snapshot lives in the kept segments, and the first kept segment's
//! header carries the state and snapshot from before it.

mod append;
mod error;
#[cfg(test)]
mod model_tests;
mod record;
#[cfg(test)]
mod recovery_tests;
mod replay;
mod segment;
#[cfg(test)]
mod tests;

use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use error::WalError;
pub use record::Record;

use append::{AppendBuffer, NewSegment};
use error::IoContext;
use segment::{SegmentInfo, SegmentPreparer};

/// Size of a segment unless configured otherwise: 64 MiB.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

/// How a log is laid out on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalOptions {
    /// Preallocated size of each segment file. Must be positive.
    pub segment_bytes: u64,
    /// Test-only: a delay added to every fsync, to see how the member reports a slow disk.
    pub fsync_delay: Duration,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions { segment_bytes: DEFAULT_SEGMENT_BYTES, fsync_delay: Duration::ZERO }
    }
}

/// What `Wal::open` read back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replay {
    /// The highest snapshot recorded, as `(index, term)`.
    pub snapshot: Option<(u64, u64)>,
    /// The last hard state recorded.
    pub state: Option<Vec<u8>>,
    /// Entries after the snapshot, contiguous, as `(index, bytes)`.
    pub entries: Vec<(u64, Vec<u8>)>,
    /// True if a torn write at the end of the log was cut off during open.
    pub repaired_tail: bool,
}

/// What one `Wal::sync` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// Bytes written to segment files, segment headers included.
    pub bytes_written: u64,
    /// Time spent in the final fdatasync of the current segment.
    pub fsync_duration: Duration,
    /// Segments started during this sync.
    pub segments_cut: usize,
    /// Time spent cutting segments (syncs, rename, directory fsync).
    pub cut_duration: Duration,
}

/// An open write-ahead log. Dropping it discards whatever was appended but
/// not synced.
pub struct Wal {
    dir: PathBuf,
    /// Open handle on `dir`: holds the lock, and is what gets fsynced.
    dir_handle: File,
    segment_bytes: u64,
    fsync_delay: Duration,
    /// Every segment on disk, oldest first; the last one is written to.
    segments: Vec<SegmentInfo>,
    tail_file: File,
    /// Bytes of the last segment that hold records.
    tail_offset: u64,
    preparer: SegmentPreparer,
    /// What was appended but not yet written.
    buffer: AppendBuffer,
    /// Highest snapshot index known to be durable.
    synced_snapshot_index: u64,
    poisoned: bool,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Wal")
            .field("dir", &self.dir)
            .field("segments", &self.segments.len())
            .field("tail_offset", &self.tail_offset)
            .field("last_index", &self.last_index())
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

impl Wal {
    /// Opens the log in `dir` (creating the directory and a first segment if
    /// needed), replays it, and repairs a torn tail. See the module docs for
    /// the recovery rules.
    ///
    /// # Errors
    ///
    /// - [`WalError::Corrupt`], [`WalError::MissingSegment`] or
    ///   [`WalError::EntryGap`] if the log cannot be replayed as written;
    /// - [`WalError::Locked`] if another `Wal` has it open;
    /// - [`WalError::Io`] if a file operation fails;
    /// - [`WalError::InvalidOptions`] for a zero `segment_bytes`.
    pub fn open(dir: &Path, options: WalOptions) -> Result<(Wal, Replay), WalError> {
        if options.segment_bytes == 0 {
            return Err(WalError::InvalidOptions("segment_bytes must be positive"));
        }
        segment::create_directory(dir)?;
        let dir_handle = segment::lock_directory(dir)?;
        let segments = existing_or_first_segment(dir, &dir_handle, options.segment_bytes)?;
        let (builder, tail) = replay::replay_segments(&segments, options.segment_bytes)?;
        let replay = builder.finish(tail.repaired)?;
        let wal = Wal::continue_after(dir, dir_handle, options, segments, tail, &replay);
        Ok((wal, replay))
    }

    /// Assembles a `Wal` that appends after what `replay` read.
    fn continue_after(
        dir: &Path,
        dir_handle: File,
        options: WalOptions,
        segments: Vec<SegmentInfo>,
        tail: replay::Tail,
        replay: &Replay,
    ) -> Wal {
        let buffer = AppendBuffer::new(
            options.segment_bytes,
            tail.offset,
            replay.entries.last().map_or(0, |&(index, _)| index),
            replay.snapshot,
            replay.state.clone(),
        );
        let next_sequence = segments.last().expect("a segment exists").sequence + 1;
        Wal {
            preparer: SegmentPreparer::start(dir, next_sequence, options.segment_bytes),
            dir: dir.to_path_buf(),
            dir_handle,
            segment_bytes: options.segment_bytes,
            fsync_delay: options.fsync_delay,
            segments,
            tail_file: tail.file,
            tail_offset: tail.offset,
            synced_snapshot_index: buffer.snapshot_index(),
            buffer,
            poisoned: false,
        }
    }

    /// Validates and buffers `records`; nothing is written until `sync`.
    /// Either all records are accepted or none (on error).
    ///
    /// An entry's index may be at most one past the highest of the last entry
    /// index and the snapshot index (so a snapshot must be appended before the
    /// entries that follow it); a lower index overwrites that suffix.
    ///
    /// # Errors
    ///
    /// [`WalError::NonContiguousAppend`], [`WalError::RecordTooLarge`], or
    /// [`WalError::Poisoned`] after a failed `sync`.
    pub fn append(&mut self, records: &[Record]) -> Result<(), WalError> {
        self.ensure_usable()?;
        self.buffer.validate(records)?;
        for record in records {
            self.buffer.push(record);
        }
        Ok(())
    }

    /// Writes everything appended since the last sync and fdatasyncs it: one
    /// sync for the whole batch. Does nothing if nothing was appended.
    ///
    /// # Errors
    ///
    /// [`WalError::Io`] if a write or sync fails; the `Wal` is then poisoned
    /// and every later call returns [`WalError::Poisoned`] until it is reopened.
    pub fn sync(&mut self) -> Result<SyncStats, WalError> {
        self.ensure_usable()?;
        let result = self.write_pending();
        if result.is_err() {
            self.poisoned = true;
        }
        result
    }

    /// Deletes the oldest segments that hold nothing needed once the log is
    /// compacted to `index`. `index` is capped at the highest *synced*
    /// snapshot, so nothing a replay needs is ever removed. The last segment
    /// is never removed. Returns how many segments were deleted.
    ///
    /// # Errors
    ///
    /// [`WalError::Io`] if a file cannot be deleted or the directory synced,
    /// or [`WalError::Poisoned`].
    pub fn release_to(&mut self, index: u64) -> Result<usize, WalError> {
        self.ensure_usable()?;
        let limit = index.min(self.synced_snapshot_index);
        let Some(first_kept) = (1..self.segments.len())
            .rev()
            .find(|&position| self.segments[position].first_index <= limit.saturating_add(1))
        else {
            return Ok(0);
        };
        for _ in 0..first_kept {
            let oldest = &self.segments[0].path;
            fs::remove_file(oldest).at(oldest)?;
            tracing::debug!(path = %oldest.display(), "released wal segment");
            self.segments.remove(0);
        }
        segment::sync_directory(&self.dir_handle, &self.dir)?;
        Ok(first_kept)
    }

    /// The directory this log lives in.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Index of the last entry appended (synced or not), or the snapshot
    /// index if that is higher; 0 for an empty log.
    #[must_use]
    pub fn last_index(&self) -> u64 {
        self.buffer.next_index() - 1
    }

    fn ensure_usable(&self) -> Result<(), WalError> {
        if self.poisoned {
            return Err(WalError::Poisoned);
        }
        Ok(())
    }

    fn write_pending(&mut self) -> Result<SyncStats, WalError> {
        let mut stats = SyncStats::default();
        if self.buffer.is_empty() {
            return Ok(stats);
        }
        for batch in self.buffer.take_pending() {
            if let Some(new_segment) = batch.new_segment {
                let started = Instant::now();
                self.cut_segment(&new_segment)?;
                stats.cut_duration += started.elapsed();
                stats.segments_cut += 1;
                stats.bytes_written += new_segment.header.len() as u64;
            }
            let written = batch.frames.len() as u64;
            self.tail_file.write_all_at(&batch.frames, self.tail_offset).at(self.tail_path())?;
            self.tail_offset += written;
            stats.bytes_written += written;
        }
        let started = Instant::now();
        if !self.fsync_delay.is_zero() {
            std::thread::sleep(self.fsync_delay);
        }
        segment::sync_data(&self.tail_file, self.tail_path())?;
        stats.fsync_duration = started.elapsed();
        debug_assert_eq!(self.tail_offset, self.buffer.end_offset());
        self.synced_snapshot_index = self.buffer.snapshot_index();
        Ok(stats)
    }

    /// Seals the current segment and installs the prepared one after it.
    fn cut_segment(&mut self, new_segment: &NewSegment) -> Result<(), WalError> {
        segment::sync_data(&self.tail_file, self.tail_path())?;
        let sequence = self.segments.last().expect("a segment exists").sequence + 1;
        let next_preparer = SegmentPreparer::start(&self.dir, sequence + 1, self.segment_bytes);
        let prepared = std::mem::replace(&mut self.preparer, next_preparer).finish()?;
        let (info, file) = segment::install_segment(
            &self.dir,
            &self.dir_handle,
            prepared,
            &new_segment.header,
            (sequence, new_segment.first_index),
        )?;
        tracing::debug!(path = %info.path.display(), "cut wal segment");
        self.segments.push(info);
        self.tail_file = file;
        self.tail_offset = new_segment.header.len() as u64;
        Ok(())
    }

    fn tail_path(&self) -> &Path {
        &self.segments.last().expect("a segment exists").path
    }
}

/// The segments in `dir`, or for a new log a first one: sequence 0, named
/// for index 0, with an empty header.
fn existing_or_first_segment(dir: &Path, dir_handle: &File, segment_bytes: u64) -> Result<Vec<SegmentInfo>, WalError> {
    let segments = segment::list_segments(dir)?;
    if !segments.is_empty() {
        return Ok(segments);
    }
    let prepared = segment::create_preallocated(&segment::prepared_path(dir, 0), segment_bytes)?;
    let (info, _file) = segment::install_segment(dir, dir_handle, prepared, &[], (0, 0))?;
    Ok(vec![info])
}
