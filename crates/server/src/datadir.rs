//! Every path inside a member's data dir, in one place (etcd's `server/storage/datadir`).
//!
//! ```text
//! <data-dir>/member/wal/               the Raft log (or --wal-dir, a dedicated directory, as in etcd)
//! <data-dir>/member/snap/db            the backend (a redb file)
//! <data-dir>/member/snap/db.defrag     a defragmentation's compact copy while it is being built
//! <data-dir>/member/snap/<index>.snap.db   a received snapshot image waiting to be installed
//! <data-dir>/member/snap/incoming-<from>.db  an image still arriving from member <from>
//! <data-dir>/bound-addresses           a line per listener: role, URL asked for, address bound
//! ```

use std::path::PathBuf;

/// The paths of one member's data dir.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
    /// `--wal-dir`, when the log lives apart from the data dir.
    dedicated_wal: Option<PathBuf>,
}

/// The compact copy a defragmentation builds, next to the store.
const DEFRAG_FILE: &str = "db.defrag";
const INCOMING_PREFIX: &str = "incoming-";
const IMAGE_SUFFIX: &str = ".snap.db";

impl DataDir {
    pub fn new(root: PathBuf, dedicated_wal: Option<PathBuf>) -> Self {
        DataDir { root, dedicated_wal }
    }

    pub fn member(&self) -> PathBuf {
        self.root.join("member")
    }

    /// The Raft log: `--wal-dir` when given, else `member/wal`.
    pub fn wal(&self) -> PathBuf {
        self.dedicated_wal.clone().unwrap_or_else(|| self.member().join("wal"))
    }

    /// Where the backend and snapshot images live.
    pub fn snap(&self) -> PathBuf {
        self.member().join("snap")
    }

    pub fn backend(&self) -> PathBuf {
        self.snap().join("db")
    }

    pub fn defrag_copy(&self) -> PathBuf {
        self.snap().join(DEFRAG_FILE)
    }

    /// Where the image for the Raft snapshot at `index` waits to be installed.
    pub fn snapshot_image(&self, index: u64) -> PathBuf {
        self.snap().join(format!("{index:016x}{IMAGE_SUFFIX}"))
    }

    /// An image still arriving from member `from`.
    pub fn incoming_image(&self, from: u64) -> PathBuf {
        self.snap().join(format!("{INCOMING_PREFIX}{from:x}.db"))
    }

    /// The addresses this member bound, for harnesses that ask for port 0.
    pub fn bound_addresses(&self) -> PathBuf {
        self.root.join("bound-addresses")
    }

    /// Removes images that can no longer be installed: those for snapshots at or below `applied` (installed
    /// ones were renamed away already) and, with `half_received` (at start, when nothing is arriving),
    /// incomplete ones and a defragmentation's unfinished copy.
    pub fn remove_stale_images(&self, applied: u64, half_received: bool) {
        let Ok(entries) = std::fs::read_dir(self.snap()) else { return };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let stale = if name.starts_with(INCOMING_PREFIX) || name == DEFRAG_FILE {
                half_received
            } else if let Some(index) = name.strip_suffix(IMAGE_SUFFIX) {
                u64::from_str_radix(index, 16).is_ok_and(|index| index <= applied)
            } else {
                false
            };
            if stale {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_etcds_and_wal_dir_moves_only_the_log() {
        let plain = DataDir::new(PathBuf::from("/d"), None);
        assert_eq!(plain.wal(), PathBuf::from("/d/member/wal"));
        assert_eq!(plain.backend(), PathBuf::from("/d/member/snap/db"));
        assert_eq!(plain.snapshot_image(255), PathBuf::from("/d/member/snap/00000000000000ff.snap.db"));
        let dedicated = DataDir::new(PathBuf::from("/d"), Some(PathBuf::from("/fast/wal")));
        assert_eq!(dedicated.wal(), PathBuf::from("/fast/wal"));
        assert_eq!(dedicated.backend(), plain.backend());
    }

    #[test]
    fn stale_images_are_removed_and_pending_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path().to_path_buf(), None);
        std::fs::create_dir_all(data.snap()).unwrap();
        for path in [data.snapshot_image(5), data.snapshot_image(9), data.incoming_image(3), data.defrag_copy()] {
            std::fs::write(path, b"x").unwrap();
        }
        data.remove_stale_images(5, false);
        assert!(!data.snapshot_image(5).exists());
        assert!(data.snapshot_image(9).exists() && data.incoming_image(3).exists() && data.defrag_copy().exists());
        data.remove_stale_images(5, true);
        assert!(data.snapshot_image(9).exists());
        assert!(!data.incoming_image(3).exists() && !data.defrag_copy().exists());
    }
}
