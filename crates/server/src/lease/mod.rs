//! The lessor: the clocks of the leases. The state machine knows which leases exist; this knows when
//! each expires. Only the leader acts on it: it renews leases on keep-alive, proposes the revocation of
//! expired ones (so every member deletes the same keys at the same revision), and checkpoints remaining
//! TTLs into the log so a restart or a new leader resumes a long lease instead of starting it over.

use crate::propose::Proposer;
use keel_api::etcdserverpb::{LeaseCheckpoint, LeaseCheckpointRequest, LeaseRevokeRequest};
use keel_api::keelpb::LeaseRecord;
use keel_api::keelpb::internal_request::Request;
use keel_raft::NodeStatus;
use keel_state::LeaseChange;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the leader looks for expired leases.
const EXPIRY_CHECK: Duration = Duration::from_millis(250);
/// How long a proposed revocation may take before it is proposed again.
const REVOKE_RETRY: Duration = Duration::from_secs(3);

struct Lease {
    ttl: i64,
    /// The remaining TTL last checkpointed, until the lease is renewed: what a new leader starts it from.
    checkpointed: Option<i64>,
    expires: Instant,
    revoking_since: Option<Instant>,
}

pub struct Lessor {
    leases: Mutex<HashMap<i64, Lease>>,
    /// The Raft term in which this member last took over the clocks as leader (0: never).
    led_term: Mutex<u64>,
    /// Added to every lease when this member becomes leader (an election timeout).
    extend: Duration,
    /// etcd's minimum TTL: 1.5 election timeouts, rounded up to whole seconds.
    pub min_ttl: i64,
}

fn seconds(ttl: i64) -> Duration {
    Duration::from_secs(ttl.max(0) as u64)
}

/// Clocks for stored leases: each gets its remaining TTL (checkpointed, or the full TTL) from now.
fn clocks(records: Vec<LeaseRecord>) -> HashMap<i64, Lease> {
    let now = Instant::now();
    records
        .into_iter()
        .map(|record| {
            let checkpointed = (record.remaining_ttl > 0).then_some(record.remaining_ttl);
            let remaining = checkpointed.unwrap_or(record.ttl);
            (
                record.id,
                Lease { ttl: record.ttl, checkpointed, expires: now + seconds(remaining), revoking_since: None },
            )
        })
        .collect()
}

impl Lessor {
    /// The leases the state machine holds at start: each gets its remaining TTL (checkpointed, or the full
    /// TTL) from now.
    pub fn new(records: Vec<LeaseRecord>, min_ttl: i64, extend: Duration) -> Self {
        Lessor { leases: Mutex::new(clocks(records)), led_term: Mutex::new(0), extend, min_ttl }
    }

    /// The store was replaced (a Raft snapshot): its leases replace the ones known, with fresh clocks
    /// as at start.
    pub fn restore(&self, records: Vec<LeaseRecord>) {
        *self.leases.lock().expect("lessor lock") = clocks(records);
    }

    /// Called whenever this member acts as leader in `term`: the first time in a term, the clocks are
    /// taken over (etcd's `Promote`) before anything is renewed, answered or expired.
    pub fn lead(&self, term: u64) {
        let mut led = self.led_term.lock().expect("lessor term lock");
        if *led != term {
            *led = term;
            self.promote(self.extend);
        }
    }

    /// What the applier just granted and revoked.
    pub fn applied(&self, changes: &[LeaseChange]) {
        if changes.is_empty() {
            return;
        }
        let mut leases = self.leases.lock().expect("lessor lock");
        for change in changes {
            match change {
                LeaseChange::Granted { id, ttl } => {
                    let expires = Instant::now() + seconds(*ttl);
                    let lease = Lease { ttl: *ttl, checkpointed: None, expires, revoking_since: None };
                    leases.insert(*id, lease);
                }
                LeaseChange::Revoked { id } => {
                    leases.remove(id);
                }
                LeaseChange::Checkpointed { id, remaining_ttl } => {
                    if let Some(lease) = leases.get_mut(id) {
                        lease.checkpointed = Some(*remaining_ttl);
                    }
                }
            }
        }
    }

    /// A keep-alive: the lease's TTL starts over. None for unknown or already expired leases.
    pub fn renew(&self, id: i64) -> Option<i64> {
        let mut leases = self.leases.lock().expect("lessor lock");
        let lease = leases.get_mut(&id)?;
        let now = Instant::now();
        if lease.expires <= now {
            return None;
        }
        lease.expires = now + seconds(lease.ttl);
        lease.checkpointed = None;
        Some(lease.ttl)
    }

    /// Whole seconds left, as etcd reports them; None for unknown leases.
    pub fn remaining(&self, id: i64) -> Option<i64> {
        let leases = self.leases.lock().expect("lessor lock");
        let lease = leases.get(&id)?;
        Some(lease.expires.saturating_duration_since(Instant::now()).as_secs() as i64)
    }

    /// Lease ids, soonest expiry first (etcd's order for `LeaseLeases`).
    pub fn ids_by_expiry(&self) -> Vec<i64> {
        let leases = self.leases.lock().expect("lessor lock");
        let mut ids: Vec<(Instant, i64)> = leases.iter().map(|(id, lease)| (lease.expires, *id)).collect();
        ids.sort();
        ids.into_iter().map(|(_, id)| id).collect()
    }

    /// Expired leases not already being revoked; marks them as being revoked.
    fn take_expired(&self) -> Vec<i64> {
        let now = Instant::now();
        let mut leases = self.leases.lock().expect("lessor lock");
        let mut expired = Vec::new();
        for (id, lease) in leases.iter_mut() {
            let retry = lease.revoking_since.is_none_or(|since| now.duration_since(since) >= REVOKE_RETRY);
            if lease.expires <= now && retry {
                lease.revoking_since = Some(now);
                expired.push(*id);
            }
        }
        expired
    }

    /// A new leader: the clocks a follower kept mean nothing (keep-alives went to the old leader), so every
    /// lease starts again from its checkpointed remaining TTL, or its full TTL, plus `extend` (etcd's
    /// `Promote`), giving clients time to reach the new leader before anything expires.
    fn promote(&self, extend: Duration) {
        let now = Instant::now();
        let mut leases = self.leases.lock().expect("lessor lock");
        for lease in leases.values_mut() {
            lease.expires = now + extend + seconds(lease.checkpointed.unwrap_or(lease.ttl));
            lease.revoking_since = None;
        }
    }

    fn checkpoints(&self) -> Vec<LeaseCheckpoint> {
        let now = Instant::now();
        let leases = self.leases.lock().expect("lessor lock");
        leases
            .iter()
            .map(|(id, lease)| LeaseCheckpoint {
                id: *id,
                remaining_ttl: lease.expires.saturating_duration_since(now).as_secs().max(1) as i64,
            })
            .collect()
    }
}

/// The leader's lease duties, until the member stops: revoke what expired, checkpoint what lives.
pub struct Duties {
    pub member_id: u64,
    pub checkpoint_interval: Duration,
}

/// Checkpoints per proposal, so a proposal stays well under --max-request-bytes (etcd batches 1,000).
const CHECKPOINTS_PER_PROPOSAL: usize = 1000;

pub async fn run(lessor: Arc<Lessor>, proposer: Arc<Proposer>, node: Arc<NodeStatus>, duties: Duties) {
    let Duties { member_id, checkpoint_interval } = duties;
    let mut last_checkpoint = Instant::now();
    let mut ticker = tokio::time::interval(EXPIRY_CHECK);
    loop {
        ticker.tick().await;
        let status = node.snapshot();
        if status.leader != member_id {
            continue;
        }
        lessor.lead(status.term);
        for id in lessor.take_expired() {
            let proposer = proposer.clone();
            tokio::spawn(async move {
                match proposer.propose(Request::LeaseRevoke(LeaseRevokeRequest { id })).await {
                    Ok(_) => tracing::debug!(lease = format_args!("{id:x}"), "expired lease revoked"),
                    Err(error) => tracing::debug!(lease = format_args!("{id:x}"), %error, "revoking an expired lease"),
                }
            });
        }
        if last_checkpoint.elapsed() >= checkpoint_interval {
            last_checkpoint = Instant::now();
            for checkpoints in lessor.checkpoints().chunks(CHECKPOINTS_PER_PROPOSAL) {
                let request = Request::LeaseCheckpoint(LeaseCheckpointRequest { checkpoints: checkpoints.to_vec() });
                if let Err(error) = proposer.propose(request).await {
                    tracing::warn!(%error, "lease checkpoint not committed");
                }
            }
        }
    }
}
