//! etcd's Cluster service: the member list (membership changes arrive with the cluster work).

use super::Shared;
use keel_api::etcdserverpb::cluster_server::Cluster;
use keel_api::etcdserverpb::*;
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct ClusterService {
    shared: Arc<Shared>,
}

impl ClusterService {
    pub fn new(shared: Arc<Shared>) -> Self {
        ClusterService { shared }
    }
}

fn not_yet(method: &str) -> Status {
    Status::unimplemented(format!(
        "keel: {method} is not supported yet (membership changes arrive with the cluster work)"
    ))
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(&self, _: Request<MemberAddRequest>) -> Result<Response<MemberAddResponse>, Status> {
        Err(not_yet("MemberAdd"))
    }

    async fn member_remove(&self, _: Request<MemberRemoveRequest>) -> Result<Response<MemberRemoveResponse>, Status> {
        Err(not_yet("MemberRemove"))
    }

    async fn member_update(&self, _: Request<MemberUpdateRequest>) -> Result<Response<MemberUpdateResponse>, Status> {
        Err(not_yet("MemberUpdate"))
    }

    async fn member_list(&self, request: Request<MemberListRequest>) -> Result<Response<MemberListResponse>, Status> {
        if request.get_ref().linearizable {
            self.shared.proposer.read_barrier().await.map_err(super::etcd)?;
        }
        let this = &self.shared.member;
        // Names and client URLs are what each member published through the log once it started (as etcd's
        // members do); a member that has not started yet shows neither.
        let published = self.shared.read_view()?.member_attributes().map_err(super::status)?;
        let members = this
            .members
            .iter()
            .map(|member| {
                let attributes = published.iter().find(|attributes| attributes.id == member.id);
                Member {
                    id: member.id,
                    name: attributes.map(|attributes| attributes.name.clone()).unwrap_or_default(),
                    peer_ur_ls: member.peer_urls.clone(),
                    client_ur_ls: attributes.map(|attributes| attributes.client_urls.clone()).unwrap_or_default(),
                    is_learner: false,
                }
            })
            .collect();
        // etcd's Cluster service fills in ids and term only: no revision.
        let header = self.shared.header(None);
        Ok(Response::new(MemberListResponse { header, members }))
    }

    async fn member_promote(
        &self,
        _: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        Err(not_yet("MemberPromote"))
    }
}
