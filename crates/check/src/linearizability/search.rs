//! The search for a linearization of one partition: Wing & Gong's algorithm with Lowe's memoization.
//!
//! The calls and returns of the partition's operations are laid out in time order in a doubly linked
//! list. Walking the list from the front, any call met before the first return is an operation that may
//! take effect next. Taking one (the model accepts its output from the current state) removes its call
//! and return from the list and starts again from the front; meeting a return means the operation that
//! returns there was not taken in time, so the last choice is undone and the next candidate after it is
//! tried. Lowe's cache remembers every (set of operations taken, state) pair already explored, since the
//! rest of the search only depends on that pair. When the model can tell that an operation which could be
//! next will never be possible again ([`Model::impossible_from`]), the choice that led there is undone at
//! once.
//!
//! The choices live on an explicit stack, so a history of any depth is searched without recursion.

use super::Model;
use super::taken::{CompactSet, TakenSet};
use crate::history::Operation;
use std::collections::{HashMap, HashSet};
use std::time::Instant;

/// What the search concluded about one partition.
pub(super) enum SearchOutcome<State> {
    Linearizable,
    /// No linearization exists. `longest` is the longest linearizable prefix found (positions in the
    /// partition's operation slice, in linearization order), and `state_after` the state it leads to.
    Illegal {
        longest: Vec<usize>,
        state_after: State,
    },
    /// The deadline passed, or the cache grew to its limit, first.
    Timeout,
}

/// How many search steps run between two looks at the clock.
const STEPS_BETWEEN_CLOCK_READS: u32 = 1024;

/// Searches for a linearization of `operations`, which all belong to one partition.
pub(super) fn search<M: Model>(
    model: &M,
    operations: &[&Operation<M::Input, M::Output>],
    deadline: Instant,
    max_explored: usize,
) -> SearchOutcome<M::State> {
    let mut list = EntryList::new(operations);
    let (mut taken, bit_of) = TakenSet::for_operations(operations);
    let mut state = model.init();
    // Each distinct state gets a number, so the cache holds a number rather than a copy of the state.
    let mut state_numbers: HashMap<M::State, usize> = HashMap::new();
    let mut explored: HashSet<(CompactSet, usize)> = HashSet::new();
    let mut choices: Vec<Choice<M::State>> = Vec::new();
    let mut deepest = DeepestDeadEnd { operations: Vec::new(), state: state.clone(), unchanged: 0 };
    let mut steps_until_clock = STEPS_BETWEEN_CLOCK_READS;

    let mut node = list.first();
    while !list.is_empty() {
        steps_until_clock -= 1;
        if steps_until_clock == 0 {
            steps_until_clock = STEPS_BETWEEN_CLOCK_READS;
            if Instant::now() >= deadline || explored.len() >= max_explored {
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
                        list.lift(node);
                        if !list.frontier_has(|other| {
                            model.impossible_from(&next_state, &operations[other].input, &operations[other].output)
                        }) {
                            choices.push(Choice { call_node: node, operation, state_before: state });
                            state = next_state;
                            node = list.first();
                            continue;
                        }
                        // A dead end too: one of the next candidates can never be taken.
                        deepest.offer(&choices, Some(operation), &next_state);
                        list.unlift(node);
                    }
                    taken.remove(bit_of[operation]);
                }
                node = list.next[node];
            }
            Entry::Return => {
                // A dead end: the operation returning here was never taken. Undo the last choice and try
                // the next call after it.
                deepest.offer(&choices, None, &state);
                let Some(choice) = choices.pop() else {
                    return SearchOutcome::Illegal { longest: deepest.operations, state_after: deepest.state };
                };
                deepest.unchanged = deepest.unchanged.min(choices.len());
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

/// The deepest dead end found so far: the longest linearizable prefix, for the explanation.
struct DeepestDeadEnd<State> {
    operations: Vec<usize>,
    state: State,
    /// How many choices at the bottom of the stack are the same as when the dead end was recorded; only
    /// the rest is copied when a new one is recorded.
    unchanged: usize,
}

impl<State: Clone> DeepestDeadEnd<State> {
    /// Records the dead end after `choices` (and `extra`, when taking it made a candidate impossible)
    /// if it is at least as deep as the deepest so far. Among equally deep ones the last found wins: it
    /// comes after more wrong choices were undone, so it tends to point at the real culprit.
    fn offer(&mut self, choices: &[Choice<State>], extra: Option<usize>, state: &State) {
        if choices.len() + usize::from(extra.is_some()) < self.operations.len() {
            return;
        }
        self.operations.truncate(self.unchanged);
        self.operations.extend(choices[self.unchanged..].iter().map(|choice| choice.operation));
        self.operations.extend(extra);
        self.unchanged = choices.len();
        self.state = state.clone();
    }
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
        // (time, 0 for a call or 1 for a return, operation)
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

    /// Whether an operation called before the first return (one that could be next) passes `test`.
    fn frontier_has(&self, mut test: impl FnMut(usize) -> bool) -> bool {
        let mut node = self.first();
        while let Entry::Call { operation, .. } = self.entries[node] {
            if test(operation) {
                return true;
            }
            node = self.next[node];
        }
        false
    }

    /// Takes a call and its return out of the list.
    fn lift(&mut self, call_node: usize) {
        let Entry::Call { return_node, .. } = self.entries[call_node] else { unreachable!("only calls are lifted") };
        self.unlink(call_node);
        self.unlink(return_node);
    }

    /// Puts back what [`EntryList::lift`] took out; lifts are undone in the reverse order.
    fn unlift(&mut self, call_node: usize) {
        let Entry::Call { return_node, .. } = self.entries[call_node] else { unreachable!("only calls are lifted") };
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
}
