//! etcd's Watch service: each bidirectional stream gets its own task (see `crate::watch`).

use super::Shared;
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
    shared: Arc<Shared>,
    hub: Arc<WatchHub>,
    progress_interval: Duration,
    max_response_bytes: usize,
}

impl WatchService {
    pub fn new(
        shared: Arc<Shared>,
        hub: Arc<WatchHub>,
        progress_interval: Duration,
        max_response_bytes: usize,
    ) -> Self {
        WatchService { shared, hub, progress_interval, max_response_bytes }
    }
}

type ResponseStream = Pin<Box<dyn tokio_stream::Stream<Item = Result<WatchResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = ResponseStream;

    async fn watch(&self, request: Request<Streaming<WatchRequest>>) -> Result<Response<Self::WatchStream>, Status> {
        let (sender, receiver) = mpsc::channel(STREAM_QUEUE);
        tokio::spawn(run_stream(
            self.shared.clone(),
            self.hub.clone(),
            request.into_inner(),
            sender,
            self.progress_interval,
            self.max_response_bytes,
        ));
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(receiver))))
    }
}
