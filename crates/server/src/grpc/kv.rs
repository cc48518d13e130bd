//! etcd's KV service: Range, Put, DeleteRange, Txn, Compact.

use super::{Shared, etcd, status, validate};
use keel_api::etcdserverpb::kv_server::Kv;
use keel_api::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse,
    RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use keel_api::keelpb::internal_request::Request;
use keel_state::{Response, mvcc};
use std::sync::Arc;
use tonic::{Request as GrpcRequest, Response as GrpcResponse, Status};

pub struct KvService {
    shared: Arc<Shared>,
}

impl KvService {
    pub fn new(shared: Arc<Shared>) -> Self {
        KvService { shared }
    }
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(&self, request: GrpcRequest<RangeRequest>) -> Result<GrpcResponse<RangeResponse>, Status> {
        let request = request.into_inner();
        validate::range(&request).map_err(etcd)?;
        if !request.serializable {
            self.shared.proposer.read_barrier().await.map_err(etcd)?;
        }
        let read = || {
            let view = self.shared.read_view()?;
            mvcc::range(&view, &request).map_err(status)
        };
        // A large range can take a while: keep it off the runtime's worker so other requests go on. A small
        // one takes microseconds, less than handing the worker over would cost.
        let mut response = if is_small(&request) { read() } else { tokio::task::block_in_place(read) }?;
        crate::metrics::get().ranges.inc();
        response.header = self.shared.header(response.header);
        Ok(GrpcResponse::new(response))
    }

    async fn put(&self, request: GrpcRequest<PutRequest>) -> Result<GrpcResponse<PutResponse>, Status> {
        let request = request.into_inner();
        validate::put(&request).map_err(etcd)?;
        self.shared.check_quota(keel_state::alarm::put_cost(&request)).await?;
        propose_and_reply!(self, Request::Put(request), Response::Put, "Put")
    }

    async fn delete_range(
        &self,
        request: GrpcRequest<DeleteRangeRequest>,
    ) -> Result<GrpcResponse<DeleteRangeResponse>, Status> {
        let request = request.into_inner();
        validate::delete_range(&request).map_err(etcd)?;
        propose_and_reply!(self, Request::DeleteRange(request), Response::DeleteRange, "DeleteRange")
    }

    async fn txn(&self, request: GrpcRequest<TxnRequest>) -> Result<GrpcResponse<TxnResponse>, Status> {
        let request = request.into_inner();
        validate::txn(&request, self.shared.max_txn_ops).map_err(etcd)?;
        if mvcc::is_read_only(&request) {
            // Read-only transactions are served locally, after a ReadIndex unless every range is serializable.
            if !all_serializable(&request) {
                self.shared.proposer.read_barrier().await.map_err(etcd)?;
            }
            let read = || {
                let view = self.shared.read_view()?;
                mvcc::read_only_txn(&view, &request).map_err(status)
            };
            let small = request.success.iter().chain(&request.failure).all(|op| match &op.request {
                Some(keel_api::etcdserverpb::request_op::Request::RequestRange(range)) => is_small(range),
                _ => false,
            });
            let mut response = if small { read() } else { tokio::task::block_in_place(read) }?;
            crate::metrics::count_txn(&response.responses);
            response.header = self.shared.header(response.header);
            return Ok(GrpcResponse::new(response));
        }
        self.shared.check_quota(keel_state::alarm::txn_cost(&request)).await?;
        propose_and_reply!(self, Request::Txn(request), Response::Txn, "Txn")
    }

    async fn compact(
        &self,
        request: GrpcRequest<CompactionRequest>,
    ) -> Result<GrpcResponse<CompactionResponse>, Status> {
        // Compaction is applied synchronously, so `physical` is always honoured.
        propose_and_reply!(self, Request::Compaction(request.into_inner()), Response::Compaction, "Compact")
    }
}

/// Whether a range reads a bounded handful of keys: one key, or at most a few hundred by its limit.
fn is_small(request: &RangeRequest) -> bool {
    request.range_end.is_empty() || (request.limit > 0 && request.limit <= 256)
}

/// etcd's `isTxnSerializable`: every op is a serializable range (a nested txn never is).
fn all_serializable(request: &TxnRequest) -> bool {
    use keel_api::etcdserverpb::request_op::Request as Op;
    request.success.iter().chain(&request.failure).all(|op| match &op.request {
        Some(Op::RequestRange(range)) => range.serializable,
        _ => false,
    })
}
