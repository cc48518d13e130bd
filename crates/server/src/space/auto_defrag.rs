//! Self-driving defragmentation (what operators script with cron around etcd): every member looks now
//! and then at its own file; when the file is over `threshold` of the quota (with at least a tenth of it
//! free), or more than `threshold` of it is free, the member claims the cluster-wide defrag right through
//! the log, defragments (which does not stall it), and releases the right. A claim expires on its own,
//! so a member that dies while holding it blocks the others for at most `CLAIM_TTL`.

use crate::member::Shared;
use keel_api::keelpb::DefragClaim;
use keel_api::keelpb::internal_request::Request;
use keel_state::Response;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long a claim holds without a release.
const CLAIM_TTL: Duration = Duration::from_secs(600);
/// Files smaller than this are never worth it.
const MIN_FILE_BYTES: u64 = 1024 * 1024;

pub struct Policy {
    pub threshold: f64,
    pub check_interval: Duration,
}

pub async fn run(policy: Policy, shared: Arc<Shared>) {
    // Members started together should not all look at the same moment.
    let jitter = Duration::from_millis(shared.member.member_id % 1000)
        * policy.check_interval.as_millis().min(1000) as u32
        / 1000;
    tokio::time::sleep(jitter).await;
    let mut ticker = tokio::time::interval(policy.check_interval);
    loop {
        ticker.tick().await;
        let Some(reason) = needs_defrag(&policy, &shared).await else { continue };
        match claim(&shared, false).await {
            Some((true, _)) => {}
            Some((false, holder)) => {
                tracing::info!(
                    holder = format_args!("{holder:x}"),
                    reason,
                    "auto-defrag: waiting, another member is defragmenting"
                );
                continue;
            }
            None => continue,
        }
        tracing::info!(reason, "auto-defrag: this member holds the cluster's defrag right; defragmenting");
        match shared.defragmenter.defragment().await {
            Ok(report) => tracing::info!(
                size_before = report.size_before,
                size_after = report.size_after,
                switch_over_ms = report.switch_over.as_millis() as u64,
                "auto-defrag: done"
            ),
            Err(error) => tracing::warn!(%error, "auto-defrag failed"),
        }
        claim(&shared, true).await;
    }
}

/// Why this member's file should be defragmented, if it should.
async fn needs_defrag(policy: &Policy, shared: &Shared) -> Option<String> {
    let size = shared.backend.file_size();
    if size < MIN_FILE_BYTES {
        return None;
    }
    let backend = shared.backend.clone();
    let in_use = tokio::task::spawn_blocking(move || backend.size_in_use()).await.ok()?.ok()?;
    let free = size.saturating_sub(in_use);
    let free_share = free as f64 / size as f64;
    if free_share >= policy.threshold {
        return Some(format!("{:.0}% of the {} MiB file is free", free_share * 100.0, size >> 20));
    }
    let quota = shared.quota?;
    if size as f64 >= policy.threshold * quota as f64 && free_share >= 0.1 {
        return Some(format!(
            "the {} MiB file is over {:.0}% of the {} MiB quota",
            size >> 20,
            policy.threshold * 100.0,
            quota >> 20
        ));
    }
    None
}

/// Claims (or releases) the defrag right; returns (granted, holder) once committed.
async fn claim(shared: &Shared, release: bool) -> Option<(bool, u64)> {
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|since| since.as_millis() as u64).unwrap_or(0);
    let claim = DefragClaim {
        member_id: shared.member.member_id,
        release,
        now_ms,
        expires_ms: now_ms + CLAIM_TTL.as_millis() as u64,
    };
    match shared.proposer.propose(Request::DefragClaim(claim)).await {
        Ok(Response::DefragClaim { granted, holder }) => Some((granted, holder)),
        Ok(other) => {
            tracing::error!(?other, "a defrag claim got another kind of answer");
            None
        }
        Err(error) => {
            tracing::debug!(%error, release, "defrag claim not committed");
            None
        }
    }
}
