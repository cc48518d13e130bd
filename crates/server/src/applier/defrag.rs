//! Online defragmentation, run by the applier. etcd's defrag blocks every request to the member while it
//! rewrites the file; here the store is copied into a fresh, compact file while the member keeps serving
//! reads and applying writes from the old one. The entries applied meanwhile are recorded; once the copy
//! is done, the applier replays them onto the copy and switches files. Writes wait only for that
//! replay and the switch; reads never wait.

use keel_raft::raft::eraftpb::Entry;
use keel_state::backend::{Backend, image};
use keel_state::{StateError, StateMachine};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Entry bytes recorded during one copy at most; past this the defrag gives up (the copy cannot keep up
/// with the writes) and says so.
const MAX_RECORDED_BYTES: usize = 512 * 1024 * 1024;

/// What one defragmentation did.
#[derive(Debug, Clone, Copy)]
pub struct DefragReport {
    pub size_before: u64,
    pub size_after: u64,
    /// Copying the store, while the member kept serving.
    pub copy: Duration,
    /// Replaying what was applied meanwhile and switching files: the longest a write waited.
    pub switch_over: Duration,
    pub replayed_entries: usize,
}

pub type DefragReply = oneshot::Sender<Result<DefragReport, String>>;

pub(super) struct Defrag {
    /// The copy thread's result: the copy, opened, at the index it stands at.
    copy: JoinHandle<Result<StateMachine, StateError>>,
    file: PathBuf,
    recorded: Vec<Entry>,
    recorded_bytes: usize,
    replies: Vec<DefragReply>,
    started: Instant,
    size_before: u64,
}

impl Defrag {
    /// Starts copying `backend` into `file` on a thread of its own.
    pub fn start(backend: Arc<Backend>, file: PathBuf, reply: DefragReply) -> std::io::Result<Self> {
        let size_before = backend.file_size();
        let target = file.clone();
        let copy = std::thread::Builder::new().name("defrag".into()).spawn(move || {
            image::copy(&backend, &target, |bytes| tracing::info!(mb = bytes >> 20, "defragmenting: copied"))?;
            // Opened here, off the applier's thread: the switch-over only replays and switches.
            StateMachine::open(&target)
        })?;
        tracing::info!(db_size = size_before, "defragmentation started; the member keeps serving");
        Ok(Defrag {
            copy,
            file,
            recorded: Vec::new(),
            recorded_bytes: 0,
            replies: vec![reply],
            started: Instant::now(),
            size_before,
        })
    }

    /// Another caller waits for the same defragmentation.
    pub fn join(&mut self, reply: DefragReply) {
        self.replies.push(reply);
    }

    /// Keeps entries applied to the old file, to replay on the copy. False when too much piled up.
    pub fn record(&mut self, entries: &[Entry]) -> bool {
        self.recorded_bytes += entries.iter().map(|entry| entry.data.len() + 32).sum::<usize>();
        self.recorded.extend_from_slice(entries);
        self.recorded_bytes <= MAX_RECORDED_BYTES
    }

    pub fn is_copied(&self) -> bool {
        self.copy.is_finished()
    }

    /// Replays what was recorded onto the copy and switches the member to it. Called on the applier's
    /// thread, so no entry is applied meanwhile.
    pub fn finish(self, machine: &mut StateMachine) {
        let Defrag { copy, file, recorded, replies, started, size_before, .. } = self;
        let copy_took = started.elapsed();
        let switch_started = Instant::now();
        let copied = match copy.join() {
            Ok(Ok(copy)) => Ok(copy),
            Ok(Err(error)) => Err(format!("copying the store failed: {error}")),
            Err(_) => Err("the copy thread panicked".to_string()),
        };
        let outcome = copied.and_then(|copy| switch(machine, copy, &recorded)).map(|replayed_entries| DefragReport {
            size_before,
            size_after: machine.backend().file_size(),
            copy: copy_took,
            switch_over: switch_started.elapsed(),
            replayed_entries,
        });
        match &outcome {
            Ok(report) => tracing::info!(
                size_before = report.size_before,
                size_after = report.size_after,
                copy_ms = report.copy.as_millis() as u64,
                switch_over_ms = report.switch_over.as_millis() as u64,
                replayed_entries = report.replayed_entries,
                "defragmentation finished"
            ),
            Err(error) => {
                let _ = std::fs::remove_file(&file);
                tracing::warn!(%error, "defragmentation failed; the member goes on with its old file");
            }
        }
        for reply in replies {
            let _ = reply.send(outcome.clone());
        }
    }

    /// Gives up: the copy is removed once its thread ends; every caller hears why.
    pub fn abort(self, why: &str) {
        tracing::warn!(why, "defragmentation abandoned");
        let _ = self.copy.join();
        let _ = std::fs::remove_file(&self.file);
        for reply in self.replies {
            let _ = reply.send(Err(why.to_string()));
        }
    }
}

/// Replays onto the copy what the member applied since the copy's read, then switches to the copy.
fn switch(machine: &mut StateMachine, mut copy: StateMachine, recorded: &[Entry]) -> Result<usize, String> {
    let copied_index = copy.state().index;
    let replay: Vec<keel_state::Entry<'_>> = recorded
        .iter()
        .filter(|entry| entry.index > copied_index)
        .map(|entry| keel_state::Entry { index: entry.index, term: entry.term, data: super::payload(entry) })
        .collect();
    copy.apply(&replay, true).map_err(|error| error.to_string())?;
    let caught_up = copy.state().index;
    if caught_up != machine.state().index {
        return Err(format!(
            "the copy reached index {caught_up} but the member is at {}; nothing was switched",
            machine.state().index
        ));
    }
    machine.adopt(copy).map_err(|error| error.to_string())?;
    Ok(replay.len())
}
