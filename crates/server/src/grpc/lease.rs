//! etcd's Lease service: grant and revoke go through the log; keep-alive, time-to-live and the list are
//! answered by the leader's lessor and the store.

use super::{Shared, etcd, status};
use crate::lease::Lessor;
use crate::peer::{LeaderLink, LeaseRoute};
use crate::shutdown::Shutdown;
use keel_api::EtcdError;
use keel_api::etcdserverpb::lease_server::Lease;
use keel_api::etcdserverpb::*;
use keel_api::keelpb::internal_request::Request as Internal;
use keel_api::keelpb::peer_client::PeerClient;
use keel_api::keelpb::{LeaseAnswer, LeaseQuery};
use keel_state::Response as Applied;
use keel_state::mvcc::Reader;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::mpsc;
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};

pub struct LeaseService {
    shared: Arc<Shared>,
    lessor: Arc<Lessor>,
    leader: Arc<LeaderLink>,
    /// Ends every keep-alive stream when the member stops.
    shutdown: Shutdown,
}

/// Renews a lease where its clock is kept: here when leading, else on the leader.
async fn renew(lessor: &Lessor, leader: &LeaderLink, id: i64) -> Result<i64, Status> {
    let answer = ask_leader(
        leader,
        id,
        |mut client, query| async move { client.lease_renew(query).await },
        |term| lessor.lead(term),
        || lessor.renew(id),
    )
    .await?;
    Ok(answer.unwrap_or(0))
}

/// Asks the member that keeps the lease clocks; while leadership moves (the leader this member knows may be
/// gone), tries again until the request timeout.
async fn ask_leader<Call>(
    leader: &LeaderLink,
    id: i64,
    remote: impl Fn(PeerClient<Channel>, LeaseQuery) -> Call,
    lead: impl Fn(u64),
    local: impl Fn() -> Option<i64>,
) -> Result<Option<i64>, Status>
where
    Call: std::future::Future<Output = Result<Response<LeaseAnswer>, Status>>,
{
    let deadline = tokio::time::Instant::now() + leader.timeout();
    loop {
        let outcome = match leader.route().await.map_err(etcd)? {
            LeaseRoute::Local { term } => {
                lead(term);
                return Ok(local());
            }
            // A leader that stopped answering (paused, partitioned) must not hold the caller forever.
            LeaseRoute::Leader(client) => tokio::time::timeout_at(deadline, remote(client, leader.query(id)))
                .await
                .unwrap_or_else(|_| Err(Status::deadline_exceeded("keel: the leader did not answer"))),
        };
        match outcome {
            Ok(answer) => {
                let answer = answer.into_inner();
                return Ok(answer.found.then_some(answer.ttl));
            }
            Err(status) if tokio::time::Instant::now() < deadline => {
                tracing::debug!(%status, "lease question to the leader failed; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(_) => return Err(etcd(EtcdError::NoLeader)),
        }
    }
}

impl LeaseService {
    pub fn new(shared: Arc<Shared>, lessor: Arc<Lessor>, leader: Arc<LeaderLink>, shutdown: Shutdown) -> Self {
        LeaseService { shared, lessor, leader, shutdown }
    }

    /// The time left on a lease, from the member that keeps the clocks.
    async fn remaining(&self, id: i64) -> Result<Option<i64>, Status> {
        let lessor = &self.lessor;
        ask_leader(
            &self.leader,
            id,
            |mut client, query| async move { client.lease_remaining(query).await },
            |term| lessor.lead(term),
            || lessor.remaining(id),
        )
        .await
    }

    fn current_header(shared: &Shared) -> Result<Option<ResponseHeader>, Status> {
        let revision = shared.read_view()?.revision();
        Ok(shared.header(Some(ResponseHeader { revision, ..Default::default() })))
    }
}

type KeepAliveStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(&self, request: Request<LeaseGrantRequest>) -> Result<Response<LeaseGrantResponse>, Status> {
        let mut request = request.into_inner();
        if request.ttl > keel_state::lease::MAX_TTL {
            return Err(etcd(EtcdError::LeaseTtlTooLarge));
        }
        request.ttl = request.ttl.max(self.lessor.min_ttl);
        self.shared.check_quota(keel_state::alarm::LEASE_COST).await?;
        if request.id == 0 {
            // Chosen here, before the proposal, so every member applies the same id.
            request.id = (self.shared.proposer.next_id() & (i64::MAX as u64)) as i64;
        }
        propose_and_reply!(self, Internal::LeaseGrant(request), Applied::LeaseGrant, "LeaseGrant")
    }

    async fn lease_revoke(
        &self,
        request: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        propose_and_reply!(self, Internal::LeaseRevoke(request.into_inner()), Applied::LeaseRevoke, "LeaseRevoke")
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let mut requests = request.into_inner();
        let (sender, receiver) = mpsc::channel(16);
        let shared = self.shared.clone();
        let lessor = self.lessor.clone();
        let leader = self.leader.clone();
        let responses = sender.clone();
        super::spawn_stream(&self.shutdown, responses, async move {
            while let Ok(Some(request)) = requests.message().await {
                // An unknown or expired lease answers TTL 0, as etcd's does.
                let response = match renew(&lessor, &leader, request.id).await {
                    Ok(ttl) => LeaseService::current_header(&shared).map(|header| LeaseKeepAliveResponse {
                        header,
                        id: request.id,
                        ttl,
                    }),
                    Err(status) => Err(status),
                };
                let failed = response.is_err();
                if sender.send(response).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(receiver))))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let request = request.into_inner();
        let view = self.shared.read_view()?;
        let header = Self::current_header(&self.shared)?;
        let found = view.lease(request.id).map_err(status)?;
        let remaining = if found.is_some() { self.remaining(request.id).await? } else { None };
        let response = match (found, remaining) {
            (Some((record, keys)), Some(remaining)) => LeaseTimeToLiveResponse {
                header,
                id: request.id,
                ttl: remaining,
                granted_ttl: record.ttl,
                keys: if request.keys { keys } else { Vec::new() },
            },
            // etcd answers an unknown lease with TTL -1, not an error.
            _ => LeaseTimeToLiveResponse { header, id: request.id, ttl: -1, ..Default::default() },
        };
        Ok(Response::new(response))
    }

    async fn lease_leases(&self, _: Request<LeaseLeasesRequest>) -> Result<Response<LeaseLeasesResponse>, Status> {
        let header = Self::current_header(&self.shared)?;
        let leases = self.lessor.ids_by_expiry().into_iter().map(|id| LeaseStatus { id }).collect();
        Ok(Response::new(LeaseLeasesResponse { header, leases }))
    }
}
