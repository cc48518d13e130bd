//! Leases with the etcd-client crate: grant, attach, keep alive, expire, revoke, survive a restart.

mod common;

use common::Server;
use etcd_client::{Client, EventType, GetOptions, LeaseGrantOptions, LeaseTimeToLiveOptions, PutOptions, WatchOptions};
use std::time::{Duration, Instant};

async fn keel(extra: &'static [&'static str]) -> (Server, Client) {
    let server = tokio::task::spawn_blocking(move || Server::keel(extra)).await.unwrap();
    let client = server.client().await;
    (server, client)
}

fn grpc_error(error: etcd_client::Error) -> (tonic::Code, String) {
    match error {
        etcd_client::Error::GRpcStatus(status) => (status.code(), status.message().to_string()),
        other => panic!("expected a gRPC status, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn grant_time_to_live_list_and_revoke() {
    let (_server, mut client) = keel(&[]).await;
    let lease = client.lease_grant(60, None).await.unwrap();
    assert_eq!(lease.ttl(), 60);
    assert!(lease.id() > 0);
    let chosen = client.lease_grant(60, Some(LeaseGrantOptions::new().with_id(0x1234))).await.unwrap();
    assert_eq!(chosen.id(), 0x1234);
    let again = client.lease_grant(60, Some(LeaseGrantOptions::new().with_id(0x1234))).await.unwrap_err();
    assert_eq!(grpc_error(again), (tonic::Code::FailedPrecondition, "etcdserver: lease already exists".into()));
    let huge = client.lease_grant(9_000_000_001, None).await.unwrap_err();
    assert_eq!(grpc_error(huge), (tonic::Code::OutOfRange, "etcdserver: too large lease TTL".into()));
    let short = client.lease_grant(1, None).await.unwrap();
    assert_eq!(short.ttl(), 2, "etcd's minimum TTL with the default election timeout is 2 s");

    client.put("held/a", "1", Some(PutOptions::new().with_lease(chosen.id()))).await.unwrap();
    client.put("held/b", "2", Some(PutOptions::new().with_lease(chosen.id()))).await.unwrap();
    client.put("held/c", "3", Some(PutOptions::new().with_lease(lease.id()))).await.unwrap();
    // Moving a key to another lease detaches it from the first.
    client.put("held/c", "3", Some(PutOptions::new().with_lease(chosen.id()))).await.unwrap();
    client.put("held/b", "2", None).await.unwrap();
    let ttl = client.lease_time_to_live(chosen.id(), Some(LeaseTimeToLiveOptions::new().with_keys())).await.unwrap();
    assert_eq!(ttl.granted_ttl(), 60);
    assert!((55..=60).contains(&ttl.ttl()), "remaining TTL {}", ttl.ttl());
    assert_eq!(ttl.keys(), [b"held/a".to_vec(), b"held/c".to_vec()]);
    let first = client.lease_time_to_live(lease.id(), Some(LeaseTimeToLiveOptions::new().with_keys())).await.unwrap();
    assert!(first.keys().is_empty());

    let mut listed: Vec<i64> = client.leases().await.unwrap().leases().iter().map(|status| status.id()).collect();
    listed.sort();
    let mut granted = vec![lease.id(), chosen.id(), short.id()];
    granted.sort();
    assert_eq!(listed, granted);

    let before = client.get("held/", Some(GetOptions::new().with_prefix())).await.unwrap().header().unwrap().revision();
    let revoked = client.lease_revoke(chosen.id()).await.unwrap();
    assert_eq!(revoked.header().unwrap().revision(), before + 1, "both keys go in one revision");
    let left = client.get("held/", Some(GetOptions::new().with_prefix())).await.unwrap();
    assert_eq!(left.kvs().len(), 1);
    assert_eq!(left.kvs()[0].key_str().unwrap(), "held/b");
    let gone = client.lease_time_to_live(chosen.id(), None).await.unwrap();
    assert_eq!(gone.ttl(), -1, "an unknown lease has TTL -1");
    let error = client.lease_revoke(chosen.id()).await.unwrap_err();
    assert_eq!(grpc_error(error), (tonic::Code::NotFound, "etcdserver: requested lease not found".into()));
}

#[tokio::test(flavor = "multi_thread")]
async fn expiry_deletes_every_attached_key_at_one_revision() {
    let (_server, mut client) = keel(&[]).await;
    let lease = client.lease_grant(2, None).await.unwrap();
    for key in ["expiring/1", "expiring/2", "expiring/3"] {
        client.put(key, "v", Some(PutOptions::new().with_lease(lease.id()))).await.unwrap();
    }
    let start =
        client.get("expiring/", Some(GetOptions::new().with_prefix())).await.unwrap().header().unwrap().revision();
    let mut watch = client
        .watch("expiring/", Some(WatchOptions::new().with_prefix().with_start_revision(start + 1)))
        .await
        .unwrap();
    assert!(watch.message().await.unwrap().unwrap().created());
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut deletes = Vec::new();
    while deletes.len() < 3 {
        let response = tokio::time::timeout_at(deadline.into(), watch.message())
            .await
            .expect("lease did not expire")
            .unwrap()
            .unwrap();
        for event in response.events() {
            assert_eq!(event.event_type(), EventType::Delete);
            deletes.push(event.kv().unwrap().mod_revision());
        }
    }
    assert!(
        deletes.iter().all(|revision| *revision == start + 1),
        "deletes at {deletes:?}, expected all at {}",
        start + 1
    );
    assert_eq!(client.get("expiring/", Some(GetOptions::new().with_prefix())).await.unwrap().count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn keep_alive_holds_a_key_past_its_ttl() {
    let (_server, mut client) = keel(&[]).await;
    let lease = client.lease_grant(2, None).await.unwrap();
    client.put("kept", "v", Some(PutOptions::new().with_lease(lease.id()))).await.unwrap();
    let (mut keeper, mut responses) = client.lease_keep_alive(lease.id()).await.unwrap();
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        keeper.keep_alive().await.unwrap();
        let response = responses.message().await.unwrap().unwrap();
        assert_eq!((response.id(), response.ttl()), (lease.id(), 2));
    }
    assert_eq!(client.get("kept", None).await.unwrap().count(), 1, "4 s after a 2 s grant, kept alive");
    drop(keeper);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(client.get("kept", None).await.unwrap().count(), 0, "gone once keep-alives stopped");
    // The server answers a keep-alive of an expired lease with TTL 0, which the client reports as gone.
    let error = client.lease_keep_alive(lease.id()).await.expect_err("keep-alive of an expired lease");
    assert!(matches!(error, etcd_client::Error::LeaseKeepAliveError(_)), "{error:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lease_survives_a_restart_with_its_checkpointed_remaining_time() {
    let (server, mut client) = keel(&["--experimental-lease-checkpoint-interval", "1s"]).await;
    let lease = client.lease_grant(60, None).await.unwrap();
    client.put("durable", "v", Some(PutOptions::new().with_lease(lease.id()))).await.unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    drop(client);
    let server = server.stopped_and_restarted().await;
    let mut client = server.client().await;
    let ttl = client.lease_time_to_live(lease.id(), Some(LeaseTimeToLiveOptions::new().with_keys())).await.unwrap();
    assert_eq!(ttl.keys(), [b"durable".to_vec()]);
    assert!(ttl.ttl() > 45 && ttl.ttl() < 59, "remaining {} s: neither reset to 60 nor lost", ttl.ttl());
    assert_eq!(client.get("durable", None).await.unwrap().count(), 1);
}
