//! Dev-only: starts the real `keel` binary (and, as the reference, the real `etcd`) for black-box tests,
//! the fault-injection suite and benchmarks: single servers and clusters, each member with its data dir
//! and its log (kept in the data dir's parent, shown when a member fails), ready when it answers a
//! linearizable read, stopped by PID (SIGTERM, or SIGKILL on drop).
//!
//! # Addresses without races
//! Every server gets a loopback address of its own ([`fresh_host`]: 127.x.y.z, unique in this process
//! and, through the process id, across the processes of one test run) with fixed ports, so no harness
//! binds port 0, closes it and hopes the server gets it. Keel also takes port 0 and reports what it bound
//! in `<data-dir>/bound-addresses` ([`bound_addresses`]); etcd does not, so the harness does not rely on it.
//!
//! # Layout
//! - [`MemberFlags`], [`fresh_host`]: the flags and addresses a member starts with (all `keel-chaos` takes).
//! - With the `servers` feature (default): `Server`, `Cluster`, and `etcdctl`, `keelctl_run`, `http_get`
//!   to drive the real tools against a server.

mod address;
mod flags;
#[cfg(feature = "servers")]
mod servers;

pub use address::{CLIENT_PORT, PEER_PORT, bound_addresses, fresh_host};
pub use flags::MemberFlags;
#[cfg(feature = "servers")]
pub use servers::*;
