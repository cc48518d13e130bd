//! Record framing: how one `Record` is laid out on disk and read back.
//!
//! ```text
//! +----------------+----------------+--------+-----------------+
//! | length: u32 LE | crc32: u32 LE  | type   | payload         |
//! +----------------+----------------+--------+-----------------+
//!   length = 1 + payload bytes (never 0, so a zero length marks the end)
//!   crc32  = CRC-32 (IEEE, crc32fast) of the length bytes, the type byte and the payload
//! ```

use super::error::WalError;

/// Bytes before the body of every frame: the length and the checksum.
pub(crate) const FRAME_HEADER_BYTES: usize = 8;

const TYPE_ENTRY: u8 = 1;
const TYPE_STATE: u8 = 2;
const TYPE_SNAPSHOT: u8 = 3;

/// One unit of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// An encoded raft entry; the WAL only knows its index.
    Entry { index: u64, bytes: Vec<u8> },
    /// An encoded raft hard state; the last one written wins.
    State(Vec<u8>),
    /// The log was compacted up to `index` (term `term`): entries at or
    /// below it are not needed on replay. The highest snapshot written wins.
    Snapshot { index: u64, term: u64 },
}

impl Record {
    /// Number of bytes this record occupies on disk, frame header included.
    pub(crate) fn frame_len(&self) -> usize {
        FRAME_HEADER_BYTES + 1 + self.payload_len()
    }

    fn payload_len(&self) -> usize {
        match self {
            Record::Entry { bytes, .. } => 8 + bytes.len(),
            Record::State(bytes) => bytes.len(),
            Record::Snapshot { .. } => 16,
        }
    }

    /// Fails if the record cannot be framed (its body exceeds `u32::MAX`).
    pub(crate) fn check_size(&self) -> Result<(), WalError> {
        let body_len = 1 + self.payload_len();
        if u32::try_from(body_len).is_err() {
            return Err(WalError::RecordTooLarge { bytes: body_len });
        }
        Ok(())
    }

    /// Appends the framed record to `out`. Call `check_size` first.
    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Record::Entry { index, bytes } => {
                encode_frame(out, TYPE_ENTRY, &[&index.to_le_bytes(), bytes]);
            }
            Record::State(bytes) => encode_state(out, bytes),
            Record::Snapshot { index, term } => encode_snapshot(out, *index, *term),
        }
    }
}

/// Appends a framed `State` record holding `state`.
pub(crate) fn encode_state(out: &mut Vec<u8>, state: &[u8]) {
    encode_frame(out, TYPE_STATE, &[state]);
}

/// Appends a framed `Snapshot` record.
pub(crate) fn encode_snapshot(out: &mut Vec<u8>, index: u64, term: u64) {
    encode_frame(out, TYPE_SNAPSHOT, &[&index.to_le_bytes(), &term.to_le_bytes()]);
}

fn encode_frame(out: &mut Vec<u8>, record_type: u8, payload_parts: &[&[u8]]) {
    let payload_len: usize = payload_parts.iter().map(|part| part.len()).sum();
    let body_len = u32::try_from(1 + payload_len).expect("record size checked before encoding");
    let start = out.len();
    out.extend_from_slice(&body_len.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.push(record_type);
    for part in payload_parts {
        out.extend_from_slice(part);
    }
    let checksum = frame_checksum(&out[start..start + 4], &out[start + FRAME_HEADER_BYTES..]);
    out[start + 4..start + FRAME_HEADER_BYTES].copy_from_slice(&checksum.to_le_bytes());
}

fn frame_checksum(length_bytes: &[u8], body: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(length_bytes);
    hasher.update(body);
    hasher.finalize()
}

/// What was found at one offset of a segment.
#[derive(Debug)]
pub(crate) enum Decoded {
    /// A whole, checksummed record; the next frame starts at `next_offset`.
    Record { record: Record, next_offset: usize },
    /// A zero length field (or fewer than four zero bytes): no more records here.
    /// The caller still has to check that everything after it is zero.
    End,
    /// A frame that was cut short or whose checksum does not match: what a
    /// crash in the middle of a write leaves behind.
    Torn(&'static str),
    /// A frame whose checksum matches but whose content cannot be a record we
    /// wrote. Never a torn write.
    Malformed(&'static str),
}

/// Decodes the frame starting at `offset` of `buffer`.
pub(crate) fn decode_at(buffer: &[u8], offset: usize) -> Decoded {
    let rest = &buffer[offset..];
    if rest.len() < 4 {
        return if is_all_zero(rest) { Decoded::End } else { Decoded::Torn("truncated frame header") };
    }
    let body_len = u32::from_le_bytes(rest[..4].try_into().expect("four bytes")) as usize;
    if body_len == 0 {
        return Decoded::End;
    }
    if rest.len() < FRAME_HEADER_BYTES {
        return Decoded::Torn("truncated frame header");
    }
    if rest.len() - FRAME_HEADER_BYTES < body_len {
        return Decoded::Torn("record runs past the end of the file");
    }
    let stored_checksum = u32::from_le_bytes(rest[4..8].try_into().expect("four bytes"));
    let body = &rest[FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + body_len];
    if frame_checksum(&rest[..4], body) != stored_checksum {
        return Decoded::Torn("checksum mismatch");
    }
    match decode_body(body) {
        Ok(record) => Decoded::Record { record, next_offset: offset + FRAME_HEADER_BYTES + body_len },
        Err(reason) => Decoded::Malformed(reason),
    }
}

fn decode_body(body: &[u8]) -> Result<Record, &'static str> {
    let (record_type, payload) = body.split_first().expect("body length is at least one");
    match *record_type {
        TYPE_ENTRY => {
            let index_bytes = payload.get(..8).ok_or("entry record shorter than its index")?;
            Ok(Record::Entry { index: read_u64(index_bytes), bytes: payload[8..].to_vec() })
        }
        TYPE_STATE => Ok(Record::State(payload.to_vec())),
        TYPE_SNAPSHOT if payload.len() == 16 => {
            Ok(Record::Snapshot { index: read_u64(&payload[..8]), term: read_u64(&payload[8..]) })
        }
        TYPE_SNAPSHOT => Err("snapshot record has the wrong length"),
        _ => Err("unknown record type"),
    }
}

fn read_u64(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes.try_into().expect("eight bytes"))
}

/// True when every byte is zero (the state of preallocated, unwritten space).
/// Works in blocks so that the common case (megabytes of zeros) vectorizes.
pub(crate) fn is_all_zero(bytes: &[u8]) -> bool {
    bytes.chunks(4096).all(|block| block.iter().fold(0u8, |seen, &byte| seen | byte) == 0)
}
