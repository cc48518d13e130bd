//! Stopping a member that clients hold streams open on: SIGTERM must not wait for the clients to go
//! away. Watch and keep-alive streams are ended with etcd's `etcdserver: server stopped` (UNAVAILABLE, so
//! clients reconnect to another member), and the member exits promptly and cleanly.

mod common;

use common::Server;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_ends_open_watch_and_keepalive_streams_and_the_member_exits_promptly() {
    let mut server = tokio::task::spawn_blocking(|| Server::keel(&[])).await.unwrap();
    let mut client = server.client().await;
    let mut watch = client.watch("stop/key", None).await.unwrap();
    assert!(watch.message().await.unwrap().unwrap().created());
    let lease = client.lease_grant(60, None).await.unwrap().id();
    let (mut keeper, mut keepalive) = client.lease_keep_alive(lease).await.unwrap();
    keeper.keep_alive().await.unwrap();
    assert_eq!(keepalive.message().await.unwrap().unwrap().ttl(), 60);
    let (took, stopped_by) = tokio::task::spawn_blocking(move || {
        let stopped = server.stop_within(Duration::from_secs(20));
        (stopped, server)
    })
    .await
    .unwrap()
    .0;
    assert_eq!(stopped_by, "SIGTERM");
    assert!(took < Duration::from_secs(5), "the member took {took:?} to stop with streams open");
    let ended = tokio::time::timeout(Duration::from_secs(5), watch.message()).await.expect("the watch stream ended");
    match ended {
        Err(status) => assert!(status.to_string().contains("server stopped"), "{status}"),
        Ok(None) => {}
        Ok(Some(response)) => panic!("a watch response after the stop: {response:?}"),
    }
}
