//! Segment files: names, listing, preallocation, durability calls, the
//! directory lock and the background preparation of the next segment.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::thread::{self, JoinHandle};

use super::error::{IoContext, WalError};

const SEGMENT_SUFFIX: &str = ".wal";
const PREPARED_SUFFIX: &str = ".wal.tmp";

/// One segment file of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentInfo {
    /// Position in the chain of segments; contiguous from the oldest kept.
    pub sequence: u64,
    /// Every live entry written before this segment has an index below this.
    pub first_index: u64,
    pub path: PathBuf,
}

/// `{sequence:016x}-{first_index:016x}.wal`, as etcd names its files.
pub(crate) fn segment_file_name(sequence: u64, first_index: u64) -> String {
    format!("{sequence:016x}-{first_index:016x}{SEGMENT_SUFFIX}")
}

fn parse_segment_file_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(SEGMENT_SUFFIX)?;
    let (sequence, first_index) = stem.split_once('-')?;
    let is_hex16 = |text: &str| text.len() == 16 && text.bytes().all(|byte| byte.is_ascii_hexdigit());
    if !is_hex16(sequence) || !is_hex16(first_index) {
        return None;
    }
    let sequence = u64::from_str_radix(sequence, 16).ok()?;
    let first_index = u64::from_str_radix(first_index, 16).ok()?;
    Some((sequence, first_index))
}

/// Lists the segments of `dir` in sequence order, after removing leftover
/// prepared (never installed) segment files. Fails if one is missing.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<SegmentInfo>, WalError> {
    let mut segments = Vec::new();
    for directory_entry in fs::read_dir(dir).at(dir)? {
        let path = directory_entry.at(dir)?.path();
        let Some(name) = path.file_name().and_then(|name| name.to_str()) else {
            continue;
        };
        if name.ends_with(PREPARED_SUFFIX) {
            fs::remove_file(&path).at(&path)?;
        } else if let Some((sequence, first_index)) = parse_segment_file_name(name) {
            segments.push(SegmentInfo { sequence, first_index, path });
        }
    }
    segments.sort_by_key(|segment| segment.sequence);
    check_contiguous(&segments)?;
    Ok(segments)
}

fn check_contiguous(segments: &[SegmentInfo]) -> Result<(), WalError> {
    for pair in segments.windows(2) {
        let expected_sequence = pair[0].sequence + 1;
        if pair[1].sequence != expected_sequence {
            return Err(WalError::MissingSegment { expected_sequence, found: pair[1].path.clone() });
        }
    }
    Ok(())
}

/// Creates `dir` and any missing ancestors, fsyncing the parent of each new
/// directory so that the creation itself survives a crash.
pub(crate) fn create_directory(dir: &Path) -> Result<(), WalError> {
    let missing: Vec<&Path> =
        dir.ancestors().take_while(|ancestor| !ancestor.as_os_str().is_empty() && !ancestor.exists()).collect();
    fs::create_dir_all(dir).at(dir)?;
    for created in missing {
        let parent = match created.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        File::open(parent).and_then(|handle| handle.sync_all()).at(parent)?;
    }
    Ok(())
}

/// Opens `dir` and takes an exclusive advisory lock on it for as long as the
/// returned handle lives. The handle is also what `sync_directory` fsyncs.
pub(crate) fn lock_directory(dir: &Path) -> Result<File, WalError> {
    let handle = File::open(dir).at(dir)?;
    match handle.try_lock() {
        Ok(()) => Ok(handle),
        Err(fs::TryLockError::WouldBlock) => Err(WalError::Locked { path: dir.to_path_buf() }),
        Err(fs::TryLockError::Error(source)) => Err(WalError::io(dir, source)),
    }
}

/// fsyncs a directory so that file creations, renames and deletions in it
/// survive a crash.
pub(crate) fn sync_directory(handle: &File, dir: &Path) -> Result<(), WalError> {
    handle.sync_all().at(dir)
}

/// Flushes a file's data (and only the metadata needed to read it back).
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn sync_data(file: &File, path: &Path) -> Result<(), WalError> {
    use std::os::fd::AsRawFd;
    loop {
        // SAFETY: fdatasync only reads the descriptor, which `file` keeps open.
        if unsafe { libc::fdatasync(file.as_raw_fd()) } == 0 {
            return Ok(());
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(WalError::io(path, error));
        }
    }
}

/// Flushes a file's data (and only the metadata needed to read it back).
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn sync_data(file: &File, path: &Path) -> Result<(), WalError> {
    file.sync_data().at(path)
}

/// Grows `file` to at least `size` bytes of allocated zeros, with fallocate
/// where the file system supports it and a (sparse) `set_len` otherwise.
pub(crate) fn preallocate(file: &File, path: &Path, size: u64) -> Result<(), WalError> {
    if file.metadata().at(path)?.len() >= size {
        return Ok(());
    }
    if allocate_blocks(file, size).at(path)? {
        return Ok(());
    }
    tracing::debug!(path = %path.display(), "fallocate unsupported; extending with set_len");
    file.set_len(size).at(path)
}

/// Returns `Ok(false)` if the file system cannot fallocate.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn allocate_blocks(file: &File, size: u64) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    let length = libc::off_t::try_from(size).map_err(io::Error::other)?;
    loop {
        // SAFETY: fallocate only reads the descriptor, which `file` keeps open.
        if unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, length) } == 0 {
            return Ok(true);
        }
        let error = io::Error::last_os_error();
        match error.raw_os_error() {
            Some(libc::EINTR) => {}
            Some(libc::EOPNOTSUPP | libc::ENOSYS) => return Ok(false),
            _ => return Err(error),
        }
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn allocate_blocks(_file: &File, _size: u64) -> io::Result<bool> {
    Ok(false)
}

/// Opens an existing segment for reading and writing in place.
pub(crate) fn open_segment(path: &Path) -> Result<File, WalError> {
    OpenOptions::new().read(true).write(true).open(path).at(path)
}

/// Writes `header` into a prepared file, makes it durable, renames it into
/// the chain as segment `sequence` and makes the rename durable. A segment
/// therefore never appears under its final name without its whole header.
pub(crate) fn install_segment(
    dir: &Path,
    dir_handle: &File,
    prepared: PreparedSegment,
    header: &[u8],
    (sequence, first_index): (u64, u64),
) -> Result<(SegmentInfo, File), WalError> {
    use std::os::unix::fs::FileExt;
    prepared.file.write_all_at(header, 0).at(&prepared.path)?;
    sync_data(&prepared.file, &prepared.path)?;
    let path = dir.join(segment_file_name(sequence, first_index));
    fs::rename(&prepared.path, &path).at(&path)?;
    sync_directory(dir_handle, dir)?;
    let info = SegmentInfo { sequence, first_index, path };
    Ok((info, prepared.file))
}

/// A created and preallocated file, not yet renamed into the chain.
#[derive(Debug)]
pub(crate) struct PreparedSegment {
    pub file: File,
    pub path: PathBuf,
}

pub(crate) fn create_preallocated(path: &Path, size: u64) -> Result<PreparedSegment, WalError> {
    let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(path).at(path)?;
    preallocate(&file, path, size)?;
    Ok(PreparedSegment { file, path: path.to_path_buf() })
}

/// Where the file that will become segment `sequence` is prepared.
pub(crate) fn prepared_path(dir: &Path, sequence: u64) -> PathBuf {
    dir.join(format!("{sequence:016x}{PREPARED_SUFFIX}"))
}

/// Creates and preallocates the next segment on a background thread, so that
/// cutting a segment costs only a rename and a few syncs.
pub(crate) struct SegmentPreparer {
    worker: Option<JoinHandle<Result<PreparedSegment, WalError>>>,
    path: PathBuf,
    size: u64,
}

impl SegmentPreparer {
    /// Starts preparing the file that will become segment `sequence`.
    pub(crate) fn start(dir: &Path, sequence: u64, size: u64) -> Self {
        let path = prepared_path(dir, sequence);
        let thread_path = path.clone();
        let worker = thread::Builder::new()
            .name("wal-prepare".to_owned())
            .spawn(move || create_preallocated(&thread_path, size));
        if let Err(error) = &worker {
            tracing::warn!(%error, "cannot spawn wal preparation thread; will prepare inline");
        }
        SegmentPreparer { worker: worker.ok(), path, size }
    }

    /// Waits for the prepared file (or prepares it now if no thread ran).
    pub(crate) fn finish(mut self) -> Result<PreparedSegment, WalError> {
        match self.worker.take() {
            Some(worker) => worker.join().unwrap_or_else(|_| {
                let panic = io::Error::other("segment preparation thread panicked");
                Err(WalError::io(&self.path, panic))
            }),
            None => create_preallocated(&self.path, self.size),
        }
    }
}

impl Drop for SegmentPreparer {
    /// Waits for an unused preparation and removes its file.
    fn drop(&mut self) {
        if let Some(worker) = self.worker.take()
            && let Ok(Ok(prepared)) = worker.join()
        {
            drop(prepared.file);
            let _ = fs::remove_file(&prepared.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_round_trip() {
        let name = segment_file_name(1, 0x2a);
        assert_eq!(name, "0000000000000001-000000000000002a.wal");
        assert_eq!(parse_segment_file_name(&name), Some((1, 0x2a)));
        assert_eq!(parse_segment_file_name("0001-0002.wal"), None);
        assert_eq!(parse_segment_file_name("0000000000000001-000000000000002a.wal.tmp"), None);
        assert_eq!(parse_segment_file_name("+000000000000001-000000000000002a.wal"), None);
    }

    #[test]
    fn preallocate_grows_with_zeros_and_never_shrinks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("file");
        let file = create_preallocated(&path, 4096).unwrap().file;
        assert_eq!(fs::read(&path).unwrap(), vec![0; 4096]);
        preallocate(&file, &path, 1024).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().len(), 4096);
    }
}
