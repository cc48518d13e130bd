//! The round-trip prober (etcd's rafthttp prober): every [`INTERVAL`], a `Ping` to each peer over its own
//! connection; the time it takes goes to `etcd_network_peer_round_trip_time_seconds{To}`, and a round trip
//! over 10 ms (etcd's guidance) is logged as a warning, at most once per [`WARN_EVERY`] per peer.

use crate::metrics::{self, latency};
use keel_api::keelpb::Probe;
use keel_api::keelpb::peer_client::PeerClient;
use std::time::{Duration, Instant};

const INTERVAL: Duration = Duration::from_secs(1);
const WARN_EVERY: Duration = Duration::from_secs(30);

pub async fn run(cluster_id: u64, member_id: u64, peer_id: u64, url: String) {
    let Ok(endpoint) = tonic::transport::Endpoint::from_shared(url.clone()) else { return };
    let endpoint = endpoint.connect_timeout(Duration::from_secs(1)).timeout(Duration::from_secs(5)).tcp_nodelay(true);
    let mut client = PeerClient::new(endpoint.connect_lazy());
    let histogram = metrics::get().peer_round_trip.get_or_create_owned(&metrics::label("To", metrics::peer(peer_id)));
    let mut ticks = tokio::time::interval(INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_warning: Option<Instant> = None;
    let mut slow_since_warning = 0u64;
    loop {
        ticks.tick().await;
        let started = Instant::now();
        if client.ping(Probe { cluster_id, from: member_id }).await.is_err() {
            // Unreachable peers are reported by the Raft stream's own loop.
            continue;
        }
        let round_trip = started.elapsed();
        histogram.observe(round_trip.as_secs_f64());
        if round_trip <= latency::LIMIT {
            continue;
        }
        slow_since_warning += 1;
        if last_warning.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
            tracing::warn!(
                peer = format_args!("{peer_id:x}"),
                %url,
                round_trip_ms = latency::ms(round_trip),
                slow_probes = slow_since_warning,
                "slow network: the round trip to a peer is over 10 ms (etcd's guidance); heartbeats and \
                 commits wait on it. Check the link between the members, or raise --heartbeat-interval and \
                 --election-timeout to match it"
            );
            last_warning = Some(Instant::now());
            slow_since_warning = 0;
        }
    }
}
