//! `keel`: one member of a Keel cluster, speaking etcd's v3 API.
//!
//! # Layout
//! Modules depend downwards only, in this order (`tests/module_dag.rs` checks that the imports form a
//! DAG and that this order holds):
//! - [`serve`]: bootstraps the member and wires and serves everything; shutdown order.
//! - [`grpc`]: one file per etcd service; validation; Watch streams.
//! - [`http`]: `/metrics`, `/health`, `/livez`, `/readyz`.
//! - [`space`]: auto-compaction, self-driving defrag, the corruption check.
//! - [`member`]: the member context every service shares, and bootstrap (identity, conf state, log).
//! - [`peer`]: Raft messages and snapshots between members over the peer URLs.
//! - [`applier`]: the thread that applies committed entries to the state machine.
//! - [`lease`]: the lessor: lease clocks, expiry and checkpoints as the leader's proposals.
//! - [`propose`]: request ids, waiting callers, ReadIndex rounds.
//! - [`watch`]: the watch hub the applier feeds.
//! - leaves: [`config`] (etcd's flags, config file and `ETCD_*` variables), [`datadir`] (every path in the
//!   data dir), [`errors`] (errors to gRPC statuses), [`metrics`] (etcd's Prometheus metrics and the
//!   latency warnings), [`shutdown`] (the one stop signal).
//!
//! A write: gRPC handler -> validate -> `Proposer::propose` -> Raft node (WAL fsync) -> committed ->
//! applier -> state machine -> the caller's reply.

mod applier;
mod config;
mod datadir;
mod errors;
mod grpc;
mod http;
mod lease;
mod member;
mod metrics;
mod peer;
mod propose;
mod serve;
mod shutdown;
mod space;
mod watch;

use tracing_subscriber::EnvFilter;

fn main() -> anyhow::Result<()> {
    let loaded = match config::load(std::env::args_os().collect(), std::env::vars().collect()) {
        Ok(loaded) => loaded,
        Err(config::load::LoadError::Clap(error)) => error.exit(),
        Err(config::load::LoadError::Refused(reasons)) => {
            for reason in reasons {
                eprintln!("keel: {reason}");
            }
            std::process::exit(2);
        }
    };
    let config = loaded.config;
    let filter = EnvFilter::try_from_env("KEEL_LOG").unwrap_or_else(|_| EnvFilter::new(config.log_filter()));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).init();
    for note in &loaded.notes {
        tracing::warn!("{note}");
    }
    let settings = match config.settings() {
        Ok(settings) => settings,
        Err(error) => {
            tracing::error!("{error}");
            std::process::exit(2);
        }
    };
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("keel").build()?;
    runtime.block_on(async {
        let shutdown = shutdown::Shutdown::default();
        let on_signal = shutdown.clone();
        tokio::spawn(async move {
            signal().await;
            on_signal.raise(shutdown::Reason::Requested);
        });
        serve::run(settings, shutdown).await
    })
}

async fn signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
