//! The leader's periodic corruption check (etcd's `--experimental-corrupt-check-time`): it hashes its
//! store's revisions up to its current revision (HashKV), asks every other member for its hash at the same
//! revision over the peer service, and when a member's hash differs while both stand at the same compact
//! revision, raises a CORRUPT alarm for that member, through the log. While CORRUPT is active, the cluster
//! refuses every write (`etcdserver: corrupt cluster`).

use crate::member::Shared;
use keel_api::etcdserverpb::{AlarmRequest, AlarmType, HashKvRequest, alarm_request};
use keel_api::keelpb::internal_request::Request;
use keel_api::keelpb::peer_client::PeerClient;
use keel_state::mvcc::Reader;
use std::sync::Arc;
use std::time::Duration;

pub async fn run(interval: Duration, shared: Arc<Shared>, peers: Vec<(u64, String)>) {
    let mut ticker = tokio::time::interval(interval);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        if shared.node.snapshot().leader != shared.member.member_id {
            continue;
        }
        let local = {
            let shared = shared.clone();
            tokio::task::spawn_blocking(move || {
                let view = shared.read_view().ok()?;
                let (hash, revision) = view.hash_kv(0).ok()?;
                Some((hash, revision, view.compact_revision()))
            })
            .await
            .ok()
            .flatten()
        };
        let Some((hash, revision, compacted)) = local else { continue };
        for (peer, url) in peers.iter().filter(|(id, _)| *id != shared.member.member_id) {
            let Some(answer) = ask(url, revision).await else { continue };
            if answer.hash == hash {
                continue;
            }
            if answer.compact_revision != compacted {
                tracing::debug!(
                    peer = format_args!("{peer:x}"),
                    "hashes differ at different compact revisions; not comparable"
                );
                continue;
            }
            tracing::error!(
                peer = format_args!("{peer:x}"),
                revision,
                leader_hash = hash,
                peer_hash = answer.hash,
                compact_revision = compacted,
                "CORRUPTION: a member's store differs from the leader's at the same revision; raising the CORRUPT alarm"
            );
            let raise = AlarmRequest {
                action: alarm_request::AlarmAction::Activate as i32,
                member_id: *peer,
                alarm: AlarmType::Corrupt as i32,
            };
            if let Err(error) = shared.proposer.propose(Request::Alarm(raise)).await {
                tracing::warn!(%error, "raising the CORRUPT alarm failed");
            }
        }
    }
}

/// A member's HashKV at `revision`; None when it cannot answer (down, or behind that revision).
async fn ask(url: &str, revision: i64) -> Option<keel_api::etcdserverpb::HashKvResponse> {
    let endpoint =
        tonic::transport::Endpoint::from_shared(url.to_string()).ok()?.connect_timeout(Duration::from_secs(1));
    let mut client = PeerClient::new(endpoint.connect().await.ok()?);
    let call = client.hash_kv(HashKvRequest { revision });
    match tokio::time::timeout(Duration::from_secs(5), call).await {
        Ok(Ok(response)) => Some(response.into_inner()),
        Ok(Err(status)) => {
            tracing::debug!(url, %status, "a member could not hash its store at the leader's revision");
            None
        }
        Err(_) => None,
    }
}
