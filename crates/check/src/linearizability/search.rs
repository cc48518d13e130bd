//! The search for a linearization of one partition: Wing & Gong's algorithm with Lowe's memoization.
//!
//! The calls and returns of the partition's operations are laid out in time order in a doubly linked
//! list. Walking the list from the front, any call met before the first return is an operation that may
//! take effect next. Taking one (the model accepts its output from the current state) removes its call
//! and return from the list and starts again from the front; meeting a return means the operation that
//! returns there was not taken in time, so the last choice is undone and the next candidate after it is
//! tried. Lowe's cache remembers every (set of operations taken, state) pair already explored, since the
//! rest of the search only depends on that pair.
//!
//! The choices live on an explicit stack, so a history of any depth is searched without recursion.

use super::Model;
use crate::history::Operation;
use std::collections::{HashMap, HashSet};
use std::time::Instant;

/// What the search concluded about one partition.
pub(super) enum SearchOutcome<State> {
    Linearizable,
    /// No linearization exists. `longest` is the longest linearizable prefix found (positions in the
    /// partition's operation slice, in linearization order), and `state_after` the state it leads to.
    Illegal { longest: Vec<usize>, state_after: State },
    /// The deadline passed first.
    Timeout,
}

/// How many search steps run between two looks at the clock.
const STEPS_BETWEEN_CLOCK_READS: u32 = 1024;

/// Searches for a linearization of `operations`, which all belong to one partition.
pub(super) fn search<M: Model>(
    model: &M,
    operations: &[&Operation<M::Input, M::Output>],
    deadline: Instant,
) -> SearchOutcome<M::State> {
    let mut list = EntryList::new(operations);
    let bit_of = bit_positions(operations);
    let mut state = model.init();
    let mut taken = Bitset::new(operations.len());
    // Each distinct state gets a number, so the cache holds a number rather than a copy of the state.
    let mut state_numbers: HashMap<M::State, usize> = HashMap::new();
    let mut explored: HashSet<(CompactSet, usize)> = HashSet::new();
    let mut choices: Vec<Choice<M::State>> = Vec::new();
    let mut longest: Vec<usize> = Vec::new();
    let mut longest_state = state.clone();
    let mut steps_until_clock = STEPS_BETWEEN_CLOCK_READS;

    let mut node = list.first();
    while !list.is_empty() {
        steps_until_clock -= 1;
        if steps_until_clock == 0 {
            steps_until_clock = STEPS_BETWEEN_CLOCK_READS;
            if Instant::now() >= deadline {
                return SearchOutcome::Timeout;
            }
        }
        match list.entries[node] {
            Entry::Call { operation, .. } => {
                let op = operations[operation];
                if let Some(next_state) = model.step(&state, &op.input, &op.output) {
                    taken.insert(bit_of[operation]);
                    let number = match state_numbers.get(&next_state) {
                        Some(&number) => number,
                        None => {
                            let number = state_numbers.len();
                            state_numbers.insert(next_state.clone(), number);
                            number
                        }
                    };
                    if explored.insert((taken.compact(), number)) {
                        choices.push(Choice { call_node: node, operation, state_before: state });
                        state = next_state;
                        list.lift(node);
                        node = list.first();
                        continue;
                    }
                    taken.remove(bit_of[operation]);
                }
                node = list.next[node];
            }
            Entry::Return => {
                // A dead end: remember it if it is the deepest so far (every deepest prefix ends in one).
                if choices.len() > longest.len() {
                    longest = choices.iter().map(|choice| choice.operation).collect();
                    longest_state = state.clone();
                }
                // The operation returning here was never taken: undo the last choice, try the next call.
                let Some(choice) = choices.pop() else {
                    return SearchOutcome::Illegal { longest, state_after: longest_state };
                };
                state = choice.state_before;
                taken.remove(bit_of[choice.operation]);
                list.unlift(choice.call_node);
                node = list.next[choice.call_node];
            }
            Entry::Head | Entry::Tail => unreachable!("the walk starts after the head and meets a return first"),
        }
    }
    SearchOutcome::Linearizable
}

/// Each operation's bit in the set of taken operations: returned operations in call order, then the
/// unfinished ones. The operations taken so far are then mostly a run of ones followed by zeros, which
/// [`Bitset::compact`] stores in a few words.
fn bit_positions<Input, Output>(operations: &[&Operation<Input, Output>]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..operations.len()).collect();
    order.sort_by_key(|&operation| (operations[operation].return_time.is_none(), operations[operation].call_time));
    let mut bit_of = vec![0; operations.len()];
    for (bit, operation) in order.into_iter().enumerate() {
        bit_of[operation] = bit;
    }
    bit_of
}

/// One operation taken into the linearization, with what is needed to take it back.
struct Choice<State> {
    call_node: usize,
    operation: usize,
    state_before: State,
}

#[derive(Debug, Clone, Copy)]
enum Entry {
    Head,
    Call { operation: usize, return_node: usize },
    Return,
    Tail,
}

/// The calls and returns in time order, as a doubly linked list over fixed slots so that an entry can be
/// unlinked and relinked in place ("dancing links"). Slot 0 is the head, the last slot the tail.
struct EntryList {
    entries: Vec<Entry>,
    next: Vec<usize>,
    previous: Vec<usize>,
}

impl EntryList {
    fn new<Input, Output>(operations: &[&Operation<Input, Output>]) -> Self {
        // (time, returns after calls at the same instant, operation, is a return)
        let mut events: Vec<(u64, u8, usize)> = Vec::with_capacity(operations.len() * 2);
        for (index, op) in operations.iter().enumerate() {
            events.push((op.call_time, 0, index));
            events.push((op.return_or_infinity(), 1, index));
        }
        // Calls sort before returns at the same instant: two operations that touch are concurrent.
        events.sort_unstable();

        let slots = events.len() + 2;
        let mut entries = Vec::with_capacity(slots);
        entries.push(Entry::Head);
        let mut return_node = vec![0; operations.len()];
        for (position, &(_, is_return, operation)) in events.iter().enumerate() {
            if is_return == 1 {
                return_node[operation] = position + 1;
                entries.push(Entry::Return);
            } else {
                entries.push(Entry::Call { operation, return_node: 0 });
            }
        }
        entries.push(Entry::Tail);
        for entry in &mut entries {
            if let Entry::Call { operation, return_node: slot } = entry {
                *slot = return_node[*operation];
            }
        }
        EntryList {
            entries,
            next: (1..=slots).collect(),
            previous: (0..slots).map(|slot| slot.saturating_sub(1)).collect(),
        }
    }

    fn first(&self) -> usize {
        self.next[0]
    }

    fn is_empty(&self) -> bool {
        self.next[0] == self.entries.len() - 1
    }

    /// Takes a call and its return out of the list.
    fn lift(&mut self, call_node: usize) {
        let Entry::Call { return_node, .. } = self.entries[call_node] else {
            unreachable!("only calls are lifted")
        };
        self.unlink(call_node);
        self.unlink(return_node);
    }

    /// Puts back what [`EntryList::lift`] took out; lifts are undone in the reverse order.
    fn unlift(&mut self, call_node: usize) {
        let Entry::Call { return_node, .. } = self.entries[call_node] else {
            unreachable!("only calls are lifted")
        };
        self.relink(return_node);
        self.relink(call_node);
    }

    fn unlink(&mut self, node: usize) {
        let (previous, next) = (self.previous[node], self.next[node]);
        self.next[previous] = next;
        self.previous[next] = previous;
    }

    fn relink(&mut self, node: usize) {
        let (previous, next) = (self.previous[node], self.next[node]);
        self.next[previous] = node;
        self.previous[next] = node;
    }
}

/// The set of operations taken so far, one bit per operation of the partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Bitset {
    words: Vec<u64>,
}

impl Bitset {
    fn new(bits: usize) -> Self {
        Bitset { words: vec![0; bits.div_ceil(64)] }
    }

    fn insert(&mut self, bit: usize) {
        self.words[bit / 64] |= 1 << (bit % 64);
    }

    fn remove(&mut self, bit: usize) {
        self.words[bit / 64] &= !(1 << (bit % 64));
    }

    /// The same set without its leading all-ones words and trailing all-zeros words, for the cache.
    fn compact(&self) -> CompactSet {
        let start = self.words.iter().position(|&word| word != u64::MAX).unwrap_or(self.words.len());
        let end = self.words.iter().rposition(|&word| word != 0).map_or(start, |last| (last + 1).max(start));
        CompactSet { full_words: start, words: self.words[start..end].into() }
    }
}

/// A [`Bitset`] of known length as its count of leading all-ones words and the words after them, up to
/// the last one with a bit set.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CompactSet {
    full_words: usize,
    words: Box<[u64]>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lift_and_unlift_restore_the_list() {
        let a = Operation::completed(0, (), (), 0, 10);
        let b = Operation::completed(1, (), (), 5, 6);
        let operations = [&a, &b];
        let mut list = EntryList::new(&operations);
        let order = |list: &EntryList| {
            let mut nodes = Vec::new();
            let mut node = list.first();
            while node != list.entries.len() - 1 {
                nodes.push(node);
                node = list.next[node];
            }
            nodes
        };
        assert_eq!(order(&list), vec![1, 2, 3, 4]);
        list.lift(2); // b: call at 5 (slot 2), return at 6 (slot 3)
        assert_eq!(order(&list), vec![1, 4]);
        list.lift(1);
        assert!(list.is_empty());
        list.unlift(1);
        list.unlift(2);
        assert_eq!(order(&list), vec![1, 2, 3, 4]);
    }

    #[test]
    fn bitset_sets_and_clears_bits_across_words() {
        let mut bits = Bitset::new(130);
        bits.insert(0);
        bits.insert(129);
        assert_eq!(bits.words, vec![1, 0, 2]);
        bits.remove(0);
        assert_eq!(bits.words, vec![0, 0, 2]);
    }

    #[test]
    fn compact_sets_drop_full_and_empty_words() {
        let mut bits = Bitset::new(256);
        assert_eq!(bits.compact(), CompactSet { full_words: 0, words: Box::new([]) });
        (0..64).for_each(|bit| bits.insert(bit));
        bits.insert(130);
        assert_eq!(bits.compact(), CompactSet { full_words: 1, words: Box::new([0, 4]) });
        (64..256).for_each(|bit| bits.insert(bit));
        assert_eq!(bits.compact(), CompactSet { full_words: 4, words: Box::new([]) });
    }
}
