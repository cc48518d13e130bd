//! Keel's Raft: raft-rs's `RawNode` driven by one thread, over a write-ahead log of our own.
//!
//! # Layout
//! - [`wal`]: preallocated segments of CRC-framed records, fdatasync, torn-tail repair.
//! - [`log_store`]: raft-rs's `Storage` (its `MemStorage`) backed by the WAL; compaction.
//! - [`node`]: the node thread: commands in, Ready handled in one function, committed entries out.
//!
//! This crate knows nothing of the state machine: entries are bytes to it.

pub mod log_store;
pub mod node;
pub mod wal;

pub use log_store::{
    Bootstrap, LogError, LogStore, Recovered, decode_conf_state, decode_message, encode_conf_state, encode_message,
};
pub use node::{
    Command, NoPeers, NodeConfig, NodeError, NodeHandle, NodeStatus, Outbox, StatusSnapshot, Transport, command_queue,
    start,
};
pub use raft;
