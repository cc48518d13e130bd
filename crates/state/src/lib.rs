//! Keel's deterministic state machine: what a committed Raft entry does to the store.
//!
//! # Layout
//! - [`backend`]: the redb file, its tables and meta keys, and the durability split (most commits are
//!   not fsynced; the Raft WAL is what makes writes durable).
//! - [`mvcc`]: revisions, the key index (each key's head and history), range/put/delete/txn, compaction.
//! - [`lease`]: lease records and the keys attached to them (expiry is the leader's, as proposals).
//! - [`alarm`]: NOSPACE and CORRUPT, raised through the log; the quota's cost estimates.
//! - [`member`]: what each member published about itself; [`defrag_claim`]: the right to defragment.
//! - [`apply`]: one batch of committed entries -> one backend transaction, applied index included. It
//!   composes the stores: the MVCC `WriteView` (revisions, put, delete, compaction), the `LeaseStore`,
//!   the `MemberStore`, and the alarms and the defrag claim in the meta table.
//!
//! Nothing here knows about tokio, clocks, sockets or Raft: the same entries give the same store.

pub mod alarm;
pub mod apply;
pub mod backend;
pub mod defrag_claim;
pub mod error;
pub mod lease;
pub mod member;
pub mod mvcc;
mod revision;

pub use apply::{Applied, AppliedState, BatchOutcome, Entry, Response, StateMachine};
pub use error::StateError;
pub use lease::LeaseChange;
pub use revision::Revision;
