//! etcd's v3 API as Keel speaks it on the wire.
//!
//! # Layout
//! - `proto/mvccpb`, `proto/authpb`, `proto/etcdserverpb`: etcd's packages, wire-compatible (field numbers
//!   and names as etcd's), compiled by `build.rs` with protox.
//! - `proto/keelpb`: Keel's internal messages (what a Raft entry carries).
//! - [`errors`]: etcd's gRPC error codes and exact messages, the only place they are spelled.
//! - [`identity`]: etcd's member and cluster id derivation (and a restored cluster's).

#![allow(clippy::large_enum_variant, clippy::doc_lazy_continuation)]

pub mod errors;
pub mod identity;

pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}

pub mod authpb {
    tonic::include_proto!("authpb");
}

pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}

pub mod keelpb {
    tonic::include_proto!("keelpb");
}

pub use errors::EtcdError;

/// The etcd API version Keel speaks (what `Status.version` and `etcd_server_version` report).
pub const ETCD_API_VERSION: &str = "3.5.0";
