//! Property test: random appends, syncs, reopens, releases and torn last
//! writes agree with a plain in-memory model of the synced records.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use proptest::prelude::*;

use super::record::is_all_zero;
use super::*;

#[derive(Debug, Clone)]
enum Step {
    /// `count` entries starting `back` below the next index (an overwrite).
    Entries {
        count: u8,
        back: u8,
        size: u8,
    },
    State(u8),
    /// A snapshot `back` below the last entry, or `back` past it if `ahead`.
    Snapshot {
        ahead: bool,
        back: u8,
    },
    Sync,
    Reopen,
    Release,
    /// Crash while the last sync was being written: its bytes are cut
    /// (`zero == false`) or zeroed from a point chosen by `point`.
    TearLastSync {
        point: u16,
        zero: bool,
    },
}

fn step_strategy() -> impl Strategy<Value = Step> {
    prop_oneof![
        5 => (1u8..6, 0u8..4, 0u8..40).prop_map(|(count, back, size)| Step::Entries { count, back, size }),
        1 => any::<u8>().prop_map(Step::State),
        1 => (any::<bool>(), 0u8..6).prop_map(|(ahead, back)| Step::Snapshot { ahead, back }),
        4 => Just(Step::Sync),
        1 => Just(Step::Reopen),
        1 => Just(Step::Release),
        1 => (any::<u16>(), any::<bool>()).prop_map(|(point, zero)| Step::TearLastSync { point, zero }),
    ]
}

/// The bytes the last sync wrote into the tail segment, frame by frame.
struct LastSync {
    path: PathBuf,
    start: u64,
    frame_ends: Vec<u64>,
    durable_before: usize,
}

#[derive(Default)]
struct Model {
    durable: Vec<Record>,
    unsynced: Vec<Record>,
    serial: u64,
}

type Expected = (Option<(u64, u64)>, Option<Vec<u8>>, Vec<(u64, Vec<u8>)>);

/// The replay rules, written as plainly as possible.
fn model_replay(records: &[Record]) -> Expected {
    let (mut snapshot, mut state, mut log) = (None::<(u64, u64)>, None, Vec::<(u64, Vec<u8>)>::new());
    for record in records {
        match record {
            Record::Entry { index, bytes } => {
                log.retain(|(kept, _)| kept < index);
                if log.last().is_some_and(|(last, _)| last + 1 != *index) {
                    log.clear();
                }
                log.push((*index, bytes.clone()));
            }
            Record::State(bytes) => state = Some(bytes.clone()),
            Record::Snapshot { index, term } => {
                if snapshot.is_none_or(|(highest, _)| *index >= highest) {
                    snapshot = Some((*index, *term));
                }
            }
        }
    }
    let snapshot_index = snapshot.map_or(0, |(index, _)| index);
    log.retain(|(index, _)| *index > snapshot_index);
    (snapshot, state, log)
}

impl Model {
    fn all_records(&self) -> impl Iterator<Item = &Record> {
        self.durable.iter().chain(&self.unsynced)
    }

    fn last_entry_and_snapshot(&self) -> (u64, u64) {
        let mut last_entry = 0;
        let mut snapshot = 0;
        for record in self.all_records() {
            match record {
                Record::Entry { index, .. } => last_entry = *index,
                Record::Snapshot { index, .. } => snapshot = snapshot.max(*index),
                Record::State(_) => {}
            }
        }
        (last_entry, snapshot)
    }

    fn next_serial(&mut self) -> u64 {
        self.serial += 1;
        self.serial
    }

    fn records_for(&mut self, step: &Step) -> Vec<Record> {
        let (last_entry, snapshot) = self.last_entry_and_snapshot();
        let next = last_entry.max(snapshot) + 1;
        match *step {
            Step::Entries { count, back, size } => {
                let first = next.saturating_sub(back as u64).max(snapshot + 1);
                let serial = self.next_serial();
                (first..first + count as u64)
                    .map(|index| {
                        let mut bytes = format!("{serial}/{index}/").into_bytes();
                        bytes.resize(bytes.len() + size as usize, b'x');
                        Record::Entry { index, bytes }
                    })
                    .collect()
            }
            Step::State(seed) => vec![Record::State(format!("hs{}:{seed}", self.next_serial()).into_bytes())],
            Step::Snapshot { ahead, back } => {
                let index = if ahead { next + back as u64 } else { last_entry.saturating_sub(back as u64) };
                vec![Record::Snapshot { index, term: index / 4 + 1 }]
            }
            _ => Vec::new(),
        }
    }
}

fn check_replay(replay: &Replay, model: &Model, repaired: bool) -> Result<(), TestCaseError> {
    let (snapshot, state, entries) = model_replay(&model.durable);
    prop_assert_eq!(replay.snapshot, snapshot);
    prop_assert_eq!(&replay.state, &state);
    prop_assert_eq!(&replay.entries, &entries);
    prop_assert_eq!(replay.repaired_tail, repaired);
    Ok(())
}

/// Damages the bytes of the last sync; returns (frames kept, repair expected).
fn tear(last_sync: &LastSync, point: u16, zero: bool) -> (usize, bool) {
    let end = *last_sync.frame_ends.last().expect("a sync writes frames");
    let cut = last_sync.start + point as u64 % (end - last_sync.start);
    let torn_frame = last_sync.frame_ends.iter().position(|&frame_end| frame_end > cut).unwrap();
    let torn_start = if torn_frame == 0 { last_sync.start } else { last_sync.frame_ends[torn_frame - 1] };
    let file = OpenOptions::new().read(true).write(true).open(&last_sync.path).unwrap();
    let mut original = vec![0; (last_sync.frame_ends[torn_frame] - cut) as usize];
    file.read_exact_at(&mut original, cut).unwrap();
    if zero {
        file.write_all_at(&vec![0; (end - cut) as usize], cut).unwrap();
        // Zeroing bytes that were zero already leaves that frame intact.
        let intact = is_all_zero(&original);
        (torn_frame + intact as usize, cut != torn_start && !intact)
    } else {
        file.set_len(cut).unwrap();
        (torn_frame, cut != torn_start)
    }
}

fn frame_ends(start: u64, records: &[Record]) -> Vec<u64> {
    records
        .iter()
        .scan(start, |offset, record| {
            *offset += record.frame_len() as u64;
            Some(*offset)
        })
        .collect()
}

fn run(segment_bytes: u64, steps: &[Step]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let options = WalOptions { segment_bytes, ..WalOptions::default() };
    let reopen = |wal: Wal, dir: &Path| {
        drop(wal);
        Wal::open(dir, options).unwrap()
    };
    let (mut wal, replay) = Wal::open(dir.path(), options).unwrap();
    let mut model = Model::default();
    check_replay(&replay, &model, false)?;
    let mut last_sync: Option<LastSync> = None;
    for step in steps {
        match step {
            Step::Entries { .. } | Step::State(_) | Step::Snapshot { .. } => {
                let records = model.records_for(step);
                wal.append(&records).unwrap();
                model.unsynced.extend(records);
            }
            Step::Sync => {
                let start = wal.tail_offset;
                let stats = wal.sync().unwrap();
                let batch = std::mem::take(&mut model.unsynced);
                if stats.segments_cut > 0 {
                    last_sync = None;
                } else if !batch.is_empty() {
                    last_sync = Some(LastSync {
                        path: wal.tail_path().to_path_buf(),
                        start,
                        frame_ends: frame_ends(start, &batch),
                        durable_before: model.durable.len(),
                    });
                    prop_assert_eq!(wal.tail_offset, *last_sync.as_ref().unwrap().frame_ends.last().unwrap());
                }
                model.durable.extend(batch);
            }
            Step::Reopen => {
                let (reopened, replay) = reopen(wal, dir.path());
                wal = reopened;
                model.unsynced.clear();
                last_sync = None;
                check_replay(&replay, &model, false)?;
            }
            Step::Release => {
                // Releasing relies on the last sync having completed, so that
                // sync can no longer be torn.
                if wal.release_to(u64::MAX).unwrap() > 0 {
                    last_sync = None;
                }
            }
            Step::TearLastSync { point, zero } => {
                let Some(torn) = last_sync.take() else {
                    continue;
                };
                drop(wal);
                model.unsynced.clear();
                let (kept, repaired) = tear(&torn, *point, *zero);
                model.durable.truncate(torn.durable_before + kept);
                let (reopened, replay) = Wal::open(dir.path(), options).unwrap();
                wal = reopened;
                check_replay(&replay, &model, repaired)?;
            }
        }
    }
    wal.sync().unwrap();
    model.durable.append(&mut model.unsynced);
    let (_wal, replay) = reopen(wal, dir.path());
    check_replay(&replay, &model, false)
}

fn configured_cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|cases| cases.parse().ok()).unwrap_or(64)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: configured_cases(), ..ProptestConfig::default() })]

    #[test]
    fn wal_agrees_with_model(
        segment_bytes in 96u64..700,
        steps in proptest::collection::vec(step_strategy(), 1..60),
    ) {
        run(segment_bytes, &steps)?;
    }
}

#[test]
fn model_replay_follows_overwrites_gaps_and_snapshots() {
    let entry = |index: u64, tag: &str| Record::Entry { index, bytes: tag.as_bytes().to_vec() };
    let records = [
        entry(1, "a"),
        entry(2, "a"),
        entry(3, "a"),
        entry(2, "b"),
        Record::Snapshot { index: 9, term: 2 },
        entry(10, "c"),
        Record::Snapshot { index: 5, term: 1 },
    ];
    let (snapshot, state, log) = model_replay(&records);
    assert_eq!(snapshot, Some((9, 2)));
    assert_eq!(state, None);
    assert_eq!(log, vec![(10, b"c".to_vec())]);
}
