//! Differential test of Watch: the same streams, writes and requests against the real etcd and Keel;
//! each watcher's sequence of responses must be identical (headers less member ids and term).

mod common;

use common::Server;
use keel_api::etcdserverpb::kv_client::KvClient;
use keel_api::etcdserverpb::request_op::Request as Op;
use keel_api::etcdserverpb::watch_client::WatchClient;
use keel_api::etcdserverpb::watch_create_request::FilterType;
use keel_api::etcdserverpb::watch_request::RequestUnion;
use keel_api::etcdserverpb::*;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::mpsc;
use tonic::transport::Channel;

fn create(key: &str, range_end: &str, start_revision: i64) -> WatchCreateRequest {
    WatchCreateRequest { key: key.into(), range_end: range_end.into(), start_revision, ..Default::default() }
}

fn request(union: RequestUnion) -> WatchRequest {
    WatchRequest { request_union: Some(union) }
}

struct Session {
    kv: KvClient<Channel>,
    watch: WatchClient<Channel>,
}

async fn put(session: &mut Session, key: &str, value: &str) {
    session.kv.put(PutRequest { key: key.into(), value: value.into(), ..Default::default() }).await.unwrap();
}

async fn delete(session: &mut Session, key: &str) {
    session.kv.delete_range(DeleteRangeRequest { key: key.into(), ..Default::default() }).await.unwrap();
}

/// Runs the scenario on one server; returns every stream's responses grouped by watch id, in order.
async fn scenario(endpoint: String) -> Vec<BTreeMap<i64, Vec<String>>> {
    let channel = Channel::from_shared(endpoint).unwrap().connect().await.unwrap();
    let mut session = Session { kv: KvClient::new(channel.clone()), watch: WatchClient::new(channel) };
    put(&mut session, "a", "1").await; // 2
    put(&mut session, "b", "1").await; // 3
    put(&mut session, "a", "2").await; // 4
    delete(&mut session, "b").await; // 5
    let txn = TxnRequest {
        compare: vec![],
        success: ["d", "e"]
            .iter()
            .map(|key| RequestOp {
                request: Some(Op::RequestPut(PutRequest {
                    key: key.as_bytes().to_vec(),
                    value: b"t".to_vec(),
                    ..Default::default()
                })),
            })
            .collect(),
        failure: vec![],
    };
    session.kv.txn(txn.clone()).await.unwrap(); // 6

    // A stream's response headers come with its first response: queue requests before opening it.
    let (sender, receiver) = mpsc::channel(64);
    let requests = vec![
        request(RequestUnion::CreateRequest(WatchCreateRequest { prev_kv: true, ..create("a", "", 1) })),
        request(RequestUnion::CreateRequest(WatchCreateRequest {
            filters: vec![FilterType::Noput as i32],
            ..create("\0", "\0", 2)
        })),
        request(RequestUnion::CreateRequest(WatchCreateRequest { watch_id: 7, ..create("zz", "", 0) })),
        request(RequestUnion::CreateRequest(WatchCreateRequest { watch_id: 7, ..create("other", "", 0) })),
        request(RequestUnion::CreateRequest(create("b", "a", 0))),
        request(RequestUnion::CreateRequest(WatchCreateRequest {
            filters: vec![FilterType::Nodelete as i32],
            prev_kv: true,
            ..create("d", "f", 0)
        })),
        request(RequestUnion::CreateRequest(create("later", "", 100))),
    ];
    for watch_request in requests {
        sender.send(watch_request).await.unwrap();
    }
    let mut responses =
        session.watch.watch(tokio_stream::wrappers::ReceiverStream::new(receiver)).await.unwrap().into_inner();
    tokio::time::sleep(Duration::from_millis(300)).await;
    put(&mut session, "a", "3").await; // 7
    put(&mut session, "zz", "1").await; // 8
    session.kv.txn(txn).await.unwrap(); // 9
    delete(&mut session, "a").await; // 10
    delete(&mut session, "d").await; // 11
    tokio::time::sleep(Duration::from_millis(300)).await;
    sender.send(request(RequestUnion::ProgressRequest(WatchProgressRequest {}))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    sender.send(request(RequestUnion::CancelRequest(WatchCancelRequest { watch_id: 7 }))).await.unwrap();
    sender.send(request(RequestUnion::CancelRequest(WatchCancelRequest { watch_id: 99 }))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    put(&mut session, "zz", "2").await; // 12: the cancelled watcher must not see it

    // A second stream: a watch that starts below the compaction point.
    session.kv.compact(CompactionRequest { revision: 9, physical: true }).await.unwrap();
    let (second_sender, second_receiver) = mpsc::channel(8);
    second_sender.send(request(RequestUnion::CreateRequest(create("a", "", 3)))).await.unwrap();
    second_sender.send(request(RequestUnion::CreateRequest(create("zz", "", 9)))).await.unwrap();
    let mut second =
        session.watch.watch(tokio_stream::wrappers::ReceiverStream::new(second_receiver)).await.unwrap().into_inner();

    let mut results = Vec::new();
    for stream in [&mut responses, &mut second] {
        let mut by_watcher: BTreeMap<i64, Vec<String>> = BTreeMap::new();
        while let Ok(Some(Ok(mut response))) =
            tokio::time::timeout(Duration::from_millis(700), stream.message()).await.map(|m| m.transpose())
        {
            if let Some(header) = &mut response.header {
                header.cluster_id = 0;
                header.member_id = 0;
                header.raft_term = 0;
            }
            by_watcher.entry(response.watch_id).or_default().push(format!("{response:?}"));
        }
        results.push(by_watcher);
    }
    drop(sender);
    drop(second_sender);
    results
}

// Not compared: a negative start_revision. etcd 3.4 accepts it; etcd 3.5+ (and Keel) refuse the watch
// with `required revision has been compacted`.
#[tokio::test(flavor = "multi_thread")]
async fn keel_watch_streams_answer_as_etcds_do() {
    let (etcd, keel) = tokio::task::spawn_blocking(|| (Server::etcd(&[]), Server::keel(&[]))).await.unwrap();
    let expected = scenario(etcd.endpoint.clone()).await;
    let actual = scenario(keel.endpoint.clone()).await;
    assert!(expected[0].len() >= 5, "the reference run produced too little to compare: {expected:?}");
    for (stream, (expected, actual)) in expected.iter().zip(&actual).enumerate() {
        let ids: std::collections::BTreeSet<_> = expected.keys().chain(actual.keys()).collect();
        for id in ids {
            assert_eq!(expected.get(id), actual.get(id), "stream {stream}, watch id {id}");
        }
    }
}

/// A catch-up response larger than the fragment limit (--max-request-bytes + 512 KiB), watched with
/// `fragment`: split into pieces exactly where etcd splits it.
async fn fragments(endpoint: String) -> Vec<String> {
    let channel = Channel::from_shared(endpoint).unwrap().connect().await.unwrap();
    let mut session = Session { kv: KvClient::new(channel.clone()), watch: WatchClient::new(channel) };
    for index in 0..200 {
        let value = vec![b'x'; 9000];
        session
            .kv
            .put(PutRequest { key: format!("f/{index:03}").into_bytes(), value, ..Default::default() })
            .await
            .unwrap();
    }
    let (sender, receiver) = mpsc::channel(4);
    sender
        .send(request(RequestUnion::CreateRequest(WatchCreateRequest { fragment: true, ..create("f/", "f0", 2) })))
        .await
        .unwrap();
    let mut responses =
        session.watch.watch(tokio_stream::wrappers::ReceiverStream::new(receiver)).await.unwrap().into_inner();
    assert!(responses.message().await.unwrap().unwrap().created);
    let mut pieces = Vec::new();
    let mut events = 0;
    while events < 200 {
        let response = responses.message().await.unwrap().unwrap();
        events += response.events.len();
        let first = response.events.first().map(|event| event.kv.as_ref().unwrap().mod_revision);
        let revision = response.header.as_ref().unwrap().revision;
        pieces.push(format!(
            "fragment={} revision={revision} events={} first={first:?}",
            response.fragment,
            response.events.len()
        ));
    }
    drop(sender);
    pieces
}

#[tokio::test(flavor = "multi_thread")]
async fn large_responses_are_fragmented_as_etcd_fragments_them() {
    let flags = &["--max-request-bytes", "10000"];
    let (etcd, keel) = tokio::task::spawn_blocking(move || (Server::etcd(flags), Server::keel(flags))).await.unwrap();
    let expected = fragments(etcd.endpoint.clone()).await;
    assert!(expected.len() > 1, "the reference did not fragment: {expected:?}");
    assert_eq!(fragments(keel.endpoint.clone()).await, expected);
}

/// Opens a watch on `key` with a request stream that ends right after the create (a half-close), then
/// puts the key; returns the values the watcher received.
async fn events_after_half_close(endpoint: String) -> Vec<String> {
    let channel = Channel::from_shared(endpoint).unwrap().connect().await.unwrap();
    let mut session = Session { kv: KvClient::new(channel.clone()), watch: WatchClient::new(channel) };
    let only_create = tokio_stream::iter([request(RequestUnion::CreateRequest(create("half", "", 0)))]);
    let mut responses = session.watch.watch(only_create).await.unwrap().into_inner();
    assert!(responses.message().await.unwrap().unwrap().created);
    put(&mut session, "half", "one").await;
    put(&mut session, "half", "two").await;
    let mut values = Vec::new();
    while values.len() < 2 {
        let response = tokio::time::timeout(Duration::from_secs(5), responses.message()).await;
        let Ok(Ok(Some(response))) = response else { break };
        values.extend(
            response.events.iter().map(|event| String::from_utf8_lossy(&event.kv.as_ref().unwrap().value).into_owned()),
        );
    }
    values
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watcher_whose_client_half_closed_still_gets_events_as_in_etcd() {
    let (etcd, keel) = tokio::task::spawn_blocking(|| (Server::etcd(&[]), Server::keel(&[]))).await.unwrap();
    let expected = events_after_half_close(etcd.endpoint.clone()).await;
    assert_eq!(expected, ["one", "two"], "the reference behaves differently than assumed");
    assert_eq!(events_after_half_close(keel.endpoint.clone()).await, expected);
}
