//! `lease-keepalive`: each client grants a lease, then keeps it alive request by request on one stream.

use crate::connect::Connections;
use crate::report::Report;
use crate::run::{Tally, closed_loop, progress};
use keel_api::etcdserverpb::{LeaseGrantRequest, LeaseKeepAliveRequest, LeaseRevokeRequest};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

pub async fn keepalive(options: &crate::Options, connections: &Connections) -> anyhow::Result<Report> {
    let bar = progress(options.total, options.no_progress, "lease-keepalive");
    let (tally, took) = closed_loop(options.clients, options.total, bar, |client, work| {
        let mut leases = connections.lease(client);
        async move {
            let mut tally = Tally::default();
            let granted = leases.lease_grant(LeaseGrantRequest { ttl: 60, id: 0 }).await;
            let Some(id) = tally.record(std::time::Duration::ZERO, granted.map(|response| response.into_inner().id))
            else {
                return tally;
            };
            // The grant is not a keep-alive: keep it out of the latencies.
            tally.latencies = crate::report::Latencies::new();
            // A first keep-alive, queued before the call and not measured: a gRPC server may send its
            // response headers only with its first message (etcd does), and the call waits for them.
            let (requests, outgoing) = mpsc::channel(1);
            let _ = requests.send(LeaseKeepAliveRequest { id }).await;
            let opened = async {
                let mut answers = leases.lease_keep_alive(ReceiverStream::new(outgoing)).await?.into_inner();
                answers.message().await?;
                Ok::<_, tonic::Status>(answers)
            };
            let mut answers = match opened.await {
                Ok(answers) => answers,
                Err(status) => {
                    tally.record::<(), _>(std::time::Duration::ZERO, Err(status));
                    return tally;
                }
            };
            while work.take().is_some() {
                let round = async {
                    requests
                        .send(LeaseKeepAliveRequest { id })
                        .await
                        .map_err(|_| "keep-alive stream closed".to_string())?;
                    match answers.message().await {
                        Ok(Some(answer)) if answer.ttl > 0 => Ok(()),
                        Ok(Some(_)) => Err("lease expired".to_string()),
                        Ok(None) => Err("keep-alive stream ended".to_string()),
                        Err(status) => Err(status.to_string()),
                    }
                };
                if tally.measure(round).await.is_none() && tally.errors > 100 {
                    break;
                }
                work.progress.inc(1);
            }
            let _ = leases.lease_revoke(LeaseRevokeRequest { id }).await;
            tally
        }
    })
    .await;
    Ok(Report::new(options, "lease-keepalive", &tally.latencies, tally.errors, tally.first_error, took))
}
