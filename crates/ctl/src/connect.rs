//! Endpoints (with or without `http://`, as etcdctl takes them) and connections to them.

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};

/// The URL of an endpoint given as `host:port` or `http://host:port`.
pub fn url(endpoint: &str) -> String {
    if endpoint.contains("://") { endpoint.to_string() } else { format!("http://{endpoint}") }
}

pub async fn channel(endpoint: &str) -> anyhow::Result<Channel> {
    let url = url(endpoint);
    Endpoint::from_shared(url.clone())
        .with_context(|| format!("bad endpoint {endpoint:?}"))?
        .connect_timeout(Duration::from_secs(3))
        .tcp_nodelay(true)
        .connect()
        .await
        .with_context(|| format!("cannot connect to {url}: is the member running, and is this its client URL?"))
}

/// A progress bar over `total` bytes on stderr (drawn only on a terminal).
pub fn byte_bar(total: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}

/// A spinner for work whose size is unknown.
pub fn spinner(what: String) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_message(what);
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// Bytes in binary units, for summaries.
pub fn bytes(count: u64) -> String {
    indicatif::BinaryBytes(count).to_string()
}
