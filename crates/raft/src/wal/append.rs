//! The in-memory side of appending: validation, encoding, and planning where
//! segments will be cut, before `sync` does any IO.

use super::error::WalError;
use super::record::{Record, encode_snapshot, encode_state};

/// Frames bound for one segment.
pub(crate) struct PendingWrite {
    /// Set when these frames go to a new segment that must be cut first.
    pub new_segment: Option<NewSegment>,
    pub frames: Vec<u8>,
}

/// A segment to start before writing the frames that go to it.
pub(crate) struct NewSegment {
    /// One past the highest live entry (or snapshot) index before it.
    pub first_index: u64,
    /// Latest state and highest snapshot at the cut, already framed.
    pub header: Vec<u8>,
}

/// Appended records not yet written, and the log as it will be once they are.
pub(crate) struct AppendBuffer {
    segment_bytes: u64,
    /// Encoded frames in log order; each but the first starts a new segment.
    pending: Vec<PendingWrite>,
    /// Offset at which the next frame lands, in the segment it will go to.
    offset: u64,
    /// End of that segment's header: a segment holding no more is never cut.
    header_end: u64,
    last_entry_index: u64,
    snapshot: Option<(u64, u64)>,
    state: Option<Vec<u8>>,
}

impl AppendBuffer {
    /// Continues a log whose last segment holds `tail_offset` bytes of records.
    pub(crate) fn new(
        segment_bytes: u64,
        tail_offset: u64,
        last_entry_index: u64,
        snapshot: Option<(u64, u64)>,
        state: Option<Vec<u8>>,
    ) -> Self {
        AppendBuffer {
            segment_bytes,
            pending: Vec::new(),
            offset: tail_offset,
            header_end: 0,
            last_entry_index,
            snapshot,
            state,
        }
    }

    pub(crate) fn snapshot_index(&self) -> u64 {
        self.snapshot.map_or(0, |(index, _)| index)
    }

    /// The highest index the next entry may have; also names a new segment.
    pub(crate) fn next_index(&self) -> u64 {
        self.last_entry_index.max(self.snapshot_index()) + 1
    }

    /// Offset the last segment will have reached once everything is written.
    pub(crate) fn end_offset(&self) -> u64 {
        self.offset
    }

    /// Checks a whole batch before any of it is buffered.
    pub(crate) fn validate(&self, records: &[Record]) -> Result<(), WalError> {
        let mut last_entry_index = self.last_entry_index;
        let mut snapshot_index = self.snapshot_index();
        for record in records {
            record.check_size()?;
            match record {
                Record::Entry { index, .. } => {
                    let next_allowed = last_entry_index.max(snapshot_index) + 1;
                    if *index > next_allowed {
                        return Err(WalError::NonContiguousAppend { index: *index, next_allowed });
                    }
                    last_entry_index = *index;
                }
                Record::Snapshot { index, .. } => snapshot_index = snapshot_index.max(*index),
                Record::State(_) => {}
            }
        }
        Ok(())
    }

    /// Encodes one validated record, planning a cut first if its frame would
    /// overflow the segment it is headed for.
    pub(crate) fn push(&mut self, record: &Record) {
        let frame_len = record.frame_len() as u64;
        let overflows = self.offset + frame_len > self.segment_bytes;
        if overflows && self.offset > self.header_end {
            self.plan_cut();
        }
        if self.pending.is_empty() {
            self.pending.push(PendingWrite { new_segment: None, frames: Vec::new() });
        }
        let batch = self.pending.last_mut().expect("just ensured");
        record.encode_into(&mut batch.frames);
        self.offset += frame_len;
        self.track(record);
    }

    fn plan_cut(&mut self) {
        let header = self.header();
        self.offset = header.len() as u64;
        self.header_end = self.offset;
        self.pending.push(PendingWrite {
            new_segment: Some(NewSegment { first_index: self.next_index(), header }),
            frames: Vec::new(),
        });
    }

    fn header(&self) -> Vec<u8> {
        let mut header = Vec::new();
        if let Some(state) = &self.state {
            encode_state(&mut header, state);
        }
        if let Some((index, term)) = self.snapshot {
            encode_snapshot(&mut header, index, term);
        }
        header
    }

    fn track(&mut self, record: &Record) {
        match record {
            Record::Entry { index, .. } => self.last_entry_index = *index,
            Record::State(bytes) => self.state = Some(bytes.clone()),
            Record::Snapshot { index, term } => {
                if *index >= self.snapshot_index() {
                    self.snapshot = Some((*index, *term));
                }
            }
        }
    }

    /// Hands over everything buffered, oldest first.
    pub(crate) fn take_pending(&mut self) -> Vec<PendingWrite> {
        std::mem::take(&mut self.pending)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}
