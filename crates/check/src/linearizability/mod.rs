//! The generic linearizability checker.
//!
//! A history is linearizable when every operation can be given one instant between its call and its
//! return at which it takes effect, such that applying the operations one at a time in the order of those
//! instants to a sequential [`Model`] gives exactly the outputs the clients saw. Operations that never
//! returned may take effect at any instant after their call, or never (which is the same as last).
//!
//! The history is first split by [`Model::partition`]: operations on different keys never constrain each
//! other, so each key is searched alone (P-compositionality), which keeps the search small. Each
//! partition is searched separately, within one [`Budget`]; the verdict is [`CheckResult`].

mod search;
mod taken;

use crate::history::Operation;
use search::SearchOutcome;
use std::collections::HashMap;
use std::fmt::{self, Debug, Display};
use std::hash::Hash;
use std::time::{Duration, Instant};

/// A sequential specification: the state of one partition and what each operation does to it.
pub trait Model {
    /// The state of one partition. It is hashed into the search's cache, so keep it small.
    type State: Clone + Eq + Hash + Debug;
    type Input: Debug;
    /// What an operation returned. It must be able to say "unknown" for operations that never returned;
    /// [`Model::step`] accepts an unknown output from any state.
    type Output: Debug;
    /// Which partition an operation belongs to; operations in different partitions are independent.
    type Partition: Clone + Eq + Hash + Debug;

    /// The state of every partition before the first operation.
    fn init(&self) -> Self::State;

    /// The state after `input` takes effect in `state` and answers `output`, or `None` when `output`
    /// cannot be the answer from `state`.
    fn step(&self, state: &Self::State, input: &Self::Input, output: &Self::Output) -> Option<Self::State>;

    /// Whether `output` can never be the answer to `input`, from `state` or from any state the model can
    /// reach from it. A search whose frontier holds such an operation abandons that prefix at once instead
    /// of exploring everything until the operation's return. Answering `false` is always safe (the
    /// default); answering `true` wrongly makes legal histories illegal.
    fn impossible_from(&self, state: &Self::State, input: &Self::Input, output: &Self::Output) -> bool {
        let _ = (state, input, output);
        false
    }

    /// The partition `input` belongs to.
    fn partition(&self, input: &Self::Input) -> Self::Partition;

    /// How a partition is named in explanations.
    fn describe_partition(&self, partition: &Self::Partition) -> String {
        format!("{partition:?}")
    }
}

/// The verdict on a whole history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckResult {
    /// Every partition has a linearization.
    Ok,
    /// At least one partition has none; each is explained. Partitions still undecided when the budget
    /// ran out are not listed.
    Illegal(Vec<IllegalPartition>),
    /// The [`Budget`] ran out before every partition was decided, and none decided so far is illegal.
    /// Holds the names of the undecided partitions.
    Timeout(Vec<String>),
}

impl CheckResult {
    pub fn is_ok(&self) -> bool {
        matches!(self, CheckResult::Ok)
    }

    pub fn is_illegal(&self) -> bool {
        matches!(self, CheckResult::Illegal(_))
    }
}

impl Display for CheckResult {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckResult::Ok => write!(formatter, "linearizable"),
            CheckResult::Illegal(partitions) => {
                writeln!(formatter, "not linearizable: {} partition(s) have no linearization", partitions.len())?;
                partitions.iter().try_for_each(|partition| write!(formatter, "{partition}"))
            }
            CheckResult::Timeout(partitions) => write!(
                formatter,
                "unknown: the budget ran out with {} partition(s) undecided: {}",
                partitions.len(),
                partitions.join(", ")
            ),
        }
    }
}

/// Why one partition has no linearization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IllegalPartition {
    /// The partition's name, from [`Model::describe_partition`].
    pub partition: String,
    /// How many operations of the history belong to the partition.
    pub operations: usize,
    /// The longest linearizable prefix the search found, as indices into the checked history, in the
    /// order they took effect.
    pub longest_prefix: Vec<usize>,
    /// The state after that prefix.
    pub state_after_prefix: String,
    /// The operations that could have been next after that prefix (called before any remaining operation
    /// returned), as indices into the history. None of them leads to a full linearization.
    pub stuck: Vec<usize>,
    /// A human-readable account of the above, with each operation's client, times, input and output.
    pub explanation: String,
}

impl Display for IllegalPartition {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}", self.explanation)
    }
}

/// How many operations of the longest prefix an explanation shows, counting back from its end.
const PREFIX_TAIL_SHOWN: usize = 10;
/// How many of the operations that could have been next an explanation shows.
const CANDIDATES_SHOWN: usize = 20;

/// How long a check may run, and how much it may remember. A search that needs more gives an unknown
/// verdict, [`CheckResult::Timeout`], rather than run for ever or exhaust the machine's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// For the whole check.
    pub time: Duration,
    /// The most configurations (set of operations taken, state) the search of one partition remembers;
    /// each costs about a hundred bytes.
    pub explored: usize,
}

impl Budget {
    /// The default limit on remembered configurations: around a gigabyte.
    pub const DEFAULT_EXPLORED: usize = 10_000_000;
}

/// A time budget, with the default limit on memory.
impl From<Duration> for Budget {
    fn from(time: Duration) -> Self {
        Budget { time, explored: Budget::DEFAULT_EXPLORED }
    }
}

/// Checks whether `history` is linearizable with respect to `model`, within `budget` (a [`Budget`], or
/// a [`Duration`] for a time budget alone).
///
/// # Panics
/// When an operation returns before it is called: the recorder's clock is broken.
pub fn check<M: Model>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    budget: impl Into<Budget>,
) -> CheckResult {
    let budget = budget.into();
    let started = Instant::now();
    let deadline = started.checked_add(budget.time).unwrap_or(started + Duration::from_secs(86_400 * 365));
    for (index, op) in history.iter().enumerate() {
        assert!(
            op.return_or_infinity() >= op.call_time,
            "operation {index} returns at {:?}, before its call at {}",
            op.return_time,
            op.call_time
        );
    }

    // Partitions in order of first appearance, so the verdict does not depend on hashing.
    let mut partition_of: HashMap<M::Partition, usize> = HashMap::new();
    let mut partitions: Vec<(M::Partition, Vec<usize>)> = Vec::new();
    for (index, op) in history.iter().enumerate() {
        let key = model.partition(&op.input);
        let slot = *partition_of.entry(key.clone()).or_insert_with(|| {
            partitions.push((key, Vec::new()));
            partitions.len() - 1
        });
        partitions[slot].1.push(index);
    }

    let mut illegal = Vec::new();
    let mut undecided = Vec::new();
    for (key, indices) in &partitions {
        if Instant::now() >= deadline {
            undecided.push(model.describe_partition(key));
            continue;
        }
        let operations: Vec<_> = indices.iter().map(|&index| &history[index]).collect();
        match search::search(model, &operations, deadline, budget.explored) {
            SearchOutcome::Linearizable => {}
            SearchOutcome::Timeout => undecided.push(model.describe_partition(key)),
            SearchOutcome::Illegal { longest, state_after } => {
                illegal.push(explain(model, history, key, indices, &longest, &state_after));
            }
        }
    }
    if !illegal.is_empty() {
        CheckResult::Illegal(illegal)
    } else if !undecided.is_empty() {
        CheckResult::Timeout(undecided)
    } else {
        CheckResult::Ok
    }
}

/// Builds the account of an illegal partition from the longest prefix its search found.
fn explain<M: Model>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    key: &M::Partition,
    indices: &[usize],
    longest: &[usize],
    state_after: &M::State,
) -> IllegalPartition {
    let prefix: Vec<usize> = longest.iter().map(|&position| indices[position]).collect();
    let mut taken = vec![false; indices.len()];
    for &position in longest {
        taken[position] = true;
    }
    let remaining: Vec<usize> =
        (0..indices.len()).filter(|&position| !taken[position]).map(|position| indices[position]).collect();
    // The remaining operation that returns first must take effect by then; everything called by that
    // time could have been next.
    let first_return = remaining.iter().map(|&index| history[index].return_or_infinity()).min().unwrap_or(u64::MAX);
    let stuck: Vec<usize> =
        remaining.iter().copied().filter(|&index| history[index].call_time <= first_return).collect();

    let name = model.describe_partition(key);
    let mut text = format!(
        "partition {name}: {} operation(s), no linearization; the longest linearizable prefix has {} operation(s)\n",
        indices.len(),
        prefix.len()
    );
    if prefix.len() > PREFIX_TAIL_SHOWN {
        text.push_str(&format!("  ... {} earlier operation(s) of the prefix\n", prefix.len() - PREFIX_TAIL_SHOWN));
    }
    for &index in &prefix[prefix.len().saturating_sub(PREFIX_TAIL_SHOWN)..] {
        text.push_str(&format!("  took effect: {}\n", describe_operation(index, &history[index])));
    }
    text.push_str(&format!("  state after the prefix: {state_after:?}\n"));
    if first_return != u64::MAX {
        text.push_str(&format!(
            "  some operation must take effect by t={first_return}, but none of these can be next:\n"
        ));
    }
    for &index in stuck.iter().take(CANDIDATES_SHOWN) {
        let op = &history[index];
        let why = match model.step(state_after, &op.input, &op.output) {
            None if model.impossible_from(state_after, &op.input, &op.output) => {
                "the model rejects this output from that state and from any later one".to_string()
            }
            None => "the model rejects this output from that state".to_string(),
            Some(state) => format!("possible next (state {state:?}), but every continuation fails"),
        };
        text.push_str(&format!("  candidate:   {}: {why}\n", describe_operation(index, op)));
    }
    if stuck.len() > CANDIDATES_SHOWN {
        text.push_str(&format!("  ... {} more candidate(s)\n", stuck.len() - CANDIDATES_SHOWN));
    }
    IllegalPartition {
        partition: name,
        operations: indices.len(),
        longest_prefix: prefix,
        state_after_prefix: format!("{state_after:?}"),
        stuck,
        explanation: text,
    }
}

fn describe_operation<Input: Debug, Output: Debug>(index: usize, op: &Operation<Input, Output>) -> String {
    let returned = match op.return_time {
        Some(time) => time.to_string(),
        None => "never".to_string(),
    };
    format!("#{index} client {} [{}, {returned}] {:?} -> {:?}", op.client, op.call_time, op.input, op.output)
}

#[cfg(test)]
mod tests;
