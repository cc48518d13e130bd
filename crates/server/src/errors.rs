//! The one place where the member's errors become gRPC statuses: request errors carry etcd's codes and
//! exact messages (`keel_api::errors`), fatal backend errors are logged and answered as INTERNAL.

use keel_api::EtcdError;
use keel_state::StateError;

/// The one mapping of state errors to gRPC statuses.
pub fn status(error: StateError) -> tonic::Status {
    match error {
        StateError::Request(error) => error.into(),
        fatal => {
            tracing::error!(error = %fatal, "request failed on a backend error");
            tonic::Status::internal(format!("keel: {fatal}"))
        }
    }
}

pub fn etcd(error: EtcdError) -> tonic::Status {
    error.into()
}

/// An applied request produced a response of another kind than its request: a bug, reported as such.
pub fn mismatch(method: &str, response: &keel_state::Response) -> tonic::Status {
    tracing::error!(method, ?response, "applied response does not match the request");
    tonic::Status::internal(format!("keel: {method} got a response of another kind"))
}
