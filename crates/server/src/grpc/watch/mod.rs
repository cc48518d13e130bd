//! etcd's Watch service: each bidirectional stream gets its own task (see `crate::watch`).

use super::Shared;
use crate::shutdown::Shutdown;
mod stream;

use crate::watch::WatchHub;
use keel_api::etcdserverpb::watch_server::Watch;
use keel_api::etcdserverpb::{WatchRequest, WatchResponse};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use stream::run as run_stream;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

/// Responses queued per stream before its task waits for the client to read.
const STREAM_QUEUE: usize = 64;

pub struct WatchService {
    pub shared: Arc<Shared>,
    pub hub: Arc<WatchHub>,
    pub progress_interval: Duration,
    /// etcd fragments watch responses at the gRPC receive limit, not at --max-request-bytes.
    pub max_response_bytes: usize,
    /// Ends every stream when the member stops.
    pub shutdown: Shutdown,
}

type ResponseStream = Pin<Box<dyn tokio_stream::Stream<Item = Result<WatchResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = ResponseStream;

    async fn watch(&self, request: Request<Streaming<WatchRequest>>) -> Result<Response<Self::WatchStream>, Status> {
        let (sender, receiver) = mpsc::channel(STREAM_QUEUE);
        super::spawn_stream(
            &self.shutdown,
            sender.clone(),
            run_stream(
                self.shared.clone(),
                self.hub.clone(),
                request.into_inner(),
                sender,
                self.progress_interval,
                self.max_response_bytes,
            ),
        );
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(receiver))))
    }
}
