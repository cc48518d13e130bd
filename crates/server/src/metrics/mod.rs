//! Prometheus metrics with etcd's names, types, labels and units, so existing etcd dashboards and alert
//! rules work unchanged (served at `/metrics` on the client port and on `--listen-metrics-urls`).
//!
//! One member is one process, so the metrics are process-wide, as etcd's are: every stage records into
//! [`get()`]. Gauges that mirror live state (leader, sizes, revisions, alarms) are read when scraped, by
//! [`render`]. Latency windows for the operator warnings are in [`latency`]; gRPC counters in [`grpc`].

pub mod format;
pub mod grpc;
pub mod latency;
mod process;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// A label set: (name, value) pairs.
pub type Labels = Vec<(&'static str, String)>;
type HistogramFamily = Family<Labels, Histogram, fn() -> Histogram>;

/// Every metric Keel records. Names are etcd's; a counter's `_total` is added by the encoder.
pub struct Metrics {
    registry: Registry,
    // Raft and the server.
    pub has_leader: Gauge,
    pub is_leader: Gauge,
    pub is_learner: Gauge,
    pub leader_changes: Counter,
    leader_changes_seen: AtomicU64,
    pub proposals_committed: Gauge,
    pub proposals_applied: Gauge,
    pub proposals_pending: Gauge,
    pub proposals_failed: Counter,
    pub slow_apply: Counter,
    pub heartbeat_send_failures: Counter,
    pub read_indexes_failed: Counter,
    pub slow_read_indexes: Counter,
    pub server_id: Family<Labels, Gauge>,
    pub server_version: Family<Labels, Gauge>,
    // Disk.
    pub wal_fsync: Histogram,
    pub backend_commit: Histogram,
    pub defrag_duration: Histogram,
    pub snapshot_duration: Histogram,
    pub defrag_inflight: Gauge,
    // The MVCC store.
    pub db_total_size: Gauge,
    /// etcd 3.4 still exports the size under its old name too, which older dashboards use.
    pub debugging_db_total_size: Gauge,
    pub cluster_version: Family<Labels, Gauge>,
    pub db_size_in_use: Gauge,
    pub quota_backend_bytes: Gauge,
    pub keys: Gauge,
    pub current_revision: Gauge,
    pub compact_revision: Gauge,
    pub puts: Counter,
    pub deletes: Counter,
    pub ranges: Counter,
    pub txns: Counter,
    pub watchers: Gauge,
    pub watch_streams: Gauge,
    pub alarm_active: Family<Labels, Gauge>,
    // The network.
    pub peer_round_trip: HistogramFamily,
    pub peer_sent_bytes: Family<Labels, Counter>,
    pub peer_received_bytes: Family<Labels, Counter>,
    pub peer_sent_failures: Family<Labels, Counter>,
    pub client_received_bytes: Counter,
    pub client_sent_bytes: Counter,
    // gRPC, as go-grpc-prometheus counts it.
    pub grpc_started: Family<Labels, Counter>,
    pub grpc_handled: Family<Labels, Counter>,
    process: process::ProcessMetrics,
}

/// etcd's disk latency buckets: 1 ms to 8 s, doubling.
fn disk_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 14))
}

/// etcd's peer round-trip buckets: 0.1 ms, doubling, 16 of them.
fn round_trip_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

/// The metrics of this process.
pub fn get() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

/// A one-label set.
pub fn label(name: &'static str, value: impl Into<String>) -> Labels {
    vec![(name, value.into())]
}

/// A peer's id as etcd writes it in labels (hex).
pub fn peer(id: u64) -> String {
    format!("{id:x}")
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::default();
        let metrics = Metrics {
            has_leader: Gauge::default(),
            is_leader: Gauge::default(),
            is_learner: Gauge::default(),
            leader_changes: Counter::default(),
            leader_changes_seen: AtomicU64::new(0),
            proposals_committed: Gauge::default(),
            proposals_applied: Gauge::default(),
            proposals_pending: Gauge::default(),
            proposals_failed: Counter::default(),
            slow_apply: Counter::default(),
            heartbeat_send_failures: Counter::default(),
            read_indexes_failed: Counter::default(),
            slow_read_indexes: Counter::default(),
            server_id: Family::default(),
            server_version: Family::default(),
            wal_fsync: disk_buckets(),
            backend_commit: disk_buckets(),
            defrag_duration: Histogram::new(exponential_buckets(0.1, 2.0, 13)),
            snapshot_duration: Histogram::new(exponential_buckets(0.01, 2.0, 17)),
            defrag_inflight: Gauge::default(),
            db_total_size: Gauge::default(),
            debugging_db_total_size: Gauge::default(),
            cluster_version: Family::default(),
            db_size_in_use: Gauge::default(),
            quota_backend_bytes: Gauge::default(),
            keys: Gauge::default(),
            current_revision: Gauge::default(),
            compact_revision: Gauge::default(),
            puts: Counter::default(),
            deletes: Counter::default(),
            ranges: Counter::default(),
            txns: Counter::default(),
            watchers: Gauge::default(),
            watch_streams: Gauge::default(),
            alarm_active: Family::default(),
            peer_round_trip: Family::new_with_constructor(round_trip_buckets as fn() -> Histogram),
            peer_sent_bytes: Family::default(),
            peer_received_bytes: Family::default(),
            peer_sent_failures: Family::default(),
            client_received_bytes: Counter::default(),
            client_sent_bytes: Counter::default(),
            grpc_started: Family::default(),
            grpc_handled: Family::default(),
            process: process::ProcessMetrics::default(),
            registry: Registry::default(),
        };
        metrics.register(&mut registry);
        Metrics { registry, ..metrics }
    }

    fn register(&self, r: &mut Registry) {
        r.register(
            "etcd_server_has_leader",
            "Whether or not a leader exists. 1 is existence, 0 is not",
            self.has_leader.clone(),
        );
        r.register(
            "etcd_server_is_leader",
            "Whether or not this member is a leader. 1 if is, 0 otherwise",
            self.is_leader.clone(),
        );
        r.register(
            "etcd_server_is_learner",
            "Whether or not this member is a learner. 1 if is, 0 otherwise",
            self.is_learner.clone(),
        );
        r.register("etcd_server_leader_changes_seen", "The number of leader changes seen", self.leader_changes.clone());
        r.register(
            "etcd_server_proposals_committed_total",
            "The total number of consensus proposals committed",
            self.proposals_committed.clone(),
        );
        r.register(
            "etcd_server_proposals_applied_total",
            "The total number of consensus proposals applied",
            self.proposals_applied.clone(),
        );
        r.register(
            "etcd_server_proposals_pending",
            "The current number of pending proposals to commit",
            self.proposals_pending.clone(),
        );
        r.register(
            "etcd_server_proposals_failed",
            "The total number of failed proposals seen",
            self.proposals_failed.clone(),
        );
        r.register(
            "etcd_server_slow_apply",
            "The total number of slow apply requests (likely overloaded from slow disk)",
            self.slow_apply.clone(),
        );
        r.register(
            "etcd_server_heartbeat_send_failures",
            "The total number of leader heartbeat send failures (likely overloaded from slow disk)",
            self.heartbeat_send_failures.clone(),
        );
        r.register(
            "etcd_server_read_indexes_failed",
            "The total number of failed read indexes seen",
            self.read_indexes_failed.clone(),
        );
        r.register(
            "etcd_server_slow_read_indexes",
            "The total number of pending read indexes not in sync with leader's or timed out read index requests",
            self.slow_read_indexes.clone(),
        );
        r.register(
            "etcd_server_id",
            "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID",
            self.server_id.clone(),
        );
        r.register(
            "etcd_server_version",
            "Which version is running. 1 for 'server_version' label with current version",
            self.server_version.clone(),
        );
        r.register(
            "etcd_disk_wal_fsync_duration_seconds",
            "The latency distributions of fsync called by WAL",
            self.wal_fsync.clone(),
        );
        r.register(
            "etcd_disk_backend_commit_duration_seconds",
            "The latency distributions of commit called by backend",
            self.backend_commit.clone(),
        );
        r.register(
            "etcd_disk_backend_defrag_duration_seconds",
            "The latency distribution of backend defragmentation",
            self.defrag_duration.clone(),
        );
        r.register(
            "etcd_disk_backend_snapshot_duration_seconds",
            "The latency distribution of backend snapshots",
            self.snapshot_duration.clone(),
        );
        r.register(
            "etcd_disk_defrag_inflight",
            "Whether or not defrag is active on the member. 1 means active, 0 means not",
            self.defrag_inflight.clone(),
        );
        r.register(
            "etcd_mvcc_db_total_size_in_bytes",
            "Total size of the underlying database physically allocated in bytes",
            self.db_total_size.clone(),
        );
        r.register(
            "etcd_debugging_mvcc_db_total_size_in_bytes",
            "Total size of the underlying database physically allocated in bytes",
            self.debugging_db_total_size.clone(),
        );
        r.register(
            "etcd_cluster_version",
            "Which version is running. 1 for 'cluster_version' label with current cluster version",
            self.cluster_version.clone(),
        );
        r.register(
            "etcd_mvcc_db_total_size_in_use_in_bytes",
            "Total size of the underlying database logically in use in bytes",
            self.db_size_in_use.clone(),
        );
        r.register(
            "etcd_server_quota_backend_bytes",
            "Current backend storage quota size in bytes",
            self.quota_backend_bytes.clone(),
        );
        r.register("etcd_debugging_mvcc_keys_total", "Total number of keys", self.keys.clone());
        r.register(
            "etcd_debugging_mvcc_current_revision",
            "The current revision of store",
            self.current_revision.clone(),
        );
        r.register(
            "etcd_debugging_mvcc_compact_revision",
            "The revision of the last compaction in store",
            self.compact_revision.clone(),
        );
        r.register("etcd_mvcc_put", "Total number of puts seen by this member", self.puts.clone());
        r.register("etcd_mvcc_delete", "Total number of deletes seen by this member", self.deletes.clone());
        r.register("etcd_mvcc_range", "Total number of ranges seen by this member", self.ranges.clone());
        r.register("etcd_mvcc_txn", "Total number of txns seen by this member", self.txns.clone());
        r.register("etcd_debugging_mvcc_watcher_total", "Total number of watchers", self.watchers.clone());
        r.register(
            "etcd_debugging_mvcc_watch_stream_total",
            "Total number of watch streams",
            self.watch_streams.clone(),
        );
        r.register(
            "keel_server_alarm_active",
            "Whether an alarm of this type is active in the cluster. 1 if it is, 0 otherwise",
            self.alarm_active.clone(),
        );
        r.register(
            "etcd_network_peer_round_trip_time_seconds",
            "Round-Trip-Time histogram between peers",
            self.peer_round_trip.clone(),
        );
        r.register(
            "etcd_network_peer_sent_bytes",
            "The total number of bytes sent to peers",
            self.peer_sent_bytes.clone(),
        );
        r.register(
            "etcd_network_peer_received_bytes",
            "The total number of bytes received from peers",
            self.peer_received_bytes.clone(),
        );
        r.register(
            "etcd_network_peer_sent_failures",
            "The total number of send failures from peers",
            self.peer_sent_failures.clone(),
        );
        r.register(
            "etcd_network_client_grpc_received_bytes",
            "The total number of bytes received from grpc clients",
            self.client_received_bytes.clone(),
        );
        r.register(
            "etcd_network_client_grpc_sent_bytes",
            "The total number of bytes sent to grpc clients",
            self.client_sent_bytes.clone(),
        );
        r.register("grpc_server_started", "Total number of RPCs started on the server", self.grpc_started.clone());
        r.register(
            "grpc_server_handled",
            "Total number of RPCs completed on the server, regardless of success or failure",
            self.grpc_handled.clone(),
        );
        self.process.register(r);
    }
}

/// The member's live state that gauges mirror, read by the caller just before a scrape (this module
/// knows no member, so it stays a leaf every layer can count with).
#[derive(Debug, Default)]
pub struct Live {
    pub member_id: u64,
    pub leader: u64,
    pub leader_changes: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    pub db_size: u64,
    pub db_size_in_use: i64,
    /// `--quota-backend-bytes`; None when disabled.
    pub quota: Option<u64>,
    /// Revision, compacted revision, live keys and active alarms, when the store could be read.
    pub store: Option<LiveStore>,
}

#[derive(Debug, Default)]
pub struct LiveStore {
    pub revision: i64,
    pub compact_revision: i64,
    pub keys: u64,
    pub alarms: Vec<keel_api::etcdserverpb::AlarmType>,
}

/// Refreshes the gauges that mirror live state, then encodes everything as OpenMetrics text (see
/// [`format`] for the classic text format etcd serves).
pub fn render(live: &Live) -> String {
    let metrics = get();
    metrics.has_leader.set(i64::from(live.leader != 0));
    metrics.is_leader.set(i64::from(live.leader == live.member_id));
    let seen = metrics.leader_changes_seen.swap(live.leader_changes, Ordering::AcqRel);
    metrics.leader_changes.inc_by(live.leader_changes.saturating_sub(seen));
    metrics.proposals_committed.set(live.commit_index as i64);
    metrics.proposals_applied.set(live.applied_index as i64);
    metrics.server_id.get_or_create(&label("server_id", peer(live.member_id))).set(1);
    metrics.server_version.get_or_create(&label("server_version", keel_api::ETCD_API_VERSION)).set(1);
    metrics.db_total_size.set(live.db_size as i64);
    metrics.debugging_db_total_size.set(live.db_size as i64);
    let api = keel_api::ETCD_API_VERSION;
    let minor = api.rsplit_once('.').map_or(api, |(major_minor, _)| major_minor);
    metrics.cluster_version.get_or_create(&label("cluster_version", minor)).set(1);
    metrics.db_size_in_use.set(live.db_size_in_use);
    metrics.quota_backend_bytes.set(live.quota.map_or(0, |quota| quota as i64));
    if let Some(store) = &live.store {
        metrics.current_revision.set(store.revision);
        metrics.compact_revision.set(store.compact_revision);
        metrics.keys.set(store.keys as i64);
        for (name, kind) in [
            ("NOSPACE", keel_api::etcdserverpb::AlarmType::Nospace),
            ("CORRUPT", keel_api::etcdserverpb::AlarmType::Corrupt),
        ] {
            let on = store.alarms.contains(&kind);
            metrics.alarm_active.get_or_create(&label("alarm", name)).set(i64::from(on));
        }
    }
    metrics.process.refresh();
    let mut text = String::new();
    if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &metrics.registry) {
        tracing::warn!(%error, "encoding metrics failed");
    }
    text
}

/// Counts what one applied response did to the store, as etcd's MVCC counters do (a txn counts when it
/// holds more than one operation; its operations count one by one).
pub fn count_applied(response: &keel_state::Response) {
    use keel_state::Response;
    match response {
        Response::Put(_) => {
            get().puts.inc();
        }
        Response::DeleteRange(_) => {
            get().deletes.inc();
        }
        Response::Txn(txn) => count_txn(&txn.responses),
        _ => {}
    }
}

/// Counts a transaction's operations, and the transaction itself when it holds more than one.
pub fn count_txn(responses: &[keel_api::etcdserverpb::ResponseOp]) {
    if count_operations(responses) > 1 {
        get().txns.inc();
    }
}

fn count_operations(responses: &[keel_api::etcdserverpb::ResponseOp]) -> u64 {
    use keel_api::etcdserverpb::response_op::Response as Op;
    let metrics = get();
    responses
        .iter()
        .map(|op| match &op.response {
            Some(Op::ResponsePut(_)) => {
                metrics.puts.inc();
                1
            }
            Some(Op::ResponseDeleteRange(_)) => {
                metrics.deletes.inc();
                1
            }
            Some(Op::ResponseRange(_)) => {
                metrics.ranges.inc();
                1
            }
            Some(Op::ResponseTxn(nested)) => count_operations(&nested.responses),
            None => 0,
        })
        .sum()
}
