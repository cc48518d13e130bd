//! One member: opens the data dir, wires state machine, log, Raft node, applier and gRPC services,
//! serves until told to stop, then shuts down in order (servers, node with a last WAL sync, applier
//! with a last durable backend commit).
//!
//! Data dir layout (as etcd's): `member/wal/` (the Raft log) and `member/snap/db` (the backend).

use crate::applier::{self, ApplierSettings, DiskStats};
use crate::config::{Settings, url_text};
use crate::grpc::authority::AuthorityRewrite;
use crate::grpc::lease::LeaseService;
use crate::grpc::watch::WatchService;
use crate::grpc::{
    ClusterMember, MemberInfo, Shared, cluster::ClusterService, kv::KvService, maintenance::MaintenanceService,
};
use crate::lease::Lessor;
use crate::peer::snapshot::{self, SnapshotShipper};
use crate::peer::{LeaderLink, PeerService, PeerTransport};
use crate::propose::{Proposer, Waiters};
use crate::watch::WatchHub;
use anyhow::Context;
use keel_api::etcdserverpb::{
    cluster_server::ClusterServer, kv_server::KvServer, lease_server::LeaseServer,
    maintenance_server::MaintenanceServer, watch_server::WatchServer,
};
use keel_api::identity;
use keel_api::keelpb::peer_server::PeerServer;
use keel_raft::raft::eraftpb::ConfState;
use keel_raft::wal::WalOptions;
use keel_raft::{Bootstrap, LogError, LogStore, NodeConfig, Recovered};
use keel_state::StateMachine;
use keel_state::backend::meta;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;

/// gRPC overhead allowed on top of `--max-request-bytes` (etcd's `grpcOverheadBytes`).
const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

pub async fn run(settings: Settings, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let member_dir = settings.data_dir.join("member");
    let snapshot_dir = member_dir.join("snap");
    let mut machine = StateMachine::open(&snapshot_dir.join("db"))
        .with_context(|| format!("opening the backend in {}", member_dir.display()))?;
    let member = identity_of(&settings, &mut machine)?;
    let wal_options = WalOptions { fsync_delay: settings.wal_fsync_delay, ..WalOptions::default() };
    let (log, recovered, conf_state) = open_log(&member_dir, &mut machine, &member, wal_options)?;
    let applied_index = machine.state().index;
    snapshot::remove_stale_images(&snapshot_dir, applied_index, true);
    tracing::info!(
        name = %settings.name,
        member_id = format_args!("{:x}", member.member_id),
        cluster_id = format_args!("{:x}", member.cluster_id),
        applied_index,
        revision = machine.state().revision,
        wal_entries = recovered.entries,
        wal_last_index = recovered.last_index,
        repaired_tail = recovered.repaired_tail,
        "member opened its data dir"
    );

    let waiters = Arc::new(Waiters::default());
    let (applied_sender, applied) = watch::channel(applied_index);
    let hub = Arc::new(WatchHub::default());
    let min_lease_ttl = (settings.election_timeout * 3 / 2).as_secs_f64().ceil() as i64;
    let lessor = Arc::new(Lessor::new(machine.read()?.leases()?, min_lease_ttl, settings.election_timeout));
    let disk = Arc::new(DiskStats::default());
    let backend = machine.backend().clone();
    let queue = keel_raft::command_queue();
    let commands = queue.0.clone();
    let single_voter = conf_state.voters == [member.member_id];
    let (outbox, defragmenter, applier_thread) = applier::start(
        machine,
        commands.clone(),
        waiters.clone(),
        applied_sender,
        hub.clone(),
        lessor.clone(),
        disk.clone(),
        ApplierSettings {
            snapshot_count: settings.snapshot_count,
            snapshot_dir: snapshot_dir.clone(),
            catch_up_entries: if single_voter { 0 } else { settings.snapshot_catchup_entries },
        },
    );
    let node_config = NodeConfig {
        id: member.member_id,
        voters: conf_state.voters.clone(),
        tick_interval: settings.tick_interval,
        election_ticks: settings.election_ticks,
        applied_index,
    };
    let peers: Vec<(u64, String)> =
        member.members.iter().filter_map(|peer| Some((peer.id, peer.peer_urls.first()?.clone()))).collect();
    let shipper = SnapshotShipper {
        cluster_id: member.cluster_id,
        member_id: member.member_id,
        backend: backend.clone(),
        applied: applied.clone(),
        commands: commands.clone(),
        runtime: tokio::runtime::Handle::current(),
    };
    let transport = PeerTransport::start(&peers, shipper);
    let node = keel_raft::start(node_config, log, transport, outbox, queue).context("starting the raft node")?;
    let peer_service = PeerService::new(
        member.cluster_id,
        member.member_id,
        commands.clone(),
        lessor.clone(),
        node.status_handle(),
        (snapshot_dir, backend.clone(), applied.clone()),
    );
    let peer_server = serve_peers(&settings, peer_service).await?;
    let leader_link = Arc::new(LeaderLink::new(
        (member.cluster_id, member.member_id),
        (node.status_handle(), applied.clone()),
        &peers,
        settings.request_timeout,
    ));

    let proposer = Proposer::new(
        member.member_id,
        commands,
        waiters,
        node.status_handle(),
        applied.clone(),
        settings.max_request_bytes,
        settings.request_timeout,
    );
    if settings.unsafe_local_reads {
        proposer.break_linearizable_reads();
    }
    tokio::spawn(crate::lease::run(
        lessor.clone(),
        proposer.clone(),
        node.status_handle(),
        crate::lease::Duties { member_id: member.member_id, checkpoint_interval: settings.lease_checkpoint_interval },
    ));
    let shared = Arc::new(Shared {
        member,
        proposer,
        backend,
        node: node.status_handle(),
        max_txn_ops: settings.max_txn_ops,
        quota: settings.quota_backend_bytes,
        defragmenter,
        applied: applied.clone(),
        size_in_use_cache: std::sync::Mutex::new(None),
    });
    // Background duties hold the shared state; they are stopped before the member shuts down.
    let mut duties = tokio::task::JoinSet::new();
    duties.spawn(crate::space::compactor::run(settings.auto_compaction, shared.clone()));
    duties.spawn(crate::metrics::latency::watch_disk());
    for url in &settings.listen_metrics_urls {
        let listener = listen(url, "listen-metrics-urls", "serving /metrics and /health").await?;
        let routes = crate::http::routes(shared.clone());
        duties.spawn(async move {
            if let Err(error) = axum::serve(listener, routes).await {
                tracing::error!(%error, "metrics listener failed");
            }
        });
    }
    if let Some(interval) = settings.corrupt_check_interval {
        duties.spawn(crate::space::corruption::run(interval, shared.clone(), peers.clone()));
    }
    if let Some(threshold) = settings.auto_defrag_threshold {
        let policy =
            crate::space::auto_defrag::Policy { threshold, check_interval: settings.auto_defrag_check_interval };
        duties.spawn(crate::space::auto_defrag::run(policy, shared.clone()));
    }

    let (stop_sender, stop) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_sender.send(true);
    });
    let mut stopped = stop.clone();
    let served = tokio::select! {
        () = async {
            wait_until_ready(&shared, &applied).await;
            // As etcd, serve clients once this member's attributes are committed.
            publish(shared.clone(), settings.name.clone()).await;
        } => {
            serve(&settings, shared.clone(), hub, (lessor, leader_link), applied, stop).await
        }
        _ = stopped.wait_for(|stopped| *stopped) => {
            tracing::info!("stopped before the member became ready");
            Ok(())
        }
    };
    duties.abort_all();
    while duties.join_next().await.is_some() {}
    // The last holder of the applier's queue (through the defragmenter) goes with the shared state, so the
    // applier sees its queue close once the node stops.
    drop(shared);
    peer_server.abort();
    node.shutdown();
    let _ = applier_thread.join();
    tracing::info!("{}", disk.summary());
    tracing::info!("member stopped");
    served
}

/// Publishes this member's name and client URLs through the log (etcd's `publish`), retrying until it
/// is committed, unless what is stored already says the same.
async fn publish(shared: Arc<Shared>, name: String) {
    let attributes = keel_api::keelpb::MemberAttributes {
        id: shared.member.member_id,
        name,
        client_urls: shared.member.client_urls.clone(),
    };
    loop {
        let stored = shared.read_view().ok().and_then(|view| view.member_attributes().ok()).unwrap_or_default();
        if stored.contains(&attributes) {
            return;
        }
        let request = keel_api::keelpb::internal_request::Request::MemberAttributes(attributes.clone());
        match shared.proposer.propose(request).await {
            Ok(_) => return,
            Err(error) => {
                tracing::debug!(%error, "publishing member attributes; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        }
    }
}

/// Like etcd, serve clients only once the member has a leader that committed in its term and has applied
/// what was committed: before that, writes and linearizable reads could only wait.
async fn wait_until_ready(shared: &Shared, applied: &watch::Receiver<u64>) {
    let started = std::time::Instant::now();
    let mut warned = started;
    loop {
        let status = shared.node.snapshot();
        if status.committed_in_term && *applied.borrow() >= status.commit_index {
            tracing::info!(waited_ms = started.elapsed().as_millis() as u64, "member is ready");
            return;
        }
        if warned.elapsed() >= std::time::Duration::from_secs(5) {
            warned = std::time::Instant::now();
            tracing::warn!(leader = status.leader, "waiting for a leader before serving clients");
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Serves the client API on every `--listen-client-urls` address until `shutdown` completes.
async fn serve(
    settings: &Settings,
    shared: Arc<Shared>,
    hub: Arc<WatchHub>,
    (lessor, leader_link): (Arc<Lessor>, Arc<LeaderLink>),
    applied: watch::Receiver<u64>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let max_receive = settings.max_request_bytes + GRPC_OVERHEAD_BYTES;
    let mut servers = tokio::task::JoinSet::new();
    for url in &settings.listen_client_urls {
        let incoming = accept(listen(url, "listen-client-urls", "serving the etcd v3 API").await?);
        // HTTP/1.1 too, for /health, /livez and /readyz next to the gRPC services (as etcd's client port).
        let router = tonic::transport::Server::builder()
            .accept_http1(true)
            .layer(crate::metrics::grpc::GrpcMetricsLayer)
            .add_routes(tonic::service::Routes::from(crate::http::routes(shared.clone())))
            .add_service(
                KvServer::new(KvService::new(shared.clone()))
                    .max_decoding_message_size(max_receive)
                    .max_encoding_message_size(usize::MAX),
            )
            .add_service(
                MaintenanceServer::new(MaintenanceService::new(shared.clone(), applied.clone()))
                    .max_decoding_message_size(max_receive)
                    .max_encoding_message_size(usize::MAX),
            )
            .add_service(ClusterServer::new(ClusterService::new(shared.clone())).max_decoding_message_size(max_receive))
            .add_service(
                WatchServer::new(WatchService::new(
                    shared.clone(),
                    hub.clone(),
                    settings.watch_progress_interval,
                    // etcd fragments watch responses at the gRPC receive limit, not at --max-request-bytes.
                    max_receive,
                ))
                .max_decoding_message_size(max_receive)
                .max_encoding_message_size(usize::MAX),
            )
            .add_service(
                LeaseServer::new(LeaseService::new(shared.clone(), lessor.clone(), leader_link.clone()))
                    .max_decoding_message_size(max_receive),
            );
        let mut stop = stop.clone();
        servers.spawn(async move {
            router
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = stop.wait_for(|stopped| *stopped).await;
                })
                .await
        });
    }
    let mut stopped = stop.clone();
    tokio::select! {
        _ = stopped.wait_for(|stopped| *stopped) => tracing::info!("shutting down"),
        Some(result) = servers.join_next() => {
            result.context("client server task")?.context("client server")?;
        }
    }
    while let Some(result) = servers.join_next().await {
        result.context("client server task")?.context("client server")?;
    }
    Ok(())
}

/// Serves the peer service on every `--listen-peer-urls` address (in the background).
async fn serve_peers(settings: &Settings, service: PeerService) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let mut incoming = Vec::new();
    for url in &settings.listen_peer_urls {
        incoming.push(listen(url, "listen-peer-urls", "listening for peers").await?);
    }
    let service = PeerServer::new(service).max_decoding_message_size(64 * 1024 * 1024);
    Ok(tokio::spawn(async move {
        let mut servers = tokio::task::JoinSet::new();
        for listener in incoming {
            let router = tonic::transport::Server::builder().add_service(service.clone());
            let stream = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
            servers.spawn(router.serve_with_incoming(stream));
        }
        while let Some(result) = servers.join_next().await {
            if let Ok(Err(error)) = result {
                tracing::error!(%error, "peer listener failed");
            }
        }
    }))
}

/// Client connections: TCP_NODELAY (without it, small replies can wait ~40 ms for a delayed ACK), and
/// the `:authority` rewrite etcd's Go clients need (see `grpc::authority`).
fn accept(
    listener: tokio::net::TcpListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<AuthorityRewrite<tokio::net::TcpStream>>> {
    use tokio_stream::StreamExt;
    tokio_stream::wrappers::TcpListenerStream::new(listener).map(|accepted| {
        let stream = accepted?;
        stream.set_nodelay(true)?;
        Ok(AuthorityRewrite::new(stream))
    })
}

/// Binds one of the URLs of `--{flag}`, saying what it serves.
async fn listen(url: &url::Url, flag: &str, serving: &str) -> anyhow::Result<tokio::net::TcpListener> {
    let address = resolve(url).await?;
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {} (--{flag}): is the port in use?", url_text(url)))?;
    tracing::info!(url = %url_text(url), %address, "{serving}");
    Ok(listener)
}

async fn resolve(url: &url::Url) -> anyhow::Result<SocketAddr> {
    let host = url.host_str().context("URL without host")?.trim_start_matches('[').trim_end_matches(']');
    let port = url.port().context("URL without port")?;
    let mut addresses: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .with_context(|| format!("cannot resolve {}", url_text(url)))?
        .collect();
    // Like Go's listener, prefer IPv4 when a name resolves to both.
    addresses.sort_by_key(|address| !address.is_ipv4());
    addresses.into_iter().next().with_context(|| format!("{} resolves to no address", url_text(url)))
}

/// The member's ids: fixed at bootstrap (etcd ignores `--initial-cluster` on restart), derived from the
/// initial cluster's peer URLs and token the way etcd derives them.
fn identity_of(settings: &Settings, machine: &mut StateMachine) -> anyhow::Result<MemberInfo> {
    let stored = (read_id(machine, meta::CLUSTER_ID)?, read_id(machine, meta::MEMBER_ID)?);
    let members: Vec<ClusterMember> = settings
        .initial_cluster
        .iter()
        .map(|(_, urls)| {
            let peer_urls: Vec<String> = urls.iter().map(url_text).collect();
            ClusterMember { id: identity::member_id(&peer_urls, &settings.initial_cluster_token), peer_urls }
        })
        .collect();
    let (cluster_id, member_id) = match stored {
        (Some(cluster_id), Some(member_id)) => {
            // A restored data dir (ids, but no Raft configuration yet) must start as the member it was
            // restored for; after its first start, the stored configuration is what counts, as in etcd.
            let first_start = machine.meta(meta::CONF_STATE)?.is_none();
            if first_start && !members.iter().any(|member| member.id == member_id) {
                anyhow::bail!(
                    "the data dir {} belongs to member {member_id:x} of cluster {cluster_id:x}, which is not in --initial-cluster (with --initial-cluster-token {:?}); start it with the flags it was created or restored with (`keelctl snapshot restore` prints them)",
                    settings.data_dir.display(),
                    settings.initial_cluster_token
                );
            }
            (cluster_id, member_id)
        }
        _ => {
            let ids: Vec<u64> = members.iter().map(|member| member.id).collect();
            let own = identity::member_id(
                &settings.advertise_peer_urls.iter().map(url_text).collect::<Vec<_>>(),
                &settings.initial_cluster_token,
            );
            let cluster_id = identity::cluster_id(&ids);
            machine.store_meta(meta::CLUSTER_ID, &cluster_id.to_be_bytes())?;
            machine.store_meta(meta::MEMBER_ID, &own.to_be_bytes())?;
            (cluster_id, own)
        }
    };
    Ok(MemberInfo {
        cluster_id,
        member_id,
        client_urls: settings.advertise_client_urls.iter().map(url_text).collect(),
        members,
    })
}

fn read_id(machine: &StateMachine, name: &str) -> anyhow::Result<Option<u64>> {
    match machine.meta(name)? {
        Some(bytes) => {
            let bytes: [u8; 8] =
                bytes.as_slice().try_into().with_context(|| format!("meta key {name} is malformed"))?;
            Ok(Some(u64::from_be_bytes(bytes)))
        }
        None => Ok(None),
    }
}

/// The Raft configuration: stored at bootstrap (every initial member votes), read back on restart.
fn conf_state_of(machine: &mut StateMachine, member: &MemberInfo) -> anyhow::Result<ConfState> {
    if let Some(bytes) = machine.meta(meta::CONF_STATE)? {
        return Ok(keel_raft::decode_conf_state(&bytes)?);
    }
    let voters = member.members.iter().map(|member| member.id).collect();
    let conf_state = ConfState { voters, ..Default::default() };
    machine.store_meta(meta::CONF_STATE, &keel_raft::encode_conf_state(&conf_state))?;
    Ok(conf_state)
}

/// Opens the Raft log over the state machine. If the log records a snapshot the store never switched to
/// (the member stopped between the two), the image received for it is installed first, as etcd does with
/// its `snap/<index>.snap.db`.
fn open_log(
    member_dir: &std::path::Path,
    machine: &mut StateMachine,
    member: &MemberInfo,
    options: WalOptions,
) -> anyhow::Result<(LogStore, Recovered, ConfState)> {
    let wal_dir = member_dir.join("wal");
    let mut installed = false;
    loop {
        let conf_state = conf_state_of(machine, member)?;
        let bootstrap = Bootstrap { conf_state: conf_state.clone(), applied_index: machine.state().index };
        match LogStore::open(&wal_dir, options.clone(), &bootstrap) {
            Ok((log, recovered)) => return Ok((log, recovered, conf_state)),
            Err(LogError::AppliedBeforeLog { applied, first }) if !installed => {
                let image = applier::snapshot_file(&member_dir.join("snap"), first - 1);
                if !image.exists() {
                    return Err(LogError::AppliedBeforeLog { applied, first }.into());
                }
                tracing::info!(applied, snapshot_index = first - 1, image = %image.display(), "installing the snapshot image the log already records");
                machine.install(&image).with_context(|| format!("installing {}", image.display()))?;
                installed = true;
            }
            Err(error) => {
                return Err(
                    anyhow::Error::new(error).context(format!("opening the write-ahead log in {}", wal_dir.display()))
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_raft::raft::eraftpb::Snapshot;
    use keel_state::backend::image;

    #[test]
    fn a_snapshot_the_log_recorded_but_the_store_missed_is_installed_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let member = MemberInfo {
            cluster_id: 7,
            member_id: 2,
            client_urls: Vec::new(),
            members: vec![
                ClusterMember { id: 1, peer_urls: Vec::new() },
                ClusterMember { id: 2, peer_urls: Vec::new() },
            ],
        };
        // The leader's store has applied 5 entries; its image waits in snap/ under index 5.
        let mut leader = StateMachine::open(&dir.path().join("leader.db")).unwrap();
        let entries: Vec<keel_state::Entry<'_>> =
            (1..=5).map(|index| keel_state::Entry { index, term: 2, data: &[] }).collect();
        leader.apply(&entries, true).unwrap();
        let member_dir = dir.path().join("member");
        std::fs::create_dir_all(member_dir.join("snap")).unwrap();
        let mut bytes = Vec::new();
        image::export(leader.backend(), &[meta::MEMBER_ID], &mut bytes, |_| {}).unwrap();
        image::import(bytes.as_slice(), &applier::snapshot_file(&member_dir.join("snap"), 5), &[], |_| {}).unwrap();

        // This member's log recorded the snapshot, then the member stopped before its store switched.
        let mut machine = StateMachine::open(&member_dir.join("snap").join("db")).unwrap();
        {
            let (log, _, _) = open_log(&member_dir, &mut machine, &member, WalOptions::default()).unwrap();
            let mut log = log;
            let mut snapshot = Snapshot::default();
            snapshot.mut_metadata().index = 5;
            snapshot.mut_metadata().term = 2;
            snapshot.mut_metadata().mut_conf_state().voters = vec![1, 2];
            log.install_snapshot(&snapshot).unwrap();
        }
        assert_eq!(machine.state().index, 0);
        let (_, recovered, _) = open_log(&member_dir, &mut machine, &member, WalOptions::default()).unwrap();
        assert_eq!(recovered.snapshot_index, 5);
        assert_eq!((machine.state().index, machine.state().term), (5, 2));
        assert!(!applier::snapshot_file(&member_dir.join("snap"), 5).exists(), "the image became the store");
    }
}
