//! Plain HTTP on the client port, next to gRPC (as etcd serves it), and on `--listen-metrics-urls`:
//! `/metrics` (see `crate::metrics`), `/health` with etcd's JSON, and `/livez` and `/readyz` for
//! orchestrators.
//!
//! `/health` follows etcd 3.4: `{"health":"true"}` (200) when this member knows a leader, no alarm is
//! active and a linearizable read succeeds within a second; otherwise `{"health":"false"}` with 503 (the
//! reason is logged). `/livez` answers while the process serves at all; `/readyz` when it can serve linearizable
//! requests.

use crate::member::Shared;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::get;
use std::sync::Arc;
use std::time::Duration;

/// How long the health check's linearizable read may take.
const READ_TIMEOUT: Duration = Duration::from_secs(1);

/// The HTTP routes, to merge with the gRPC services.
pub fn routes(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(unknown)
        .with_state(shared)
}

/// Why this member is not healthy, if it is not.
async fn unhealthy(shared: &Shared) -> Option<String> {
    if shared.node.snapshot().leader == 0 {
        return Some("RAFT NO LEADER".to_string());
    }
    let alarms = shared.read_view().ok()?.alarms().ok()?;
    if let Some(alarm) = alarms.first() {
        return Some(format!("ALARM {}", keel_state::alarm::describe(alarm).trim()));
    }
    match tokio::time::timeout(READ_TIMEOUT, shared.proposer.read_barrier()).await {
        Ok(Ok(())) => None,
        Ok(Err(error)) => Some(format!("QGET ERROR: {}", error.message())),
        Err(_) => Some("QGET ERROR: timed out".to_string()),
    }
}

async fn health(State(shared): State<Arc<Shared>>) -> (StatusCode, String) {
    match unhealthy(&shared).await {
        None => (StatusCode::OK, r#"{"health":"true"}"#.to_string()),
        Some(reason) => {
            // The body is etcd 3.4's exactly (its error path adds a newline); the reason goes to the log.
            tracing::warn!(%reason, "/health: unhealthy");
            (StatusCode::SERVICE_UNAVAILABLE, "{\"health\":\"false\"}\n".to_string())
        }
    }
}

/// OpenMetrics for scrapers that ask for it (Prometheus does), etcd's text format 0.0.4 for the rest.
async fn metrics(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> impl axum::response::IntoResponse {
    use crate::metrics::format;
    let text = crate::metrics::render(&shared.live().await);
    let accept = headers.get(header::ACCEPT).and_then(|value| value.to_str().ok());
    if format::wants_openmetrics(accept) {
        ([(header::CONTENT_TYPE, format::OPENMETRICS)], text)
    } else {
        ([(header::CONTENT_TYPE, format::TEXT)], format::to_classic_text(&text))
    }
}

async fn readyz(State(shared): State<Arc<Shared>>) -> (StatusCode, String) {
    match unhealthy(&shared).await {
        None => (StatusCode::OK, "ok".to_string()),
        Some(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {reason}")),
    }
}

/// What no route serves. A gRPC call to a service Keel does not register (etcd's Auth, say) gets what
/// grpc-go answers, a gRPC UNIMPLEMENTED status (HTTP 200, trailers only), not an HTTP 404 a gRPC
/// client cannot read; anything else gets the 404.
async fn unknown(request: axum::extract::Request) -> axum::response::Response {
    use axum::response::IntoResponse;
    let grpc = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/grpc"));
    if !grpc {
        return (StatusCode::NOT_FOUND, "404 page not found\n").into_response();
    }
    let path = request.uri().path().trim_start_matches('/');
    let message = match path.split_once('/') {
        Some((service, _)) => format!("unknown service {service}"),
        None => format!("malformed method name: {:?}", request.uri().path()),
    };
    let status = tonic::Status::unimplemented(message);
    let mut response = axum::http::Response::new(axum::body::Body::empty());
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(header::CONTENT_TYPE, axum::http::HeaderValue::from_static("application/grpc"));
    if let Err(error) = status.add_header(response.headers_mut()) {
        tracing::warn!(%error, "encoding a gRPC status failed");
    }
    response
}
