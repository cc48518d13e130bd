//! The Raft log as raft-rs sees it ([`raft::Storage`]) and as the disk holds it (our WAL).
//!
//! raft-rs's `MemStorage` keeps the entries since the last compaction in memory and answers raft-rs's
//! reads; every entry and hard state raft-rs asks us to persist also goes into the WAL, and counts as
//! persisted only after [`LogStore::sync`]. On restart the WAL rebuilds the same `MemStorage`.
//!
//! Compaction: once the state machine has durably applied index `A`, entries up to `A` are only needed by
//! followers that lag; [`LogStore::compact`] drops them from memory, records a WAL snapshot marker, and
//! lets the WAL delete whole segments below it.

use crate::wal::{Record, SyncStats, Wal, WalError, WalOptions};
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::storage::MemStorage;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("write-ahead log: {0}")]
    Wal(#[from] WalError),
    #[error("raft log: {0}")]
    Raft(#[from] raft::Error),
    #[error("cannot decode a {what} from the write-ahead log: {reason}")]
    Decode { what: &'static str, reason: String },
    #[error(
        "the backend has applied index {applied} but the write-ahead log ends at {last}: the data dir is \
         inconsistent (was the WAL deleted or replaced?); restore the member from a snapshot"
    )]
    AppliedBeyondLog { applied: u64, last: u64 },
    #[error(
        "the backend has applied index {applied} but the write-ahead log starts at {first}: entries in between \
         are gone (was member/snap/db replaced by an older copy?); restore the member from a snapshot"
    )]
    AppliedBeforeLog { applied: u64, first: u64 },
}

/// What the state machine says about itself when the log is opened.
#[derive(Debug, Clone, Default)]
pub struct Bootstrap {
    /// The cluster configuration the state machine last stored (the initial one on a new member).
    pub conf_state: ConfState,
    /// The last index the state machine durably applied.
    pub applied_index: u64,
}

pub struct LogStore {
    memory: MemStorage,
    wal: Wal,
    /// Whether records were appended since the last sync.
    unsynced: bool,
}

impl LogStore {
    /// Opens the WAL in `dir`, replays it, and builds raft-rs's view of the log.
    pub fn open(dir: &Path, options: WalOptions, bootstrap: &Bootstrap) -> Result<(Self, Recovered), LogError> {
        let (wal, replay) = Wal::open(dir, options)?;
        let memory = MemStorage::new();
        let (snapshot_index, snapshot_term) = replay.snapshot.unwrap_or((0, 0));
        if snapshot_index == 0 {
            memory.initialize_with_conf_state(bootstrap.conf_state.clone());
        } else {
            let mut snapshot = Snapshot::default();
            let metadata = snapshot.mut_metadata();
            metadata.index = snapshot_index;
            metadata.term = snapshot_term;
            metadata.set_conf_state(bootstrap.conf_state.clone());
            memory.wl().apply_snapshot(snapshot)?;
        }
        let entries = replay
            .entries
            .iter()
            .map(|(_, bytes)| decode::<Entry>("raft entry", bytes))
            .collect::<Result<Vec<_>, _>>()?;
        memory.wl().append(&entries)?;
        let last_index = entries.last().map_or(snapshot_index, |entry| entry.index);
        if bootstrap.applied_index > last_index {
            return Err(LogError::AppliedBeyondLog { applied: bootstrap.applied_index, last: last_index });
        }
        if bootstrap.applied_index < snapshot_index {
            return Err(LogError::AppliedBeforeLog { applied: bootstrap.applied_index, first: snapshot_index + 1 });
        }
        let mut hard_state = match &replay.state {
            Some(bytes) => decode::<HardState>("hard state", bytes)?,
            None => HardState::default(),
        };
        // What was applied was committed, even if the commit index reached the WAL later than the apply.
        hard_state.commit = hard_state.commit.max(bootstrap.applied_index).max(snapshot_index).min(last_index);
        memory.wl().set_hardstate(hard_state.clone());
        let recovered = Recovered {
            entries: entries.len(),
            snapshot_index,
            last_index,
            hard_state,
            repaired_tail: replay.repaired_tail,
        };
        Ok((LogStore { memory, wal, unsynced: false }, recovered))
    }

    /// The storage handle raft-rs reads from (shares state with this store).
    pub fn storage(&self) -> MemStorage {
        self.memory.clone()
    }

    /// Appends entries raft-rs handed over in a Ready (replacing any conflicting suffix).
    pub fn append(&mut self, entries: &[Entry]) -> Result<(), LogError> {
        if entries.is_empty() {
            return Ok(());
        }
        self.memory.wl().append(entries)?;
        let records: Vec<Record> =
            entries.iter().map(|entry| Record::Entry { index: entry.index, bytes: encode(entry) }).collect();
        self.wal.append(&records)?;
        self.unsynced = true;
        Ok(())
    }

    pub fn set_hard_state(&mut self, hard_state: &HardState) -> Result<(), LogError> {
        self.memory.wl().set_hardstate(hard_state.clone());
        self.wal.append(&[Record::State(encode(hard_state))])?;
        self.unsynced = true;
        Ok(())
    }

    /// Records a new commit index; it reaches the disk with the next sync (losing it is harmless: the
    /// commit index is recomputed by the leader and bounded below by the applied index on restart).
    pub fn set_commit(&mut self, commit: u64) -> Result<(), LogError> {
        let mut hard_state = self.memory.rl().hard_state().clone();
        if commit > hard_state.commit {
            hard_state.commit = commit;
            self.set_hard_state(&hard_state)?;
        }
        Ok(())
    }

    /// Makes everything appended so far durable: one fsync for all of it (group commit).
    pub fn sync(&mut self) -> Result<Option<SyncStats>, LogError> {
        if !self.unsynced {
            return Ok(None);
        }
        let stats = self.wal.sync()?;
        self.unsynced = false;
        Ok(Some(stats))
    }

    /// Whether anything appended is not yet durable.
    pub fn has_unsynced(&self) -> bool {
        self.unsynced
    }

    /// Drops entries up to `index`, which the state machine has durably applied. Returns the WAL segments
    /// deleted.
    pub fn compact(&mut self, index: u64) -> Result<usize, LogError> {
        if index <= self.first_index() {
            return Ok(0);
        }
        let term = raft::Storage::term(&self.memory, index)?;
        self.memory.wl().compact(index)?;
        self.wal.append(&[Record::Snapshot { index, term }])?;
        self.wal.sync()?;
        Ok(self.wal.release_to(index)?)
    }

    /// Installs a snapshot received from the leader: the log now starts after it, and the WAL records
    /// it (with the new hard state) durably before the state machine switches to the snapshot's image.
    /// Entries after the snapshot that the WAL still holds are replaced as the leader sends new ones
    /// (as in etcd, whose WAL keeps them too).
    pub fn install_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), LogError> {
        let (index, term) = (snapshot.get_metadata().index, snapshot.get_metadata().term);
        self.memory.wl().apply_snapshot(snapshot.clone())?;
        let hard_state = self.memory.rl().hard_state().clone();
        self.wal.append(&[Record::Snapshot { index, term }, Record::State(encode(&hard_state))])?;
        self.wal.sync()?;
        self.unsynced = false;
        self.wal.release_to(index)?;
        Ok(())
    }

    pub fn first_index(&self) -> u64 {
        raft::Storage::first_index(&self.memory).unwrap_or(1)
    }

    pub fn last_index(&self) -> u64 {
        raft::Storage::last_index(&self.memory).unwrap_or(0)
    }
}

/// What opening the log found.
#[derive(Debug, Clone)]
pub struct Recovered {
    pub entries: usize,
    pub snapshot_index: u64,
    pub last_index: u64,
    pub hard_state: HardState,
    pub repaired_tail: bool,
}

fn encode(message: &impl protobuf::Message) -> Vec<u8> {
    message.write_to_bytes().expect("raft messages always encode")
}

fn decode<M: protobuf::Message>(what: &'static str, bytes: &[u8]) -> Result<M, LogError> {
    M::parse_from_bytes(bytes).map_err(|error| LogError::Decode { what, reason: error.to_string() })
}

/// Encodes a Raft message for a peer.
pub fn encode_message(message: &raft::eraftpb::Message) -> Vec<u8> {
    encode(message)
}

pub fn decode_message(bytes: &[u8]) -> Result<raft::eraftpb::Message, LogError> {
    decode("raft message", bytes)
}

/// Encodes a cluster configuration for the state machine to keep.
pub fn encode_conf_state(conf_state: &ConfState) -> Vec<u8> {
    encode(conf_state)
}

pub fn decode_conf_state(bytes: &[u8]) -> Result<ConfState, LogError> {
    decode("conf state", bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::Storage;

    fn entry(index: u64, term: u64) -> Entry {
        Entry { index, term, data: vec![7u8; 200].into(), ..Default::default() }
    }

    fn bootstrap(applied_index: u64) -> Bootstrap {
        let conf_state = ConfState { voters: vec![1], ..Default::default() };
        Bootstrap { conf_state, applied_index }
    }

    fn segments(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|entry| entry.as_ref().unwrap().path().extension().is_some_and(|e| e == "wal"))
            .count()
    }

    #[test]
    fn compaction_drops_old_segments_and_reopen_rebuilds_the_same_log() {
        let dir = tempfile::tempdir().unwrap();
        let options = WalOptions { segment_bytes: 8 * 1024, ..WalOptions::default() };
        let (mut store, _) = LogStore::open(dir.path(), options, &bootstrap(0)).unwrap();
        for index in 1..=400 {
            store.append(&[entry(index, 1 + index / 100)]).unwrap();
            if index % 10 == 0 {
                let hard_state = HardState { term: 1 + index / 100, commit: index, ..Default::default() };
                store.set_hard_state(&hard_state).unwrap();
                store.sync().unwrap();
            }
        }
        let before = segments(dir.path());
        assert!(before > 5, "expected several segments, got {before}");
        assert!(store.compact(300).unwrap() > 0);
        assert!(segments(dir.path()) < before);
        assert_eq!(store.first_index(), 300);
        drop(store);

        let (store, recovered) = LogStore::open(dir.path(), options, &bootstrap(350)).unwrap();
        assert_eq!(recovered.snapshot_index, 300);
        assert_eq!(recovered.last_index, 400);
        assert_eq!(recovered.hard_state.commit, 400);
        let storage = store.storage();
        assert_eq!(storage.first_index().unwrap(), 301);
        assert_eq!(storage.term(300).unwrap(), 4);
        let entries = storage.entries(301, 401, None, raft::GetEntriesContext::empty(false)).unwrap();
        assert_eq!(entries.len(), 100);
        assert_eq!(entries.last().unwrap().term, 5);
    }

    #[test]
    fn a_backend_ahead_of_the_log_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = LogStore::open(dir.path(), WalOptions::default(), &bootstrap(0)).unwrap();
        store.append(&[entry(1, 1), entry(2, 1)]).unwrap();
        store.sync().unwrap();
        drop(store);
        let error = LogStore::open(dir.path(), WalOptions::default(), &bootstrap(5)).err().expect("must refuse");
        assert!(error.to_string().contains("inconsistent"), "{error}");
    }

    #[test]
    fn a_backend_behind_the_compacted_log_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = LogStore::open(dir.path(), WalOptions::default(), &bootstrap(0)).unwrap();
        store.append(&(1..=10).map(|index| entry(index, 1)).collect::<Vec<_>>()).unwrap();
        store.sync().unwrap();
        store.compact(8).unwrap();
        drop(store);
        let error = LogStore::open(dir.path(), WalOptions::default(), &bootstrap(0)).err().expect("must refuse");
        assert!(error.to_string().contains("older copy"), "{error}");
        assert!(LogStore::open(dir.path(), WalOptions::default(), &bootstrap(8)).is_ok());
    }

    #[test]
    fn an_installed_snapshot_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = LogStore::open(dir.path(), WalOptions::default(), &bootstrap(0)).unwrap();
        store.append(&(1..=10).map(|index| entry(index, 1)).collect::<Vec<_>>()).unwrap();
        store.sync().unwrap();
        let mut snapshot = Snapshot::default();
        snapshot.mut_metadata().index = 500;
        snapshot.mut_metadata().term = 4;
        snapshot.mut_metadata().mut_conf_state().voters = vec![1, 2, 3];
        store.install_snapshot(&snapshot).unwrap();
        assert_eq!(store.first_index(), 501);
        assert_eq!(store.last_index(), 500);
        drop(store);
        // The backend switched to the snapshot's image: it has applied 500.
        let (store, recovered) = LogStore::open(dir.path(), WalOptions::default(), &bootstrap(500)).unwrap();
        assert_eq!(recovered.snapshot_index, 500);
        assert_eq!((recovered.hard_state.commit, recovered.hard_state.term), (500, 4));
        assert_eq!(store.storage().term(500).unwrap(), 4);
        drop(store);
        // A backend that never switched is refused, naming where the log starts.
        let error = LogStore::open(dir.path(), WalOptions::default(), &bootstrap(10)).err().expect("must refuse");
        assert!(matches!(error, LogError::AppliedBeforeLog { applied: 10, first: 501 }), "{error}");
    }

    #[test]
    fn the_commit_index_never_trails_what_was_applied() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = LogStore::open(dir.path(), WalOptions::default(), &bootstrap(0)).unwrap();
        store.append(&[entry(1, 1), entry(2, 1), entry(3, 1)]).unwrap();
        let hard_state = HardState { term: 1, commit: 1, ..Default::default() };
        store.set_hard_state(&hard_state).unwrap();
        store.sync().unwrap();
        drop(store);
        let (_, recovered) = LogStore::open(dir.path(), WalOptions::default(), &bootstrap(3)).unwrap();
        assert_eq!(recovered.hard_state.commit, 3);
    }
}
