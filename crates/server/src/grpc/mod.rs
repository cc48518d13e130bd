//! The client-facing gRPC services, one file per etcd service. Requests are validated here, with
//! etcd's checks and errors, before anything is proposed or read.

/// Proposes `$request`, waits for it to be applied, and answers with the `$variant` response it produced,
/// its header completed with this member's identity.
macro_rules! propose_and_reply {
    ($self:ident, $request:expr, $variant:path, $method:literal) => {
        match $self.shared.proposer.propose($request).await.map_err($crate::grpc::etcd)? {
            $variant(mut response) => {
                response.header = $self.shared.header(response.header);
                Ok(tonic::Response::new(response))
            }
            other => Err($crate::grpc::mismatch($method, &other)),
        }
    };
}

pub mod authority;
pub mod backup;
pub mod cluster;
pub mod kv;
pub mod lease;
pub mod maintenance;
pub mod validate;
pub mod watch;

use crate::errors::{etcd, mismatch, status};
use crate::member::Shared;
