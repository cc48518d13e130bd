//! Leases in a 3-member cluster: expiry deletes the same keys at the same revision on every member, and a
//! keep-alive stream through a follower keeps a lease alive across a leader change.

mod common;

use common::Cluster;
use etcd_client::{Client, EventType, GetOptions, PutOptions, WatchOptions};
use std::time::{Duration, Instant};

async fn client(endpoint: &str) -> Client {
    Client::connect([endpoint.to_string()], None).await.unwrap()
}

async fn leader_and_follower(cluster: &Cluster) -> (usize, usize) {
    let status = client(&cluster.members[0].endpoint).await.status().await.unwrap();
    let leader_id = status.leader();
    let mut leader = None;
    for (index, member) in cluster.members.iter().enumerate() {
        let id = client(&member.endpoint).await.status().await.unwrap().header().unwrap().member_id();
        if id == leader_id {
            leader = Some(index);
        }
    }
    let leader = leader.expect("a leader");
    (leader, (leader + 1) % cluster.members.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_expired_lease_deletes_its_keys_at_one_revision_on_every_member() {
    let cluster = tokio::task::spawn_blocking(|| Cluster::start(3, &[])).await.unwrap();
    let (_, follower) = leader_and_follower(&cluster).await;
    let mut writer = client(&cluster.members[follower].endpoint).await;
    let lease = writer.lease_grant(2, None).await.unwrap();
    for key in ["leased/a", "leased/b", "leased/c"] {
        writer.put(key, "v", Some(PutOptions::new().with_lease(lease.id()))).await.unwrap();
    }
    let start =
        writer.get("leased/", Some(GetOptions::new().with_prefix())).await.unwrap().header().unwrap().revision();
    let mut watches = Vec::new();
    for member in &cluster.members {
        let mut watch = client(&member.endpoint)
            .await
            .watch("leased/", Some(WatchOptions::new().with_prefix().with_start_revision(start + 1)))
            .await
            .unwrap();
        assert!(watch.message().await.unwrap().unwrap().created());
        watches.push(watch);
    }
    for (index, watch) in watches.iter_mut().enumerate() {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut deletes = Vec::new();
        while deletes.len() < 3 {
            let response =
                tokio::time::timeout_at(deadline.into(), watch.message()).await.expect("no expiry").unwrap().unwrap();
            for event in response.events() {
                assert_eq!(event.event_type(), EventType::Delete);
                let kv = event.kv().unwrap();
                deletes.push((kv.key_str().unwrap().to_string(), kv.mod_revision()));
            }
        }
        let expected: Vec<(String, i64)> =
            ["leased/a", "leased/b", "leased/c"].iter().map(|key| (key.to_string(), start + 1)).collect();
        assert_eq!(deletes, expected, "member {index} saw other deletes");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keep_alive_through_a_follower_outlives_a_leader_change() {
    let mut cluster = tokio::task::spawn_blocking(|| Cluster::start(3, &[])).await.unwrap();
    let (leader, follower) = leader_and_follower(&cluster).await;
    let mut client = client(&cluster.members[follower].endpoint).await;
    let lease = client.lease_grant(3, None).await.unwrap();
    client.put("kept", "v", Some(PutOptions::new().with_lease(lease.id()))).await.unwrap();
    let (mut keeper, mut responses) = client.lease_keep_alive(lease.id()).await.unwrap();
    cluster.members[leader].kill();
    let until = Instant::now() + Duration::from_secs(9);
    while Instant::now() < until {
        keeper.keep_alive().await.unwrap();
        let response = responses.message().await.unwrap().unwrap();
        assert!(response.ttl() > 0, "the lease was lost during the leader change");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let kept = client.get("kept", None).await.unwrap();
    assert_eq!(kept.count(), 1, "three TTLs and a leader change later, the key is still there");
}
