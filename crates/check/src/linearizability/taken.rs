//! The set of operations taken into a linearization so far, and its compact form for Lowe's cache.
//!
//! The cache holds one set per explored configuration, so its size is what bounds a search's memory.
//! Returned operations get bits in call order: the taken ones are then a run of ones, a window of mixed
//! words around the search's frontier, and zeros. Unfinished operations get bits of their own after them,
//! since they may stay untaken while the frontier moves on. The compact form keeps only the window and
//! the unfinished words.

use crate::history::Operation;

/// One bit per operation of a partition; see the module documentation for the order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TakenSet {
    words: Vec<u64>,
    /// Where the unfinished operations' words start.
    split: usize,
}

/// A [`TakenSet`] without its leading all-ones words and trailing all-zeros words, in each of its two
/// parts. Within one partition, equal sets have equal compact forms and unequal ones unequal forms.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct CompactSet {
    full_words: u32,
    window_words: u32,
    /// The window of the returned operations' words, then the unfinished operations' words.
    words: Box<[u64]>,
}

impl TakenSet {
    /// An empty set for `operations`, and each operation's bit in it.
    pub(super) fn for_operations<Input, Output>(operations: &[&Operation<Input, Output>]) -> (Self, Vec<usize>) {
        let mut order: Vec<usize> = (0..operations.len()).collect();
        order.sort_by_key(|&operation| operations[operation].call_time);
        let returned = operations.iter().filter(|op| op.return_time.is_some()).count();
        let unfinished = operations.len() - returned;
        let split = returned.div_ceil(64);
        let mut bit_of = vec![0; operations.len()];
        let (mut next_returned, mut next_unfinished) = (0, split * 64);
        for operation in order {
            let next =
                if operations[operation].return_time.is_some() { &mut next_returned } else { &mut next_unfinished };
            bit_of[operation] = *next;
            *next += 1;
        }
        let set = TakenSet { words: vec![0; split + unfinished.div_ceil(64)], split };
        (set, bit_of)
    }

    pub(super) fn insert(&mut self, bit: usize) {
        self.words[bit / 64] |= 1 << (bit % 64);
    }

    pub(super) fn remove(&mut self, bit: usize) {
        self.words[bit / 64] &= !(1 << (bit % 64));
    }

    pub(super) fn compact(&self) -> CompactSet {
        let (returned, unfinished) = self.words.split_at(self.split);
        let full = returned.iter().position(|&word| word != u64::MAX).unwrap_or(returned.len());
        let end = returned.iter().rposition(|&word| word != 0).map_or(full, |last| (last + 1).max(full));
        let unfinished_end = unfinished.iter().rposition(|&word| word != 0).map_or(0, |last| last + 1);
        let words: Vec<u64> = returned[full..end].iter().chain(&unfinished[..unfinished_end]).copied().collect();
        CompactSet { full_words: full as u32, window_words: (end - full) as u32, words: words.into_boxed_slice() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn returned(call: u64) -> Operation<(), ()> {
        Operation::completed(0, (), (), call, call + 1)
    }

    #[test]
    fn returned_operations_come_first_in_call_order() {
        let (late, unfinished, early) = (returned(9), Operation::unfinished(0, (), (), 0), returned(1));
        let (set, bit_of) = TakenSet::for_operations(&[&late, &unfinished, &early]);
        assert_eq!(bit_of, vec![1, 64, 0]);
        assert_eq!(set.words.len(), 2);
    }

    #[test]
    fn the_compact_form_keeps_the_window_and_the_unfinished_words() {
        let operations: Vec<_> = (0..256).map(returned).collect();
        let unfinished = Operation::unfinished(0, (), (), 3);
        let mut all: Vec<&Operation<(), ()>> = operations.iter().collect();
        all.push(&unfinished);
        let (mut set, bit_of) = TakenSet::for_operations(&all);
        assert_eq!(set.compact(), CompactSet { full_words: 0, window_words: 0, words: Box::new([]) });

        (0..64).for_each(|bit| set.insert(bit));
        set.insert(130);
        assert_eq!(set.compact(), CompactSet { full_words: 1, window_words: 2, words: Box::new([0, 4]) });
        set.insert(bit_of[256]);
        assert_eq!(set.compact(), CompactSet { full_words: 1, window_words: 2, words: Box::new([0, 4, 1]) });
        (64..256).for_each(|bit| set.insert(bit));
        assert_eq!(set.compact(), CompactSet { full_words: 4, window_words: 0, words: Box::new([1]) });
        set.remove(bit_of[256]);
        set.remove(0);
        assert_eq!(
            set.compact(),
            CompactSet {
                full_words: 0,
                window_words: 4,
                words: Box::new([u64::MAX - 1, u64::MAX, u64::MAX, u64::MAX])
            }
        );
    }
}
