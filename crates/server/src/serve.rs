//! Serving one member: bootstraps it from its data dir (`member::bootstrap`), wires state machine, log,
//! Raft node, applier and the gRPC, peer and HTTP services, serves until the shutdown signal, then stops
//! in order: client servers and background duties, the peer server, the node (a last WAL sync), the
//! applier (a last durable backend commit). A fatal error of the node or applier thread raises the same
//! signal and is returned, so `keel` exits non-zero after an orderly stop.

use crate::applier::{self, ApplierParts, ApplierSettings, DiskStats};
use crate::config::{Settings, url_text};
use crate::datadir::DataDir;
use crate::grpc::authority::AuthorityRewrite;
use crate::grpc::lease::LeaseService;
use crate::grpc::watch::WatchService;
use crate::grpc::{cluster::ClusterService, kv::KvService, maintenance::MaintenanceService};
use crate::lease::Lessor;
use crate::member::Shared;
use crate::member::bootstrap::{Bootstrapped, bootstrap};
use crate::peer::snapshot::{SnapshotReceiver, SnapshotShipper};
use crate::peer::{LeaderLink, PeerService, PeerTransport};
use crate::propose::{Proposer, Waiters};
use crate::shutdown::{Reason, Shutdown};
use crate::watch::WatchHub;
use anyhow::Context;
use keel_api::etcdserverpb::{
    cluster_server::ClusterServer, kv_server::KvServer, lease_server::LeaseServer,
    maintenance_server::MaintenanceServer, watch_server::WatchServer,
};
use keel_api::keelpb::peer_server::PeerServer;
use keel_raft::NodeConfig;
use keel_raft::wal::WalOptions;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How long requests in flight may finish after the stop signal before their connections are closed.
const GRACEFUL_STOP: std::time::Duration = std::time::Duration::from_secs(2);

/// gRPC overhead allowed on top of `--max-request-bytes` (etcd's `grpcOverheadBytes`).
const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// Runs the member until `shutdown` is raised; returns an error if it was raised for a fatal one.
pub async fn run(settings: Settings, shutdown: Shutdown) -> anyhow::Result<()> {
    let data_dir = DataDir::new(settings.data_dir.clone(), settings.wal_dir.clone());
    let wal_options = WalOptions { fsync_delay: settings.wal_fsync_delay, ..WalOptions::default() };
    let Bootstrapped { machine, mut member, log, recovered, conf_state } =
        bootstrap(&settings, &data_dir, wal_options)?;
    let applied_index = machine.state().index;
    tracing::info!(
        name = %settings.name,
        member_id = format_args!("{:x}", member.member_id),
        cluster_id = format_args!("{:x}", member.cluster_id),
        applied_index,
        revision = machine.state().revision,
        wal_dir = %data_dir.wal().display(),
        wal_entries = recovered.entries,
        wal_last_index = recovered.last_index,
        repaired_tail = recovered.repaired_tail,
        "member opened its data dir"
    );
    // Every listener is bound before anything is served, so port 0 resolves and the bound addresses are
    // reported at once (a log line, and a file in the data dir for harnesses).
    let listeners = Listeners::bind(&settings).await?;
    member.client_urls = listeners.advertised_client_urls(&settings);
    listeners.report(&data_dir)?;

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
    let (outbox, defragmenter, applier_thread) = applier::start(ApplierParts {
        machine,
        commands: commands.clone(),
        waiters: waiters.clone(),
        applied: applied_sender,
        hub: hub.clone(),
        lessor: lessor.clone(),
        disk: disk.clone(),
        settings: ApplierSettings {
            snapshot_count: settings.snapshot_count,
            data_dir: data_dir.clone(),
            catch_up_entries: if single_voter { 0 } else { settings.snapshot_catchup_entries },
            warning_apply_duration: settings.warning_apply_duration,
        },
        shutdown: shutdown.clone(),
    });
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
    let transport = PeerTransport::start(&peers, shipper, &shutdown);
    let node_failed = shutdown.clone();
    let node = keel_raft::start(node_config, log, transport, outbox, queue, move |error| {
        node_failed.fatal(format_args!("the raft node failed: {error}"))
    })
    .context("starting the raft node")?;
    let peer_service = PeerService {
        cluster_id: member.cluster_id,
        member_id: member.member_id,
        commands: commands.clone(),
        lessor: lessor.clone(),
        node: node.status_handle(),
        snapshots: SnapshotReceiver { member_id: member.member_id, data_dir: data_dir.clone() },
        backend: backend.clone(),
        applied: applied.clone(),
    };
    let peer_server = serve_peers(listeners.peer, peer_service, &shutdown);
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
    let shared = Arc::new(Shared {
        member,
        proposer: proposer.clone(),
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
    duties.spawn(crate::lease::run(
        lessor.clone(),
        proposer,
        node.status_handle(),
        crate::lease::Duties {
            member_id: shared.member.member_id,
            checkpoint_interval: settings.lease_checkpoint_interval,
        },
    ));
    duties.spawn(crate::space::compactor::run(settings.auto_compaction, shared.clone()));
    duties.spawn(crate::metrics::latency::watch_disk());
    for listener in listeners.http {
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

    let served = tokio::select! {
        () = async {
            wait_until_ready(&shared, &applied).await;
            // As etcd, serve clients once this member's attributes are committed.
            publish(shared.clone(), settings.name.clone()).await;
        } => {
            let services = ClientServices { shared: shared.clone(), hub, lessor, leader_link, applied };
            serve(&settings, listeners.client, services, &shutdown).await
        }
        () = shutdown.raised() => {
            tracing::info!("stopped before the member became ready");
            Ok(())
        }
    };
    // Whatever ended serving (a signal, a fatal error, a client server that failed), everything stops.
    shutdown.raise(Reason::Requested);
    duties.abort_all();
    while duties.join_next().await.is_some() {}
    // The last holder of the applier's queue (through the defragmenter) goes with the shared state, so the
    // applier sees its queue close once the node stops.
    drop(shared);
    let _ = peer_server.await;
    node.shutdown();
    let _ = applier_thread.join();
    tracing::info!("{}", disk.summary());
    match shutdown.reason() {
        Some(Reason::Fatal(error)) => {
            tracing::error!(%error, "member stopped on a fatal error");
            Err(anyhow::anyhow!(error))
        }
        _ => {
            tracing::info!("member stopped");
            served
        }
    }
}

/// Every socket the member listens on, bound at start.
struct Listeners {
    client: Vec<(url::Url, TcpListener)>,
    peer: Vec<TcpListener>,
    /// Plain HTTP: --listen-metrics-urls and --listen-client-http-urls.
    http: Vec<TcpListener>,
    /// (role, requested URL, bound address), for the report.
    bound: Vec<(&'static str, String, SocketAddr)>,
}

impl Listeners {
    async fn bind(settings: &Settings) -> anyhow::Result<Self> {
        let mut listeners = Listeners { client: Vec::new(), peer: Vec::new(), http: Vec::new(), bound: Vec::new() };
        let peer = ("peer", "listen-peer-urls", "listening for peers");
        listeners.peer =
            listeners.bind_all(&settings.listen_peer_urls, peer).await?.into_iter().map(|(_, l)| l).collect();
        let client = ("client", "listen-client-urls", "serving the etcd v3 API");
        listeners.client = listeners.bind_all(&settings.listen_client_urls, client).await?;
        let metrics = ("metrics", "listen-metrics-urls", "serving /metrics and /health");
        let client_http = ("client-http", "listen-client-http-urls", "serving HTTP (/health, /metrics)");
        for (urls, purpose) in
            [(&settings.listen_metrics_urls, metrics), (&settings.listen_client_http_urls, client_http)]
        {
            let bound = listeners.bind_all(urls, purpose).await?;
            listeners.http.extend(bound.into_iter().map(|(_, listener)| listener));
        }
        Ok(listeners)
    }

    /// Binds every URL of one flag; `(role, flag, what it serves)` name it in the log and the report.
    async fn bind_all(
        &mut self,
        urls: &[url::Url],
        (role, flag, serving): (&'static str, &str, &str),
    ) -> anyhow::Result<Vec<(url::Url, TcpListener)>> {
        let mut bound = Vec::with_capacity(urls.len());
        for url in urls {
            let listener = listen(url, flag, serving).await?;
            self.bound.push((role, url_text(url), listener.local_addr()?));
            bound.push((url.clone(), listener));
        }
        Ok(bound)
    }

    /// `--advertise-client-urls`, where a port 0 is replaced by the port the first client listener got
    /// (a member told to pick its own port advertises the one it picked).
    fn advertised_client_urls(&self, settings: &Settings) -> Vec<String> {
        let bound_port = self.client.first().and_then(|(_, listener)| listener.local_addr().ok()).map(|a| a.port());
        settings
            .advertise_client_urls
            .iter()
            .map(|url| match (url.port(), bound_port) {
                (Some(0), Some(port)) => {
                    let mut url = url.clone();
                    let _ = url.set_port(Some(port));
                    url_text(&url)
                }
                _ => url_text(url),
            })
            .collect()
    }

    /// Writes `<data-dir>/bound-addresses`: one line per listener, `role requested-url bound-address`.
    fn report(&self, data_dir: &DataDir) -> anyhow::Result<()> {
        let text: String = self.bound.iter().map(|(role, url, address)| format!("{role} {url} {address}\n")).collect();
        let path = data_dir.bound_addresses();
        let temporary = path.with_extension("tmp");
        std::fs::write(&temporary, text)
            .and_then(|()| std::fs::rename(&temporary, &path))
            .with_context(|| format!("writing {}", path.display()))
    }
}

/// The client services' shared parts.
struct ClientServices {
    shared: Arc<Shared>,
    hub: Arc<WatchHub>,
    lessor: Arc<Lessor>,
    leader_link: Arc<LeaderLink>,
    applied: watch::Receiver<u64>,
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

/// Serves the client API on every client listener until the shutdown signal.
async fn serve(
    settings: &Settings,
    listeners: Vec<(url::Url, TcpListener)>,
    services: ClientServices,
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    let ClientServices { shared, hub, lessor, leader_link, applied } = services;
    let max_receive = settings.max_request_bytes + GRPC_OVERHEAD_BYTES;
    let mut servers = tokio::task::JoinSet::new();
    for (url, listener) in listeners {
        let incoming = accept(listener);
        // HTTP/1.1 too, for /health, /livez and /readyz next to the gRPC services (as etcd's client port).
        let router = tonic::transport::Server::builder()
            .accept_http1(true)
            .max_concurrent_streams(Some(settings.max_concurrent_streams))
            .http2_keepalive_interval(settings.grpc_keepalive_interval)
            .http2_keepalive_timeout(Some(settings.grpc_keepalive_timeout))
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
                WatchServer::new(WatchService {
                    shared: shared.clone(),
                    hub: hub.clone(),
                    progress_interval: settings.watch_progress_interval,
                    max_response_bytes: max_receive,
                    shutdown: shutdown.clone(),
                })
                .max_decoding_message_size(max_receive)
                .max_encoding_message_size(usize::MAX),
            )
            .add_service(
                LeaseServer::new(LeaseService::new(
                    shared.clone(),
                    lessor.clone(),
                    leader_link.clone(),
                    shutdown.clone(),
                ))
                .max_decoding_message_size(max_receive),
            );
        let stop = shutdown.clone();
        servers.spawn(async move {
            let served = router.serve_with_incoming_shutdown(incoming, stop.raised()).await;
            served.with_context(|| format!("client server on {}", url_text(&url)))
        });
    }
    tokio::select! {
        () = shutdown.raised() => tracing::info!("shutting down"),
        Some(result) = servers.join_next() => result.context("client server task")??,
    }
    // Streams end on the signal; requests still in flight get a moment, then their connections close.
    // A fatal error is a fail-stop, as before the shutdown signal existed: no grace for requests in flight.
    let patience = match shutdown.reason() {
        Some(Reason::Fatal(_)) => std::time::Duration::ZERO,
        _ => GRACEFUL_STOP,
    };
    let drained = tokio::time::timeout(patience, async {
        while let Some(result) = servers.join_next().await {
            result.context("client server task")??;
        }
        anyhow::Ok(())
    })
    .await;
    match drained {
        Ok(result) => result,
        Err(_) => {
            tracing::warn!(
                waited_ms = GRACEFUL_STOP.as_millis() as u64,
                "client requests still in flight at stop; closing their connections"
            );
            servers.abort_all();
            Ok(())
        }
    }
}

/// Serves the peer service on every peer listener, in the background, until the shutdown signal.
fn serve_peers(listeners: Vec<TcpListener>, service: PeerService, shutdown: &Shutdown) -> tokio::task::JoinHandle<()> {
    let service = PeerServer::new(service).max_decoding_message_size(64 * 1024 * 1024);
    shutdown.spawn(async move {
        let mut servers = tokio::task::JoinSet::new();
        for listener in listeners {
            let router = tonic::transport::Server::builder().add_service(service.clone());
            let stream = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
            // Not a graceful stop: peers' streams never end by themselves, the server is dropped at stop.
            servers.spawn(router.serve_with_incoming(stream));
        }
        while let Some(result) = servers.join_next().await {
            if let Ok(Err(error)) = result {
                tracing::error!(%error, "peer listener failed");
            }
        }
    })
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
    let bound = listener.local_addr()?;
    tracing::info!(url = %url_text(url), address = %bound, "{serving}");
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
