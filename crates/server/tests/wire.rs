//! Wire details real clients' test suites compare, side by side with the real etcd: `Defragment`
//! answers an empty response (no header), and a call to a gRPC service the server does not register is a
//! gRPC UNIMPLEMENTED status, not an HTTP error a gRPC client cannot read.

mod common;

use common::Server;
use keel_api::etcdserverpb::DefragmentRequest;
use keel_api::etcdserverpb::maintenance_client::MaintenanceClient;

/// Calls `path` (a method of no service either server has) with an empty message.
async fn call_unknown(endpoint: &str, path: &'static str) -> tonic::Status {
    let channel = tonic::transport::Endpoint::from_shared(endpoint.to_string()).unwrap().connect().await.unwrap();
    let mut client = tonic::client::Grpc::new(channel);
    client.ready().await.unwrap();
    let codec: tonic_prost::ProstCodec<DefragmentRequest, DefragmentRequest> = tonic_prost::ProstCodec::default();
    let path = http::uri::PathAndQuery::from_static(path);
    client.unary(tonic::Request::new(DefragmentRequest {}), path, codec).await.unwrap_err()
}

#[tokio::test(flavor = "multi_thread")]
async fn defragment_and_unknown_services_answer_as_etcd_does() {
    let (etcd, keel) = tokio::task::spawn_blocking(|| (Server::etcd(&[]), Server::keel(&[]))).await.unwrap();
    let mut answers = Vec::new();
    for server in [&etcd, &keel] {
        let mut maintenance = MaintenanceClient::connect(server.endpoint.clone()).await.unwrap();
        let defragmented = maintenance.defragment(DefragmentRequest {}).await.unwrap().into_inner();
        let unknown_service = call_unknown(&server.endpoint, "/keeltest.Nothing/Call").await;
        let unknown_method = call_unknown(&server.endpoint, "/etcdserverpb.KV/Nothing").await;
        answers.push((defragmented, unknown_service.code(), unknown_method.code()));
        if std::ptr::eq(server, &keel) {
            assert_eq!(unknown_service.message(), "unknown service keeltest.Nothing");
        }
    }
    assert_eq!(answers[0], answers[1], "etcd's answers, then Keel's");
    assert_eq!(answers[1].0.header, None);
    assert_eq!(answers[1].1, tonic::Code::Unimplemented);
    assert_eq!(answers[1].2, tonic::Code::Unimplemented);
}
