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
use crate::shutdown::Shutdown;
use keel_api::EtcdError;
use tokio::sync::mpsc;

/// Runs a stream's task until it ends or the member stops; on stop, the client is told
/// `etcdserver: server stopped` (UNAVAILABLE, so it reconnects elsewhere) and the stream ends, so a
/// watch or keep-alive stream never holds the member's shutdown open.
fn spawn_stream<T: Send + 'static>(
    shutdown: &Shutdown,
    sender: mpsc::Sender<Result<T, tonic::Status>>,
    task: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = task => {}
            () = shutdown.raised() => {
                let _ = sender.try_send(Err(etcd(EtcdError::Stopped)));
            }
        }
    });
}
