//! gRPC request counters as go-grpc-prometheus names them (`grpc_server_started_total`,
//! `grpc_server_handled_total` by `grpc_type`, `grpc_service`, `grpc_method` and `grpc_code`), and the
//! client bytes etcd counts, from a tower layer around the client services.
//!
//! A call is handled when its status is known: from the response headers when the handler failed
//! before answering (gRPC's "trailers-only" reply), else from the trailers at the end of the response
//! body; a body dropped before its trailers (the client went away) counts as `Canceled`.

use super::{Labels, get};
use http_body::{Body, Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tonic::codegen::Bytes;

/// Wraps the client services to count their calls.
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcMetricsLayer;

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> GrpcMetrics<S> {
        GrpcMetrics { inner }
    }
}

#[derive(Debug, Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S> tower::Service<http::Request<tonic::body::Body>> for GrpcMetrics<S>
where
    S: tower::Service<http::Request<tonic::body::Body>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let is_grpc = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|value| value.as_bytes().starts_with(b"application/grpc"));
        let call = if is_grpc { Call::of(request.uri().path()) } else { None };
        let Some(call) = call else { return Box::pin(self.inner.call(request)) };
        get().grpc_started.get_or_create(&call.labels).inc();
        let request = request.map(|body| tonic::body::Body::new(Counted { inner: body, sent: false, call: None }));
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await?;
            let (parts, body) = response.into_parts();
            let mut call = Some(call);
            if let Some(code) = parts.headers.get("grpc-status") {
                call.take().expect("set above").handled(code.as_bytes());
            }
            Ok(http::Response::from_parts(parts, tonic::body::Body::new(Counted { inner: body, sent: true, call })))
        })
    }
}

/// One call, until its status is counted.
struct Call {
    labels: Labels,
}

impl Call {
    fn of(path: &str) -> Option<Call> {
        let (service, method) = path.strip_prefix('/')?.split_once('/')?;
        let kind = match (service, method) {
            ("etcdserverpb.Watch", "Watch") | ("etcdserverpb.Lease", "LeaseKeepAlive") => "bidi_stream",
            ("etcdserverpb.Maintenance", "Snapshot") => "server_stream",
            _ => "unary",
        };
        let labels = vec![
            ("grpc_type", kind.to_string()),
            ("grpc_service", service.to_string()),
            ("grpc_method", method.to_string()),
        ];
        Some(Call { labels })
    }

    fn handled(self, code: &[u8]) {
        let code = std::str::from_utf8(code).ok().and_then(|code| code.trim().parse::<i32>().ok()).unwrap_or(2);
        let mut labels = self.labels;
        labels.push(("grpc_code", code_name(code).to_string()));
        get().grpc_handled.get_or_create(&labels).inc();
    }
}

/// gRPC's code names, as go-grpc-prometheus writes them.
fn code_name(code: i32) -> &'static str {
    match code {
        0 => "OK",
        1 => "Canceled",
        2 => "Unknown",
        3 => "InvalidArgument",
        4 => "DeadlineExceeded",
        5 => "NotFound",
        6 => "AlreadyExists",
        7 => "PermissionDenied",
        8 => "ResourceExhausted",
        9 => "FailedPrecondition",
        10 => "Aborted",
        11 => "OutOfRange",
        12 => "Unimplemented",
        13 => "Internal",
        14 => "Unavailable",
        15 => "DataLoss",
        16 => "Unauthenticated",
        _ => "Unknown",
    }
}

/// A body that counts its bytes (sent or received) and, for a response, counts the call handled.
struct Counted {
    inner: tonic::body::Body,
    sent: bool,
    call: Option<Call>,
}

impl Body for Counted {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let counter = if self.sent { &get().client_sent_bytes } else { &get().client_received_bytes };
                    counter.inc_by(data.len() as u64);
                } else if let Some(trailers) = frame.trailers_ref() {
                    let code = trailers.get("grpc-status").map_or(&b"0"[..], |code| code.as_bytes()).to_vec();
                    if let Some(call) = self.call.take() {
                        call.handled(&code);
                    }
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(call) = self.call.take() {
                    call.handled(b"2");
                }
            }
            Poll::Ready(None) => {
                if let Some(call) = self.call.take() {
                    call.handled(b"0");
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        if let Some(call) = self.call.take() {
            call.handled(b"1");
        }
    }
}
