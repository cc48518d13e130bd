//! The history of one key: a list of generations, as etcd's `keyIndex`.
//!
//! A generation runs from the put that creates a key to the delete (tombstone) that ends it; the last
//! generation is the live one and is empty while the key does not exist. `version` counts the puts of a
//! generation, including the ones compaction has dropped, so versions stay right after compaction.
//!
//! Unlike etcd, Keel keeps this index in the backend (one encoded record per key) instead of in memory:
//! reads get a consistent snapshot from the backend's read transaction, restart needs no index rebuild,
//! and memory does not grow with the key count.

use crate::revision::Revision;
use prost::encoding::{decode_varint, encode_varint};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Generation {
    /// The revision of the put that created the key in this generation.
    pub created: Revision,
    /// Puts in this generation so far, compacted ones included.
    pub version: i64,
    /// Revisions still retained, oldest first; in a closed generation the last one is the tombstone.
    pub revisions: Vec<Revision>,
}

/// What a key was at some revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyAt {
    pub modified: Revision,
    pub created: Revision,
    pub version: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyIndex {
    generations: Vec<Generation>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyIndexError {
    #[error("key index record is malformed")]
    Malformed,
}

impl KeyIndex {
    /// Whether the key has no retained history at all (it can be dropped from the index).
    pub fn is_empty(&self) -> bool {
        self.generations.iter().all(|generation| generation.revisions.is_empty())
    }

    /// The key as it is now, if it exists.
    pub fn current(&self) -> Option<KeyAt> {
        let live = self.generations.last()?;
        let modified = *live.revisions.last()?;
        Some(KeyAt { modified, created: live.created, version: live.version })
    }

    /// Records a put at `revision`.
    pub fn put(&mut self, revision: Revision) {
        if self.generations.is_empty() {
            self.generations.push(Generation::default());
        }
        let live = self.generations.last_mut().expect("at least one generation");
        if live.revisions.is_empty() {
            live.created = revision;
        }
        live.revisions.push(revision);
        live.version += 1;
    }

    /// Records a delete at `revision`; the caller checks that the key exists.
    pub fn tombstone(&mut self, revision: Revision) {
        debug_assert!(self.current().is_some(), "tombstone of a key that does not exist");
        self.put(revision);
        self.generations.push(Generation::default());
    }

    /// The key as it was at main revision `at`, if it existed then.
    pub fn get(&self, at: i64) -> Option<KeyAt> {
        let generation = self.find_generation(at)?;
        let position = generation.revisions.iter().rposition(|revision| revision.main <= at)?;
        let newer = (generation.revisions.len() - position - 1) as i64;
        Some(KeyAt {
            modified: generation.revisions[position],
            created: generation.created,
            version: generation.version - newer,
        })
    }

    fn find_generation(&self, at: i64) -> Option<&Generation> {
        let last = self.generations.len().checked_sub(1)?;
        for (position, generation) in self.generations.iter().enumerate().rev() {
            let (Some(first), Some(end)) = (generation.revisions.first(), generation.revisions.last()) else {
                continue;
            };
            if position != last && end.main <= at {
                // The generation was closed by a tombstone at or before `at`.
                return None;
            }
            if first.main <= at {
                return Some(generation);
            }
        }
        None
    }

    /// Drops history below main revision `at`, keeping for each generation alive at `at` the newest
    /// revision at or below it. Returns the revisions removed, which the caller deletes from the backend.
    pub fn compact(&mut self, at: i64) -> Vec<Revision> {
        let mut removed = Vec::new();
        if self.generations.is_empty() {
            return removed;
        }
        let last = self.generations.len() - 1;
        // Skip generations that ended (by tombstone) at or before `at`: all of their history goes.
        let mut first_kept = 0;
        while first_kept < last {
            let generation = &self.generations[first_kept];
            match generation.revisions.last() {
                Some(tombstone) if tombstone.main > at => break,
                _ => first_kept += 1,
            }
        }
        for generation in self.generations.drain(..first_kept) {
            removed.extend(generation.revisions);
        }
        let is_last = self.generations.len() == 1;
        let generation = &mut self.generations[0];
        if let Some(position) = generation.revisions.iter().rposition(|revision| revision.main <= at) {
            removed.extend(generation.revisions.drain(..position));
            if generation.revisions.len() == 1 && !is_last {
                // What remains at `at` is the tombstone itself: the key did not exist then.
                removed.extend(generation.revisions.drain(..));
                self.generations.remove(0);
            }
        }
        removed
    }

    /// Every retained revision, oldest first.
    pub fn revisions(&self) -> impl Iterator<Item = Revision> + '_ {
        self.generations.iter().flat_map(|generation| generation.revisions.iter().copied())
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut buffer = Vec::with_capacity(16 + self.generations.len() * 24);
        encode_varint(self.generations.len() as u64, &mut buffer);
        for generation in &self.generations {
            encode_varint(generation.created.main as u64, &mut buffer);
            encode_varint(generation.created.sub as u64, &mut buffer);
            encode_varint(generation.version as u64, &mut buffer);
            encode_varint(generation.revisions.len() as u64, &mut buffer);
            let mut previous = 0i64;
            for revision in &generation.revisions {
                // Mains grow within a generation, so store the difference.
                encode_varint((revision.main - previous) as u64, &mut buffer);
                encode_varint(revision.sub as u64, &mut buffer);
                previous = revision.main;
            }
        }
        buffer
    }

    pub fn decode(mut bytes: &[u8]) -> Result<Self, KeyIndexError> {
        let buffer = &mut bytes;
        let mut read = || decode_varint(buffer).map_err(|_| KeyIndexError::Malformed);
        let count = read()? as usize;
        let mut generations = Vec::with_capacity(count.min(1024));
        for _ in 0..count {
            let created = Revision::new(read()? as i64, read()? as i64);
            let version = read()? as i64;
            let revision_count = read()? as usize;
            let mut revisions = Vec::with_capacity(revision_count.min(4096));
            let mut previous = 0i64;
            for _ in 0..revision_count {
                let main = previous + read()? as i64;
                revisions.push(Revision::new(main, read()? as i64));
                previous = main;
            }
            generations.push(Generation { created, version, revisions });
        }
        Ok(KeyIndex { generations })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev(main: i64) -> Revision {
        Revision::new(main, 0)
    }

    /// put 2, put 4, delete 6, put 8, put 10: the shape etcd's own keyIndex tests use.
    fn sample() -> KeyIndex {
        let mut index = KeyIndex::default();
        index.put(rev(2));
        index.put(rev(4));
        index.tombstone(rev(6));
        index.put(rev(8));
        index.put(rev(10));
        index
    }

    #[test]
    fn get_follows_generations() {
        let index = sample();
        assert_eq!(index.get(1), None);
        assert_eq!(index.get(2), Some(KeyAt { modified: rev(2), created: rev(2), version: 1 }));
        assert_eq!(index.get(5), Some(KeyAt { modified: rev(4), created: rev(2), version: 2 }));
        assert_eq!(index.get(6), None);
        assert_eq!(index.get(7), None);
        assert_eq!(index.get(9), Some(KeyAt { modified: rev(8), created: rev(8), version: 1 }));
        assert_eq!(index.get(100), Some(KeyAt { modified: rev(10), created: rev(8), version: 2 }));
    }

    #[test]
    fn compact_keeps_what_is_visible_at_the_compact_point() {
        let mut index = sample();
        assert_eq!(index.compact(5), vec![rev(2)]);
        assert_eq!(index.get(5).map(|at| at.version), Some(2));
        assert_eq!(index.compact(6), vec![rev(4), rev(6)]);
        assert_eq!(index.get(6), None);
        assert_eq!(index.get(10).map(|at| at.version), Some(2));
        assert_eq!(index.compact(9), Vec::<Revision>::new());
        assert_eq!(index.compact(10), vec![rev(8)]);
        assert_eq!(index.current().map(|at| at.version), Some(2));
        assert!(!index.is_empty());
    }

    #[test]
    fn compact_past_a_final_tombstone_empties_the_index() {
        let mut index = KeyIndex::default();
        index.put(rev(2));
        index.tombstone(rev(3));
        assert_eq!(index.compact(3), vec![rev(2), rev(3)]);
        assert!(index.is_empty());
    }

    #[test]
    fn encoding_round_trips() {
        let index = sample();
        assert_eq!(KeyIndex::decode(&index.encode()), Ok(index));
        assert_eq!(KeyIndex::decode(&[5]), Err(KeyIndexError::Malformed));
    }
}
