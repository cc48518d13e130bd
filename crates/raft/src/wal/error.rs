//! The one error type of the write-ahead log.

use std::io;
use std::path::{Path, PathBuf};

/// Everything that can go wrong while opening, writing or trimming the log.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// An operating-system call failed on `path`.
    #[error("wal i/o error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// A record that was once durably written can no longer be read back.
    /// Raised for damage anywhere except the torn tail of the last segment.
    #[error("wal segment {path} is corrupt at byte offset {offset}: {reason}")]
    Corrupt { path: PathBuf, offset: u64, reason: &'static str },

    /// Segment sequence numbers must be contiguous; one in the middle is gone.
    #[error("wal segment with sequence number {expected_sequence} is missing (next file found: {found})")]
    MissingSegment { expected_sequence: u64, found: PathBuf },

    /// Replay produced entries that do not start right after the snapshot.
    #[error("wal entries are not contiguous: expected index {expected}, found {found}")]
    EntryGap { expected: u64, found: u64 },

    /// `append` was given an entry that would leave a hole in the log.
    #[error("cannot append entry {index}: the next entry index may be at most {next_allowed}")]
    NonContiguousAppend { index: u64, next_allowed: u64 },

    /// A single record does not fit the 32-bit length field of a frame.
    #[error("wal record of {bytes} bytes is too large")]
    RecordTooLarge { bytes: usize },

    /// Another `Wal` (in this or another process) holds the directory lock.
    #[error("wal directory {path} is locked by another writer")]
    Locked { path: PathBuf },

    /// An earlier write or fdatasync failed; what reached the disk is unknown.
    #[error("wal is unusable after an earlier write or sync failure; reopen it to recover")]
    Poisoned,

    /// The options passed to `Wal::open` make no sense.
    #[error("invalid wal options: {0}")]
    InvalidOptions(&'static str),
}

impl WalError {
    /// Wraps an `io::Error` with the path it happened on.
    pub(crate) fn io(path: &Path, source: io::Error) -> Self {
        WalError::Io { path: path.to_path_buf(), source }
    }
}

/// Shorthand for attaching a path to `io::Result`s.
pub(crate) trait IoContext<T> {
    fn at(self, path: &Path) -> Result<T, WalError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: &Path) -> Result<T, WalError> {
        self.map_err(|source| WalError::io(path, source))
    }
}
