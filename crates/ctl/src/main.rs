//! `keelctl`: what Keel's operators need beyond `etcdctl`.
//!
//! # Layout
//! - [`snapshot`]: `snapshot save | status | restore` (backups, and restoring a new cluster from one).
//! - [`defrag`]: `defrag`, one member at a time, leader last, optionally only where it pays off.
//! - [`check`]: `check disk` (fsync latency of a data dir) and `check perf` (a cluster under write load),
//!   each with a verdict against etcd's guidance.
//! - [`connect`]: endpoints and connections.

mod check;
mod connect;
mod defrag;
mod snapshot;

use clap::{Parser, Subcommand};

/// keelctl: backups, safe defragmentation and checks for Keel (and etcd) clusters.
#[derive(Debug, Parser)]
#[command(name = "keelctl", version, about)]
struct Cli {
    /// Client endpoints of the members (comma-separated), as etcdctl's --endpoints.
    #[arg(long, global = true, env = "ETCDCTL_ENDPOINTS", value_delimiter = ',', default_value = "127.0.0.1:2379")]
    endpoints: Vec<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Backups: save a snapshot of a member, show what a snapshot holds, restore a new cluster from one.
    #[command(subcommand)]
    Snapshot(snapshot::Command),
    /// Defragments members one at a time (followers first, the leader last).
    Defrag(defrag::Args),
    /// Checks a disk or a cluster against etcd's guidance.
    #[command(subcommand)]
    Check(check::Command),
}

fn main() {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
    let result = runtime.block_on(async {
        match cli.command {
            Command::Snapshot(command) => snapshot::run(command, &cli.endpoints).await,
            Command::Defrag(args) => defrag::run(args, &cli.endpoints).await,
            Command::Check(command) => check::run(command, &cli.endpoints).await,
        }
    });
    match result {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(error) => {
            eprintln!("Error: {error:#}");
            std::process::exit(2);
        }
    }
}
