//! Auto-compaction with etcd's meaning of `--auto-compaction-mode` / `--auto-compaction-retention`:
//! - periodic: keep `retention` of history; every min(retention, 1h) the leader compacts to the revision
//!   that was current `retention` ago (revisions are sampled ten times per interval, as etcd does);
//! - revision: keep the last `retention` revisions; the leader looks every check interval (etcd: 5m).
//!
//! Every member samples; only the leader proposes, so a new leader carries on at once.

use crate::config::AutoCompaction;
use crate::member::Shared;
use keel_api::etcdserverpb::CompactionRequest;
use keel_api::keelpb::internal_request::Request;
use keel_state::mvcc::Reader;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

pub async fn run(mode: AutoCompaction, shared: Arc<Shared>) {
    match mode {
        AutoCompaction::Off => {}
        AutoCompaction::Periodic(retention) => periodic(retention, &shared).await,
        AutoCompaction::Revision { keep, check_interval } => {
            let mut ticker = tokio::time::interval(check_interval);
            loop {
                ticker.tick().await;
                if let Some((revision, _)) = revisions(&shared) {
                    compact(&shared, revision - keep, "revision").await;
                }
            }
        }
    }
}

async fn periodic(retention: Duration, shared: &Shared) {
    let interval = retention.min(Duration::from_secs(3600));
    let sample_every = interval / 10;
    let mut samples: VecDeque<(Instant, i64)> = VecDeque::new();
    let mut ticker = tokio::time::interval(sample_every);
    let mut last_compaction = Instant::now();
    loop {
        ticker.tick().await;
        let now = Instant::now();
        if let Some((revision, _)) = revisions(shared) {
            samples.push_back((now, revision));
        }
        // The newest sample at least `retention` old is where history may start.
        let Some(cutoff) = now.checked_sub(retention) else { continue };
        while samples.len() > 1 && samples[1].0 <= cutoff {
            samples.pop_front();
        }
        if now.duration_since(last_compaction) < interval {
            continue;
        }
        if let Some(&(taken, revision)) = samples.front().filter(|(taken, _)| *taken <= cutoff) {
            last_compaction = now;
            tracing::debug!(
                age_ms = now.duration_since(taken).as_millis() as u64,
                revision,
                "periodic compaction point"
            );
            compact(shared, revision, "periodic").await;
        }
    }
}

/// The store's current and compacted revisions.
fn revisions(shared: &Shared) -> Option<(i64, i64)> {
    let view = shared.read_view().ok()?;
    Some((view.revision(), view.compact_revision()))
}

/// Compacts to `revision` if this member leads and there is something new to compact.
async fn compact(shared: &Shared, revision: i64, mode: &str) {
    if shared.node.snapshot().leader != shared.member.member_id {
        return;
    }
    let Some((_, compacted)) = revisions(shared) else { return };
    if revision <= compacted || revision <= 1 {
        return;
    }
    let request = Request::Compaction(CompactionRequest { revision, physical: false });
    match shared.proposer.propose(request).await {
        Ok(_) => tracing::info!(revision, mode, "auto-compaction: compacted"),
        Err(error) => tracing::warn!(revision, mode, %error, "auto-compaction failed; retrying at the next interval"),
    }
}
