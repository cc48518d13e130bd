//! Keel's history checkers, the judging half of the fault-injection suite.
//!
//! Test clients record every operation they send to a cluster: when it was called, when (and whether) it
//! returned, and what it returned. This crate decides whether such a history could have come from one
//! copy of the data applying the operations one at a time (linearizability), and whether the watch
//! streams the clients received miss, repeat or disagree about any change.
//!
//! # Layout
//! - [`history`]: one recorded [`Operation`]; an operation whose outcome is unknown has no return time.
//! - [`linearizability`]: the [`Model`] trait and the generic checker, [`check`] (Wing & Gong's search
//!   with Lowe's memoization, one partition at a time).
//! - [`kv`]: the model of etcd's key-value store for Get / Put / Delete / compare-and-set, one partition
//!   per key, optionally checking revisions; and [`patch_unknown_outcomes`], which pins down unknown
//!   outcomes from what other operations and the watch streams saw.
//! - [`watch`]: the watch-stream checker, [`check_watches`], against the acknowledged writes.
//!
//! A run's check: [`check_watches`] on the watch streams; then [`check`] with [`KvModel`] on the history,
//! after [`patch_unknown_outcomes`] with the [`observed_changes`] if a watcher saw the whole run.
//!
//! Nothing here talks to a cluster or reads a clock except for the time budget of [`check`]; the
//! recorders live with the tests that drive the cluster.

pub mod history;
pub mod kv;
pub mod linearizability;
pub mod watch;

pub use history::Operation;
pub use kv::{
    KvInput, KvModel, KvOperation, KvOutput, KvState, LastChange, acknowledged_writes, patch_unknown_outcomes,
};
pub use linearizability::{Budget, CheckResult, IllegalPartition, Model, check};
pub use watch::{Change, Event, WatchStream, WatchViolation, check_watches, observed_changes};
