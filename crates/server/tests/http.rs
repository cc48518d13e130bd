//! Plain HTTP on the client port, next to gRPC: `/health` answers as the real etcd's does (side by side),
//! turns false without a leader or with an alarm; `/livez` and `/readyz`.

mod common;

use common::{Cluster, Server, http_get as get};
use keel_api::etcdserverpb::maintenance_client::MaintenanceClient;
use keel_api::etcdserverpb::{AlarmRequest, AlarmType, alarm_request::AlarmAction};
use std::time::{Duration, Instant};

async fn raise_nospace(endpoint: &str) {
    let mut maintenance = MaintenanceClient::connect(endpoint.to_string()).await.unwrap();
    let request = AlarmRequest { action: AlarmAction::Activate as i32, member_id: 0, alarm: AlarmType::Nospace as i32 };
    maintenance.alarm(request).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn health_answers_as_etcd_does_and_turns_false_with_an_alarm() {
    let (etcd, keel) = tokio::task::spawn_blocking(|| (Server::etcd(&[]), Server::keel(&[]))).await.unwrap();
    for server in [&etcd, &keel] {
        let endpoint = server.endpoint.clone();
        let healthy = tokio::task::spawn_blocking(move || get(&endpoint, "/health")).await.unwrap();
        assert_eq!(healthy, (200, r#"{"health":"true"}"#.to_string()), "{}", server.endpoint);
        raise_nospace(&server.endpoint).await;
        let endpoint = server.endpoint.clone();
        let alarmed = tokio::task::spawn_blocking(move || get(&endpoint, "/health")).await.unwrap();
        assert_eq!(alarmed, (503, "{\"health\":\"false\"}\n".to_string()), "{}", server.endpoint);
    }
    // gRPC keeps working on the same port (a put would meet the alarm, as it should).
    let mut client = keel.client().await;
    assert_eq!(client.get("absent", None).await.unwrap().count(), 0);
    let endpoint = keel.endpoint.clone();
    let (livez, readyz) =
        tokio::task::spawn_blocking(move || (get(&endpoint, "/livez"), get(&endpoint, "/nothing"))).await.unwrap();
    assert_eq!(livez, (200, "ok".to_string()));
    assert_eq!(readyz.0, 404);
}

#[test]
fn health_and_readyz_turn_false_without_quorum_and_recover() {
    let mut cluster = Cluster::start(3, &[]);
    let survivor = cluster.members[0].endpoint.clone();
    assert_eq!(get(&survivor, "/health"), (200, r#"{"health":"true"}"#.to_string()));
    assert_eq!(get(&survivor, "/readyz"), (200, "ok".to_string()));
    cluster.members[1].kill();
    cluster.members[2].kill();
    let deadline = Instant::now() + Duration::from_secs(15);
    while get(&survivor, "/health").0 != 503 {
        assert!(Instant::now() < deadline, "/health stayed true without a quorum");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(get(&survivor, "/health").1, "{\"health\":\"false\"}\n");
    let (status, reason) = get(&survivor, "/readyz");
    assert_eq!(status, 503);
    assert!(reason.starts_with("not ready"), "{reason}");
    assert_eq!(get(&survivor, "/livez"), (200, "ok".to_string()), "alive, though not ready");
    cluster.members[1].respawn();
    let deadline = Instant::now() + Duration::from_secs(20);
    while get(&survivor, "/health").0 != 200 {
        assert!(Instant::now() < deadline, "/health did not recover with the quorum back");
        std::thread::sleep(Duration::from_millis(200));
    }
}
