//! Differential test: the same KV requests, in the same order, against the real etcd (Debian's
//! `etcd-server`, the reference) and against Keel; every response must be identical, errors included
//! (gRPC code and message), once the member-specific header fields are set aside.

mod common;

use common::Server;
use keel_api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use keel_api::etcdserverpb::kv_client::KvClient;
use keel_api::etcdserverpb::range_request::{SortOrder, SortTarget};
use keel_api::etcdserverpb::request_op::Request as Op;
use keel_api::etcdserverpb::*;
use tonic::transport::Channel;

#[derive(Debug, Clone)]
enum Step {
    Range(RangeRequest),
    Put(PutRequest),
    Delete(DeleteRangeRequest),
    Txn(TxnRequest),
    Compact(CompactionRequest),
}

/// A response with the fields that differ between members (ids, term) cleared; or an error.
type Outcome = Result<String, (tonic::Code, String)>;

fn clear(header: &mut Option<ResponseHeader>) {
    if let Some(header) = header {
        header.cluster_id = 0;
        header.member_id = 0;
        header.raft_term = 0;
    }
}

async fn run(client: &mut KvClient<Channel>, step: &Step) -> Outcome {
    let error = |status: tonic::Status| (status.code(), status.message().to_string());
    match step.clone() {
        Step::Range(request) => client.range(request).await.map(|response| {
            let mut response = response.into_inner();
            clear(&mut response.header);
            format!("{response:?}")
        }),
        Step::Put(request) => client.put(request).await.map(|response| {
            let mut response = response.into_inner();
            clear(&mut response.header);
            format!("{response:?}")
        }),
        Step::Delete(request) => client.delete_range(request).await.map(|response| {
            let mut response = response.into_inner();
            clear(&mut response.header);
            format!("{response:?}")
        }),
        Step::Txn(request) => client.txn(request).await.map(|response| {
            let mut response = response.into_inner();
            clear(&mut response.header);
            format!("{response:?}")
        }),
        Step::Compact(request) => client.compact(request).await.map(|response| {
            let mut response = response.into_inner();
            clear(&mut response.header);
            format!("{response:?}")
        }),
    }
    .map_err(error)
}

fn key(text: &str) -> Vec<u8> {
    text.as_bytes().to_vec()
}

fn put(k: &str, v: &str) -> Step {
    Step::Put(PutRequest { key: key(k), value: key(v), prev_kv: true, ..Default::default() })
}

fn range(k: &str, end: &str) -> RangeRequest {
    RangeRequest { key: key(k), range_end: key(end), ..Default::default() }
}

fn sorted(target: SortTarget, order: SortOrder, limit: i64) -> Step {
    Step::Range(RangeRequest { sort_target: target as i32, sort_order: order as i32, limit, ..range("\0", "\0") })
}

fn op(request: Op) -> RequestOp {
    RequestOp { request: Some(request) }
}

fn put_op(k: &str, v: &str) -> RequestOp {
    op(Op::RequestPut(PutRequest { key: key(k), value: key(v), prev_kv: true, ..Default::default() }))
}

fn compare(k: &str, end: &str, target: CompareTarget, result: CompareResult, value: TargetUnion) -> Compare {
    Compare {
        key: key(k),
        range_end: key(end),
        target: target as i32,
        result: result as i32,
        target_union: Some(value),
    }
}

fn scenario() -> Vec<Step> {
    use CompareResult::*;
    use CompareTarget::*;
    let mut steps = vec![
        Step::Range(range("a", "")),
        Step::Compact(CompactionRequest { revision: 0, physical: false }),
        put("a", "1"),
        put("b", "2"),
        put("c", "3"),
        put("d", "4"),
        put("a/x", "5"),
        put("a/y", "6"),
        put("a", "11"),
        put("zz", "0"),
        Step::Range(range("a", "")),
        Step::Range(range("a", "b")),
        Step::Range(range("b", "\0")),
        Step::Range(range("\0", "\0")),
        Step::Range(range("c", "a")),
        Step::Range(RangeRequest { limit: 2, ..range("\0", "\0") }),
        Step::Range(RangeRequest { limit: 100, ..range("a", "c") }),
        sorted(SortTarget::Key, SortOrder::Descend, 3),
        sorted(SortTarget::Version, SortOrder::None, 0),
        sorted(SortTarget::Create, SortOrder::Descend, 2),
        sorted(SortTarget::Mod, SortOrder::Ascend, 0),
        sorted(SortTarget::Value, SortOrder::Descend, 4),
        sorted(SortTarget::Key, SortOrder::Ascend, 0),
        Step::Range(RangeRequest { keys_only: true, ..range("a", "b") }),
        Step::Range(RangeRequest { count_only: true, ..range("\0", "\0") }),
        Step::Range(RangeRequest { min_mod_revision: 5, ..range("\0", "\0") }),
        Step::Range(RangeRequest { max_create_revision: 4, limit: 1, ..range("\0", "\0") }),
        Step::Range(RangeRequest { min_create_revision: 3, max_mod_revision: 6, ..range("\0", "\0") }),
        Step::Range(RangeRequest { revision: 3, ..range("\0", "\0") }),
        Step::Range(RangeRequest { revision: 1, ..range("a", "") }),
        Step::Range(RangeRequest { revision: 100, ..range("a", "") }),
        Step::Range(RangeRequest { serializable: true, ..range("a", "") }),
        Step::Delete(DeleteRangeRequest { key: key("b"), prev_kv: true, ..Default::default() }),
        Step::Delete(DeleteRangeRequest { key: key("a/"), range_end: key("a0"), prev_kv: true }),
        Step::Delete(DeleteRangeRequest { key: key("nothing"), ..Default::default() }),
        put("b", "again"),
        Step::Range(range("b", "")),
        Step::Txn(TxnRequest {
            compare: vec![compare("a", "", Value, Equal, TargetUnion::Value(key("11")))],
            success: vec![
                put_op("e", "5"),
                op(Op::RequestRange(range("a", ""))),
                op(Op::RequestRange(range("e", ""))),
                op(Op::RequestDeleteRange(DeleteRangeRequest { key: key("c"), prev_kv: true, ..Default::default() })),
                op(Op::RequestTxn(TxnRequest {
                    compare: vec![compare("d", "", Version, Greater, TargetUnion::Version(0))],
                    success: vec![put_op("f", "6")],
                    failure: vec![put_op("g", "7")],
                })),
            ],
            failure: vec![op(Op::RequestRange(range("a", "")))],
        }),
        Step::Txn(TxnRequest {
            compare: vec![compare("missing", "", Value, Equal, TargetUnion::Value(Vec::new()))],
            success: vec![put_op("never", "x")],
            failure: vec![op(Op::RequestRange(range("missing", "")))],
        }),
        Step::Txn(TxnRequest {
            compare: vec![compare("missing", "", Create, Equal, TargetUnion::CreateRevision(0))],
            success: vec![put_op("created", "1")],
            failure: vec![],
        }),
        Step::Txn(TxnRequest {
            compare: vec![compare("a", "b", Version, Greater, TargetUnion::Version(0))],
            success: vec![op(Op::RequestRange(range("a", "b")))],
            failure: vec![],
        }),
        Step::Txn(TxnRequest {
            compare: vec![compare("d", "", Mod, Less, TargetUnion::ModRevision(3))],
            success: vec![],
            failure: vec![op(Op::RequestRange(RangeRequest { revision: 4, ..range("d", "") }))],
        }),
        Step::Txn(TxnRequest {
            compare: vec![compare("a", "", Lease, Equal, TargetUnion::Lease(0))],
            success: vec![op(Op::RequestDeleteRange(DeleteRangeRequest { key: key("zz"), ..Default::default() }))],
            failure: vec![],
        }),
        Step::Txn(TxnRequest::default()),
        Step::Put(PutRequest { key: key("a"), ignore_value: true, prev_kv: true, ..Default::default() }),
        Step::Range(range("a", "")),
    ];
    // Compaction and what it does to reads.
    steps.extend([
        Step::Compact(CompactionRequest { revision: 6, physical: true }),
        Step::Range(RangeRequest { revision: 5, ..range("\0", "\0") }),
        Step::Range(RangeRequest { revision: 6, ..range("\0", "\0") }),
        Step::Compact(CompactionRequest { revision: 6, physical: false }),
        Step::Compact(CompactionRequest { revision: 5, physical: false }),
        Step::Compact(CompactionRequest { revision: 1000, physical: false }),
        Step::Compact(CompactionRequest { revision: 10, physical: false }),
        Step::Range(RangeRequest { revision: 10, ..range("\0", "\0") }),
        Step::Txn(TxnRequest {
            compare: vec![],
            success: vec![op(Op::RequestRange(RangeRequest { revision: 3, ..range("a", "") }))],
            failure: vec![],
        }),
    ]);
    // Requests etcd refuses, with its codes and messages.
    let too_many: Vec<RequestOp> = (0..129).map(|i| put_op(&format!("many/{i}"), "v")).collect();
    steps.extend([
        put("", "v"),
        Step::Range(range("", "")),
        Step::Delete(DeleteRangeRequest::default()),
        Step::Put(PutRequest { key: key("a"), value: key("v"), ignore_value: true, ..Default::default() }),
        Step::Put(PutRequest { key: key("a"), lease: 7, ignore_lease: true, ..Default::default() }),
        Step::Put(PutRequest { key: key("a"), value: key("v"), lease: 1234, ..Default::default() }),
        Step::Put(PutRequest { key: key("absent"), ignore_value: true, ..Default::default() }),
        Step::Put(PutRequest { key: key("absent"), ignore_lease: true, value: key("v"), ..Default::default() }),
        Step::Put(PutRequest { key: key("big"), value: vec![b'x'; 1_600_000], ..Default::default() }),
        Step::Txn(TxnRequest {
            compare: vec![],
            success: vec![put_op("dup", "1"), put_op("dup", "2")],
            failure: vec![],
        }),
        Step::Txn(TxnRequest {
            compare: vec![],
            success: vec![
                put_op("in/range", "1"),
                op(Op::RequestDeleteRange(DeleteRangeRequest {
                    key: key("in/"),
                    range_end: key("in0"),
                    ..Default::default()
                })),
            ],
            failure: vec![],
        }),
        Step::Txn(TxnRequest { compare: vec![], success: too_many, failure: vec![] }),
        Step::Txn(TxnRequest {
            compare: vec![compare("", "", Value, Equal, TargetUnion::Value(key("x")))],
            success: vec![],
            failure: vec![],
        }),
        Step::Txn(TxnRequest { compare: vec![], success: vec![put_op("", "x")], failure: vec![] }),
        Step::Txn(TxnRequest {
            compare: vec![],
            success: vec![put_op("leased", "x"), put_op("other", "y")]
                .into_iter()
                .map(|mut request_op| {
                    if let Some(Op::RequestPut(put)) = &mut request_op.request {
                        put.lease = 99;
                    }
                    request_op
                })
                .collect(),
            failure: vec![],
        }),
        Step::Range(range("\0", "\0")),
    ]);
    steps
}

#[tokio::test(flavor = "multi_thread")]
async fn keel_answers_every_kv_request_exactly_as_etcd_does() {
    let (etcd, keel) = tokio::task::spawn_blocking(|| (Server::etcd(&[]), Server::keel(&[]))).await.unwrap();
    let mut etcd_client = KvClient::connect(etcd.endpoint.clone()).await.unwrap().max_decoding_message_size(usize::MAX);
    let mut keel_client = KvClient::connect(keel.endpoint.clone()).await.unwrap().max_decoding_message_size(usize::MAX);
    let mut differences = Vec::new();
    for (number, step) in scenario().iter().enumerate() {
        let expected = run(&mut etcd_client, step).await;
        let actual = run(&mut keel_client, step).await;
        if expected != actual {
            let shown = format!("{step:?}");
            let shown: String = shown.chars().take(300).collect();
            differences.push(format!("step {number}: {shown}\n  etcd: {expected:?}\n  keel: {actual:?}"));
        }
    }
    assert!(
        differences.is_empty(),
        "{} of {} steps differ:\n{}",
        differences.len(),
        scenario().len(),
        differences.join("\n")
    );
}
