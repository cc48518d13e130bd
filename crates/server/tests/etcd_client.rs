//! Keel driven by the `etcd-client` crate (which carries etcd's own protos): the KV API end to end, with
//! explicit expectations for keys, values and revisions.

mod common;

use common::Server;
use etcd_client::{
    Client, CompactionOptions, Compare, CompareOp, DeleteOptions, Error, GetOptions, PutOptions, SortOrder, SortTarget,
    Txn, TxnOp, TxnOpResponse,
};

async fn keel(extra: &'static [&'static str]) -> (Server, Client) {
    let server = tokio::task::spawn_blocking(move || Server::keel(extra)).await.unwrap();
    let client = server.client().await;
    (server, client)
}

fn keys(response: &etcd_client::GetResponse) -> Vec<&str> {
    response.kvs().iter().map(|kv| kv.key_str().unwrap()).collect()
}

fn grpc_error(error: Error) -> (tonic::Code, String) {
    match error {
        Error::GRpcStatus(status) => (status.code(), status.message().to_string()),
        other => panic!("expected a gRPC status, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn put_get_delete_with_prefixes_ranges_limits_and_sorting() {
    let (_server, mut client) = keel(&[]).await;
    let empty = client.get("anything", None).await.unwrap();
    assert_eq!(empty.header().unwrap().revision(), 1, "an empty store is at revision 1, as etcd's");
    for (index, key) in ["app/a", "app/b", "app/c", "apq", "b", "c"].iter().enumerate() {
        let response = client.put(*key, format!("value{index}"), None).await.unwrap();
        assert_eq!(response.header().unwrap().revision(), index as i64 + 2);
    }
    let prefix = client.get("app/", Some(GetOptions::new().with_prefix())).await.unwrap();
    assert_eq!(keys(&prefix), ["app/a", "app/b", "app/c"]);
    assert_eq!(prefix.count(), 3);
    let range = client.get("app/b", Some(GetOptions::new().with_range("b"))).await.unwrap();
    assert_eq!(keys(&range), ["app/b", "app/c", "apq"]);
    let from = client.get("apq", Some(GetOptions::new().with_from_key())).await.unwrap();
    assert_eq!(keys(&from), ["apq", "b", "c"]);
    let limited = client.get("", Some(GetOptions::new().with_all_keys().with_limit(2))).await.unwrap();
    assert_eq!((keys(&limited), limited.more(), limited.count()), (vec!["app/a", "app/b"], true, 6));
    let descending = client
        .get("", Some(GetOptions::new().with_all_keys().with_sort(SortTarget::Key, SortOrder::Descend).with_limit(2)))
        .await
        .unwrap();
    assert_eq!(keys(&descending), ["c", "b"]);
    let by_value = client
        .get("", Some(GetOptions::new().with_all_keys().with_sort(SortTarget::Value, SortOrder::Descend)))
        .await
        .unwrap();
    assert_eq!(by_value.kvs()[0].value_str().unwrap(), "value5");
    let count_only = client.get("", Some(GetOptions::new().with_all_keys().with_count_only())).await.unwrap();
    assert_eq!((count_only.count(), count_only.kvs().len()), (6, 0));
    let keys_only = client.get("b", Some(GetOptions::new().with_keys_only())).await.unwrap();
    assert_eq!(keys_only.kvs()[0].value(), b"");

    let deleted = client.delete("app/", Some(DeleteOptions::new().with_prefix().with_prev_key())).await.unwrap();
    assert_eq!(deleted.deleted(), 3);
    assert_eq!(
        deleted.prev_kvs().iter().map(|kv| kv.key_str().unwrap()).collect::<Vec<_>>(),
        ["app/a", "app/b", "app/c"]
    );
    assert_eq!(deleted.header().unwrap().revision(), 8, "one revision for the whole delete");
    let nothing = client.delete("app/", Some(DeleteOptions::new().with_prefix())).await.unwrap();
    assert_eq!((nothing.deleted(), nothing.header().unwrap().revision()), (0, 8));
}

#[tokio::test(flavor = "multi_thread")]
async fn revisions_versions_and_reads_in_the_past() {
    let (_server, mut client) = keel(&[]).await;
    client.put("k", "one", None).await.unwrap(); // 2
    let second = client.put("k", "two", Some(PutOptions::new().with_prev_key())).await.unwrap(); // 3
    assert_eq!(second.prev_key().unwrap().value_str().unwrap(), "one");
    client.delete("k", None).await.unwrap(); // 4
    client.put("k", "three", None).await.unwrap(); // 5
    let now = client.get("k", None).await.unwrap();
    let kv = &now.kvs()[0];
    assert_eq!((kv.create_revision(), kv.mod_revision(), kv.version()), (5, 5, 1), "a new generation after delete");
    let at_three = client.get("k", Some(GetOptions::new().with_revision(3))).await.unwrap();
    let kv = &at_three.kvs()[0];
    assert_eq!((kv.value_str().unwrap(), kv.create_revision(), kv.mod_revision(), kv.version()), ("two", 2, 3, 2));
    assert_eq!(at_three.header().unwrap().revision(), 5, "the header carries the current revision");
    assert!(client.get("k", Some(GetOptions::new().with_revision(4))).await.unwrap().kvs().is_empty());
    let filtered = client.get("k", Some(GetOptions::new().with_min_mod_revision(6))).await.unwrap();
    assert!(filtered.kvs().is_empty());
    let serializable = client.get("k", Some(GetOptions::new().with_serializable())).await.unwrap();
    assert_eq!(serializable.kvs()[0].value_str().unwrap(), "three");
}

#[tokio::test(flavor = "multi_thread")]
async fn transactions_take_the_right_branch_and_see_their_own_writes() {
    let (_server, mut client) = keel(&[]).await;
    client.put("counter", "1", None).await.unwrap();
    let txn = Txn::new()
        .when([Compare::value("counter", CompareOp::Equal, "1"), Compare::version("counter", CompareOp::Greater, 0)])
        .and_then([
            TxnOp::put("counter", "2", None),
            TxnOp::get("counter", None),
            TxnOp::txn(
                Txn::new()
                    .when([Compare::create_revision("absent", CompareOp::Equal, 0)])
                    .and_then([TxnOp::put("made", "yes", None)]),
            ),
        ])
        .or_else([TxnOp::put("failed", "yes", None)]);
    let response = client.txn(txn).await.unwrap();
    assert!(response.succeeded());
    assert_eq!(response.header().unwrap().revision(), 3, "one revision for the whole transaction");
    let responses = response.op_responses();
    let TxnOpResponse::Get(read) = &responses[1] else { panic!("expected a get response") };
    assert_eq!(read.kvs()[0].value_str().unwrap(), "2", "a txn reads its own earlier writes");
    let TxnOpResponse::Txn(nested) = &responses[2] else { panic!("expected a nested txn response") };
    assert!(nested.succeeded());
    assert_eq!(client.get("made", None).await.unwrap().kvs()[0].mod_revision(), 3);

    let failing = Txn::new()
        .when([Compare::mod_revision("counter", CompareOp::Less, 2)])
        .and_then([TxnOp::delete("counter", None)])
        .or_else([TxnOp::get("counter", None)]);
    let response = client.txn(failing).await.unwrap();
    assert!(!response.succeeded());
    assert_eq!(response.header().unwrap().revision(), 3, "a read-only branch does not add a revision");

    let duplicate = Txn::new().and_then([TxnOp::put("x", "1", None), TxnOp::put("x", "2", None)]);
    let error = grpc_error(client.txn(duplicate).await.unwrap_err());
    assert_eq!(error, (tonic::Code::InvalidArgument, "etcdserver: duplicate key given in txn request".into()));
}

#[tokio::test(flavor = "multi_thread")]
async fn compaction_drops_history_with_etcds_errors() {
    let (_server, mut client) = keel(&[]).await;
    for value in 0..5 {
        client.put("key", value.to_string(), None).await.unwrap(); // revisions 2..=6
    }
    client.compact(4, Some(CompactionOptions::new().with_physical())).await.unwrap();
    let error = grpc_error(client.get("key", Some(GetOptions::new().with_revision(3))).await.unwrap_err());
    assert_eq!(error, (tonic::Code::OutOfRange, "etcdserver: mvcc: required revision has been compacted".into()));
    let at_compaction = client.get("key", Some(GetOptions::new().with_revision(4))).await.unwrap();
    assert_eq!(at_compaction.kvs()[0].value_str().unwrap(), "2");
    assert_eq!(at_compaction.kvs()[0].version(), 3, "versions survive compaction");
    let error = grpc_error(client.compact(4, None).await.unwrap_err());
    assert_eq!(error.1, "etcdserver: mvcc: required revision has been compacted");
    let error = grpc_error(client.get("key", Some(GetOptions::new().with_revision(7))).await.unwrap_err());
    assert_eq!(error, (tonic::Code::OutOfRange, "etcdserver: mvcc: required revision is a future revision".into()));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_etcds_codes_and_messages() {
    let (_server, mut client) = keel(&["--max-request-bytes", "4096"]).await;
    let cases: Vec<(Result<(), Error>, tonic::Code, &str)> = vec![
        (client.put("", "v", None).await.map(drop), tonic::Code::InvalidArgument, "etcdserver: key is not provided"),
        (
            client.put("big", vec![0u8; 5000], None).await.map(drop),
            tonic::Code::InvalidArgument,
            "etcdserver: request is too large",
        ),
        (
            client.put("k", "v", Some(PutOptions::new().with_lease(42))).await.map(drop),
            tonic::Code::NotFound,
            "etcdserver: requested lease not found",
        ),
        (
            client.put("k", "", Some(PutOptions::new().with_ignore_value())).await.map(drop),
            tonic::Code::InvalidArgument,
            "etcdserver: key not found",
        ),
        (client.get("", None).await.map(drop), tonic::Code::InvalidArgument, "etcdserver: key is not provided"),
    ];
    for (result, code, message) in cases {
        assert_eq!(grpc_error(result.unwrap_err()), (code, message.to_string()));
    }
    let store = client.get("", Some(GetOptions::new().with_all_keys())).await.unwrap();
    assert_eq!((store.count(), store.header().unwrap().revision()), (0, 1), "refused requests change nothing");
}

#[tokio::test(flavor = "multi_thread")]
async fn status_and_member_list_describe_the_member() {
    let (server, mut client) = keel(&[]).await;
    client.put("k", "v", None).await.unwrap();
    let status = client.status().await.unwrap();
    let member_id = status.header().unwrap().member_id();
    assert_eq!(status.leader(), member_id, "a single member leads itself");
    assert!(status.version().starts_with("3."));
    assert!(status.db_size() > 0);
    assert!(status.raft_index() >= 2 && status.raft_term() >= 1);
    let members = client.member_list().await.unwrap();
    let member = &members.members()[0];
    assert_eq!((member.id(), member.name()), (member_id, "keel-test"));
    assert_eq!(member.client_urls(), std::slice::from_ref(&server.endpoint));
    assert_eq!(member.peer_urls(), std::slice::from_ref(&server.peer_url));
}

#[tokio::test(flavor = "multi_thread")]
async fn data_and_revisions_survive_a_clean_restart_and_log_compaction() {
    let (server, mut client) = keel(&["--snapshot-count", "50"]).await;
    for index in 0..300 {
        client.put(format!("key/{index:03}"), index.to_string(), None).await.unwrap();
    }
    let before = client.get("key/", Some(GetOptions::new().with_prefix())).await.unwrap();
    drop(client);
    let mut server = server.stopped_and_restarted().await;
    let mut client = server.client().await;
    let after = client.get("key/", Some(GetOptions::new().with_prefix())).await.unwrap();
    let summary = |response: &etcd_client::GetResponse| -> Vec<(String, String, i64, i64)> {
        response
            .kvs()
            .iter()
            .map(|kv| {
                (kv.key_str().unwrap().into(), kv.value_str().unwrap().into(), kv.create_revision(), kv.mod_revision())
            })
            .collect()
    };
    assert_eq!(summary(&after), summary(&before));
    assert_eq!(summary(&after).len(), 300);
    assert_eq!(after.header().unwrap().revision(), 301);
    assert_eq!(client.put("next", "1", None).await.unwrap().header().unwrap().revision(), 302);
    server.stop();
}
