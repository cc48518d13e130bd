//! Multi-member clusters of real `keel` processes on loopback: replication, member loss within and beyond
//! quorum, recovery without operator action, and a full stop with restarts in random order.

mod common;

use common::{Cluster, etcdctl_json};
use etcd_client::{Client, GetOptions, PutOptions};
use rand::seq::SliceRandom;
use std::time::{Duration, Instant};

async fn client(endpoint: &str) -> Client {
    Client::connect([endpoint.to_string()], None).await.unwrap()
}

async fn start(size: usize) -> Cluster {
    tokio::task::spawn_blocking(move || Cluster::start(size, &[])).await.unwrap()
}

/// The index of the member that leads, asked of the live members.
async fn leader(cluster: &Cluster) -> usize {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        for (index, member) in cluster.members.iter().enumerate() {
            if member.child.is_none() {
                continue;
            }
            if let Ok(status) = client(&member.endpoint).await.status().await
                && status.leader() != 0
                && status.leader() == status.header().unwrap().member_id()
            {
                return index;
            }
        }
        assert!(Instant::now() < deadline, "no leader elected");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Puts until one succeeds through `endpoint`; returns how long it took.
async fn first_write(endpoint: &str, key: &str) -> Duration {
    let started = Instant::now();
    let mut client = client(endpoint).await;
    loop {
        if client.put(key, "after-failover", None).await.is_ok() {
            return started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(20), "no write succeeded within 20 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every (key, value) in the store as seen linearizably through `endpoint`, with the store revision.
async fn contents(endpoint: &str) -> (i64, Vec<(String, String, i64)>) {
    let response = client(endpoint).await.get("", Some(GetOptions::new().with_all_keys())).await.unwrap();
    let kvs = response
        .kvs()
        .iter()
        .map(|kv| (kv.key_str().unwrap().to_string(), kv.value_str().unwrap().to_string(), kv.mod_revision()))
        .collect();
    (response.header().unwrap().revision(), kvs)
}

/// Kills `losses` members, the leader first, checking the rest keep taking writes; then kills one more
/// and checks writes fail while serializable reads answer; then brings everyone back.
async fn survives_losses(size: usize, losses: usize) {
    let mut cluster = start(size).await;
    for (index, member) in cluster.members.iter().enumerate() {
        client(&member.endpoint).await.put(format!("from/{index}"), index.to_string(), None).await.unwrap();
    }
    for member in &cluster.members {
        let (_, kvs) = contents(&member.endpoint).await;
        assert_eq!(kvs.len(), size, "every write is readable through every member");
    }

    let mut killed = Vec::new();
    for loss in 0..losses {
        let victim = leader(&cluster).await;
        cluster.members[victim].kill();
        killed.push(victim);
        let survivor = (0..size).find(|index| !killed.contains(index)).unwrap();
        let took = first_write(&cluster.members[survivor].endpoint, &format!("after-loss/{loss}")).await;
        println!("{size} members, loss {}: first write {} ms after killing the leader", loss + 1, took.as_millis());
    }
    let survivors: Vec<usize> = (0..size).filter(|index| !killed.contains(index)).collect();
    let mut writer = client(&cluster.members[survivors[0]].endpoint).await;
    for index in 0..50 {
        writer.put(format!("during/{index}"), "v", None).await.unwrap();
    }

    // One loss more than the cluster tolerates: writes fail cleanly, serializable reads still answer.
    let victim = survivors[survivors.len() - 1];
    cluster.members[victim].kill();
    killed.push(victim);
    let started = Instant::now();
    let error = writer.put("no-quorum", "v", None).await.expect_err("a write without quorum must fail");
    let message = error.to_string();
    let expected = ["etcdserver: no leader", "etcdserver: request timed out", "etcdserver: leader changed"];
    assert!(expected.iter().any(|text| message.contains(text)), "unexpected error without quorum: {message}");
    assert!(started.elapsed() < Duration::from_secs(10), "the failure took {:?}", started.elapsed());
    let serializable = writer.get("during/", Some(GetOptions::new().with_prefix().with_serializable())).await.unwrap();
    assert_eq!(serializable.count(), 50);

    // Bring everyone back: the cluster recovers by itself with every acknowledged write.
    for index in &killed {
        cluster.members[*index].respawn();
    }
    let mut cluster = tokio::task::spawn_blocking(move || {
        for member in &mut cluster.members {
            member.wait_ready();
        }
        cluster
    })
    .await
    .unwrap();
    let reference = contents(&cluster.members[0].endpoint).await;
    assert_eq!(reference.1.iter().filter(|(key, _, _)| key.starts_with("during/")).count(), 50);
    // The write that failed without quorum had an unknown outcome (as an etcd timeout has): it may or may
    // not have been committed once the quorum came back, so it is not checked either way.
    for member in &cluster.members {
        assert_eq!(contents(&member.endpoint).await, reference, "members disagree after recovery");
    }
    cluster.members.iter_mut().for_each(|member| member.stop());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_members_survive_one_loss_and_recover() {
    survives_losses(3, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_members_survive_two_losses_and_recover() {
    survives_losses(5, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_stop_and_restart_in_random_order_loses_nothing() {
    let mut cluster = start(3).await;
    let endpoints = cluster.endpoints();
    for index in 0..300 {
        let endpoint = &endpoints[index % endpoints.len()];
        client(endpoint).await.put(format!("key/{index:03}"), index.to_string(), None).await.unwrap();
    }
    let before = contents(&endpoints[0]).await;
    for member in &mut cluster.members {
        member.kill();
    }
    let mut order: Vec<usize> = (0..3).collect();
    order.shuffle(&mut rand::rng());
    let cluster = tokio::task::spawn_blocking(move || {
        for index in &order {
            cluster.members[*index].respawn();
            std::thread::sleep(Duration::from_millis(300));
        }
        for member in &mut cluster.members {
            member.wait_ready();
        }
        cluster
    })
    .await
    .unwrap();
    for member in &cluster.members {
        assert_eq!(contents(&member.endpoint).await, before, "a member lost or changed data across the full stop");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcdctl_sees_one_leader_and_every_member() {
    let cluster = start(3).await;
    let endpoints = cluster.endpoints().join(",");
    let statuses =
        tokio::task::spawn_blocking(move || etcdctl_json(&endpoints, &["endpoint", "status"])).await.unwrap();
    let statuses = statuses.as_array().unwrap();
    assert_eq!(statuses.len(), 3);
    let leaders: Vec<u64> = statuses.iter().map(|status| status["Status"]["leader"].as_u64().unwrap()).collect();
    assert!(
        leaders.iter().all(|leader| *leader == leaders[0] && *leader != 0),
        "members disagree on the leader: {leaders:?}"
    );
    let leading =
        statuses.iter().filter(|status| status["Status"]["header"]["member_id"].as_u64() == Some(leaders[0])).count();
    assert_eq!(leading, 1, "exactly one member leads");
    let endpoint = cluster.members[1].endpoint.clone();
    let members = tokio::task::spawn_blocking(move || etcdctl_json(&endpoint, &["member", "list"])).await.unwrap();
    let mut listed: Vec<(String, String)> = members["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|member| {
            (member["name"].as_str().unwrap().to_string(), member["clientURLs"][0].as_str().unwrap().to_string())
        })
        .collect();
    listed.sort();
    let expected: Vec<(String, String)> = cluster
        .members
        .iter()
        .enumerate()
        .map(|(index, member)| (format!("m{index}"), member.endpoint.clone()))
        .collect();
    assert_eq!(listed, expected, "every member published its name and client URL");
    // `--cluster` finds every member's client URL through the member list.
    let endpoint = cluster.members[2].endpoint.clone();
    let everyone = tokio::task::spawn_blocking(move || etcdctl_json(&endpoint, &["endpoint", "status", "--cluster"]))
        .await
        .unwrap();
    assert_eq!(everyone.as_array().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_stopped_during_thousands_of_writes_catches_up_by_snapshot() {
    // A small --snapshot-count and catch-up margin make the leader compact its log far past the member
    // while it is away, so only a snapshot can bring it back.
    let flags = ["--snapshot-count", "200", "--experimental-snapshot-catchup-entries", "100"];
    let mut cluster = tokio::task::spawn_blocking(move || Cluster::start(3, &flags)).await.unwrap();
    let leading = leader(&cluster).await;
    let away = (leading + 1) % 3;
    let away_id = client(&cluster.members[away].endpoint).await.status().await.unwrap().header().unwrap().member_id();
    let mut writer = client(&cluster.members[leading].endpoint).await;
    let lease = writer.lease_grant(600, None).await.unwrap().id();
    writer.put("leased", "before", Some(PutOptions::new().with_lease(lease))).await.unwrap();
    cluster.members[away].kill();
    for index in 0..3000 {
        writer.put(format!("while-away/{index:04}"), index.to_string(), None).await.unwrap();
        if index % 500 == 0 {
            writer.delete(format!("while-away/{:04}", index / 2), None).await.unwrap();
        }
    }
    writer.compact(1000, None).await.unwrap();
    cluster.members[away].respawn();
    let mut cluster = tokio::task::spawn_blocking(move || {
        cluster.members[away].wait_ready();
        cluster
    })
    .await
    .unwrap();
    let expected = contents(&cluster.members[leading].endpoint).await;
    let mut returned = client(&cluster.members[away].endpoint).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let local = returned.get("", Some(GetOptions::new().with_all_keys().with_serializable())).await.unwrap();
        if local.header().unwrap().revision() == expected.0 {
            assert_eq!(local.count(), expected.1.len() as i64);
            break;
        }
        assert!(Instant::now() < deadline, "the returning member did not catch up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log = cluster.members[away].log();
    assert!(log.contains("store replaced by the leader's snapshot"), "the member caught up without a snapshot:\n{log}");
    assert_eq!(contents(&cluster.members[away].endpoint).await, expected);
    // The installed store kept this member's identity, the lease, and the compaction.
    let status = returned.status().await.unwrap();
    assert_eq!(status.header().unwrap().member_id(), away_id);
    let leased = returned.get("leased", Some(GetOptions::new().with_serializable())).await.unwrap();
    assert_eq!(leased.kvs()[0].lease(), lease);
    let old = returned.get("leased", Some(GetOptions::new().with_revision(500).with_serializable())).await;
    assert!(old.unwrap_err().to_string().contains("required revision has been compacted"));

    // It is a full member again: with the old leader gone, it makes the majority, and what it holds
    // survives its own restart.
    cluster.members[leading].kill();
    cluster.members[away].kill();
    cluster.members[away].respawn();
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.members[away].wait_ready();
        cluster
    })
    .await
    .unwrap();
    let third = 3 - leading - away;
    let mut returned = client(&cluster.members[away].endpoint).await;
    returned.put("after", "snapshot", None).await.unwrap();
    let mut other = client(&cluster.members[third].endpoint).await;
    assert_eq!(other.get("after", None).await.unwrap().kvs()[0].value(), b"snapshot");
    assert_eq!(returned.get("while-away/2999", None).await.unwrap().kvs()[0].value(), b"2999");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcdctl_move_leader_hands_leadership_to_a_follower() {
    let cluster = start(3).await;
    let leading = leader(&cluster).await;
    let target = (leading + 1) % 3;
    let target_id =
        client(&cluster.members[target].endpoint).await.status().await.unwrap().header().unwrap().member_id();
    let endpoints = cluster.endpoints().join(",");
    let (success, stdout, stderr) =
        tokio::task::spawn_blocking(move || common::etcdctl(&endpoints, &["move-leader", &format!("{target_id:x}")]))
            .await
            .unwrap();
    assert!(success, "move-leader failed: {stderr}");
    assert!(stdout.contains(&format!("to {target_id:x}")), "{stdout}");
    assert_eq!(leader(&cluster).await, target);
    // Asking a follower, or naming a stranger, is refused with etcd's errors.
    let follower = &cluster.members[leading].endpoint;
    let mut maintenance = client(follower).await;
    let error = maintenance.move_leader(target_id).await.unwrap_err().to_string();
    assert!(error.contains("etcdserver: not leader"), "{error}");
    let mut at_leader = client(&cluster.members[target].endpoint).await;
    let error = at_leader.move_leader(12345).await.unwrap_err().to_string();
    assert!(error.contains("etcdserver: bad leader transferee"), "{error}");
}
