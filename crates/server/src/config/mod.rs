//! etcd's flags, their `ETCD_*` environment variables and etcd's YAML configuration file, with etcd's
//! defaults: [`Config`] holds the flags Keel implements, typed (URL lists, Go durations, enums);
//! [`foreign`] the etcd flags it does not; [`load`] reads the sources with etcd's precedence; [`Settings`]
//! is the checked result the member uses.

mod duration;
pub mod foreign;
pub mod load;

pub use duration::GoDuration;
pub use load::load;

use clap::Parser;
use std::path::PathBuf;
use std::time::Duration;
use url::Url;

/// Keel: an etcd v3 compatible, strongly consistent key-value store.
///
/// Takes etcd's flags (`--flag value`, `--flag=value` or Go's `-flag value`), their `ETCD_*` environment
/// variables, and etcd's YAML configuration file (`--config-file`). etcd flags Keel does not implement
/// are accepted with a log line saying they have no effect, or refused with the reason (see
/// `config::foreign` and the README's table).
#[derive(Debug, Clone, Parser)]
#[command(name = "keel", version, about)]
pub struct Config {
    /// Path to etcd's YAML server configuration file; other flags and ETCD_* variables are then ignored, as
    /// etcd does.
    #[arg(long)]
    pub config_file: Option<PathBuf>,
    /// Human-readable name for this member.
    #[arg(long, default_value = "default")]
    pub name: String,
    /// Path to the data directory [default: <name>.keel].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Path to the dedicated WAL directory [default: <data-dir>/member/wal]: put the log on its own disk.
    #[arg(long)]
    pub wal_dir: Option<PathBuf>,
    /// URLs to listen on for client traffic (comma-separated).
    #[arg(long, default_value = "http://localhost:2379")]
    pub listen_client_urls: UrlList,
    /// More URLs to serve only HTTP on (/health, /metrics), not gRPC (comma-separated).
    #[arg(long)]
    pub listen_client_http_urls: Option<UrlList>,
    /// Client URLs of this member as advertised to the rest of the cluster and to clients.
    #[arg(long, default_value = "http://localhost:2379")]
    pub advertise_client_urls: UrlList,
    /// URLs to listen on for peer traffic.
    #[arg(long, default_value = "http://localhost:2380")]
    pub listen_peer_urls: UrlList,
    /// Peer URLs of this member as advertised to the rest of the cluster.
    #[arg(long, default_value = "http://localhost:2380")]
    pub initial_advertise_peer_urls: UrlList,
    /// Initial cluster configuration for bootstrapping: name=peerURL,... [default: <name>=<initial-advertise-peer-urls>].
    #[arg(long)]
    pub initial_cluster: Option<String>,
    /// Initial cluster state ('new' or 'existing').
    #[arg(long, value_enum, default_value = "new")]
    pub initial_cluster_state: ClusterState,
    /// Initial cluster token, part of the member and cluster ids.
    #[arg(long, default_value = "etcd-cluster")]
    pub initial_cluster_token: String,
    /// Backend quota in bytes before the NOSPACE alarm (0 = etcd's default, 2 GiB; negative disables it).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub quota_backend_bytes: i64,
    /// Auto compaction mode: 'periodic' or 'revision'.
    #[arg(long, value_enum, default_value = "periodic")]
    pub auto_compaction_mode: CompactionMode,
    /// Auto compaction retention (e.g. '1h' for periodic, '1000' for revision; '0' disables).
    #[arg(long, default_value = "0")]
    pub auto_compaction_retention: String,
    /// Keel: how often the revision-mode auto-compactor looks at the revision (etcd: fixed 5m).
    #[arg(long, default_value = "5m")]
    pub auto_compaction_check_interval: GoDuration,
    /// Keel: defragment by itself, one member of the cluster at a time, when the file is over this share of
    /// the quota or this share of the file is free (0 = off). E.g. 0.8.
    #[arg(long, default_value_t = 0.0)]
    pub auto_defrag_threshold: f64,
    /// Keel: how often a member checks whether it should defragment by itself.
    #[arg(long, default_value = "1m")]
    pub auto_defrag_check_interval: GoDuration,
    /// How often the leader compares its members' HashKV and raises CORRUPT on a mismatch (0s = off).
    #[arg(long, default_value = "0s")]
    pub experimental_corrupt_check_time: GoDuration,
    /// Time (in milliseconds) of a heartbeat interval.
    #[arg(long, default_value_t = 100)]
    pub heartbeat_interval: u64,
    /// Time (in milliseconds) for an election to timeout.
    #[arg(long, default_value_t = 1000)]
    pub election_timeout: u64,
    /// Number of committed entries between two compactions of the Raft log.
    #[arg(long, default_value_t = 100_000)]
    pub snapshot_count: u64,
    /// Entries a member keeps in its Raft log behind each compaction, for slow followers; a follower
    /// further behind is sent a snapshot.
    #[arg(long, default_value_t = 5000)]
    pub experimental_snapshot_catchup_entries: u64,
    /// Maximum client request size in bytes the server will accept.
    #[arg(long, default_value_t = 1_572_864)]
    pub max_request_bytes: u32,
    /// Maximum number of operations permitted in a transaction.
    #[arg(long, default_value_t = 128)]
    pub max_txn_ops: u32,
    /// Maximum concurrent streams that each client connection can have.
    #[arg(long, default_value_t = u32::MAX)]
    pub max_concurrent_streams: u32,
    /// How often the server pings an idle client connection (0s = never).
    #[arg(long, default_value = "2h")]
    pub grpc_keepalive_interval: GoDuration,
    /// How long the server waits for a ping's answer before closing the connection.
    #[arg(long, default_value = "20s")]
    pub grpc_keepalive_timeout: GoDuration,
    /// Interval of the progress notifications watchers ask for (etcd's experimental flag), e.g. '10m', '5s'.
    #[arg(long, default_value = "10m")]
    pub experimental_watch_progress_notify_interval: GoDuration,
    /// How often the leader checkpoints leases' remaining TTLs into the log, e.g. '5m'.
    #[arg(long, default_value = "5m")]
    pub experimental_lease_checkpoint_interval: GoDuration,
    /// Applies slower than this are counted and logged as slow.
    #[arg(long, default_value = "100ms")]
    pub experimental_warning_apply_duration: GoDuration,
    /// More URLs to serve /metrics and /health on, plain HTTP (comma-separated; the client port serves
    /// them too).
    #[arg(long)]
    pub listen_metrics_urls: Option<UrlList>,
    /// Test only: a delay added to every WAL fsync, to see how a slow disk is reported (e.g. '20ms').
    #[arg(long, default_value = "0s", hide = true)]
    pub test_wal_fsync_delay: GoDuration,
    /// Test only, and UNSAFE: serve linearizable reads from the local store without a ReadIndex round (a
    /// deliberately broken build for the fault-injection suite to catch). Refused unless the environment
    /// has KEEL_ALLOW_UNSAFE_TEST_FLAGS=1.
    #[arg(long, hide = true)]
    pub test_unsafe_local_reads: bool,
    /// Log level: debug, info, warn, error, panic, fatal.
    #[arg(long, value_enum, default_value = "info")]
    pub log_level: LogLevel,
    /// etcd 3.4's way to say --log-level=debug.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", action = clap::ArgAction::Set)]
    pub debug: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, clap::ValueEnum)]
pub enum ClusterState {
    New,
    Existing,
}

#[derive(Debug, Clone, Copy, PartialEq, clap::ValueEnum)]
pub enum CompactionMode {
    Periodic,
    Revision,
}

#[derive(Debug, Clone, Copy, PartialEq, clap::ValueEnum)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
    Panic,
    Fatal,
}

impl LogLevel {
    /// The tracing filter for this level; raft-rs's own chatter is kept at warn unless debugging.
    pub fn filter(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info,raft=warn",
            LogLevel::Warn => "warn",
            LogLevel::Error | LogLevel::Panic | LogLevel::Fatal => "error",
        }
    }
}

/// The configuration after checks, in the shapes the member uses.
#[derive(Debug, Clone)]
pub struct Settings {
    pub name: String,
    /// `--election-timeout`.
    pub election_timeout: Duration,
    pub data_dir: PathBuf,
    /// `--wal-dir`: the Raft log apart from the data dir.
    pub wal_dir: Option<PathBuf>,
    pub listen_client_urls: Vec<Url>,
    /// `--listen-client-http-urls`: HTTP only (health, metrics).
    pub listen_client_http_urls: Vec<Url>,
    pub advertise_client_urls: Vec<Url>,
    pub advertise_peer_urls: Vec<Url>,
    pub listen_peer_urls: Vec<Url>,
    /// (name, peer URLs) of every initial member, in flag order.
    pub initial_cluster: Vec<(String, Vec<Url>)>,
    pub initial_cluster_token: String,
    pub tick_interval: Duration,
    pub election_ticks: usize,
    pub snapshot_count: u64,
    pub snapshot_catchup_entries: u64,
    /// The backend size at which NOSPACE is raised; None when the quota is disabled.
    pub quota_backend_bytes: Option<u64>,
    pub max_request_bytes: usize,
    pub max_txn_ops: usize,
    pub max_concurrent_streams: u32,
    /// Server pings of idle client connections; None = never.
    pub grpc_keepalive_interval: Option<Duration>,
    pub grpc_keepalive_timeout: Duration,
    /// How long a client request may wait for its result (etcd: 5 s + 2 election timeouts).
    pub request_timeout: Duration,
    pub watch_progress_interval: Duration,
    pub lease_checkpoint_interval: Duration,
    /// Applies slower than this are counted and logged.
    pub warning_apply_duration: Duration,
    pub auto_compaction: AutoCompaction,
    /// Share of the quota, or of the file free, above which a member defragments itself; None = off.
    pub auto_defrag_threshold: Option<f64>,
    pub auto_defrag_check_interval: Duration,
    /// How often the leader runs the corruption check; None = off.
    pub corrupt_check_interval: Option<Duration>,
    /// `--listen-metrics-urls` (empty: metrics on the client port only).
    pub listen_metrics_urls: Vec<Url>,
    /// Test only: added to every WAL fsync.
    pub wal_fsync_delay: Duration,
    /// Test only, unsafe: linearizable reads without ReadIndex.
    pub unsafe_local_reads: bool,
}

/// `--auto-compaction-mode` and `--auto-compaction-retention`, with etcd's meaning.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AutoCompaction {
    Off,
    /// Keep this much history: compact to the revision current that long ago.
    Periodic(Duration),
    /// Keep this many revisions, looking every `check_interval`.
    Revision {
        keep: i64,
        check_interval: Duration,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--{flag}: {reason}")]
    Invalid { flag: &'static str, reason: String },
    #[error("--{flag} is not supported yet by Keel: {what}")]
    NotSupported { flag: &'static str, what: String },
}

fn invalid(flag: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { flag, reason: reason.into() }
}

/// A flag's list of URLs, checked as etcd checks them: http(s)://host:port, no path.
#[derive(Debug, Clone, PartialEq)]
pub struct UrlList(pub Vec<Url>);

impl std::str::FromStr for UrlList {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        parse_url_list(text).map(UrlList)
    }
}

fn parse_url_list(value: &str) -> Result<Vec<Url>, String> {
    let mut urls = Vec::new();
    for part in value.split(',').map(str::trim).filter(|part| !part.is_empty()) {
        let url = Url::parse(part).map_err(|error| format!("{part:?} is not a URL: {error}"))?;
        match url.scheme() {
            "http" => {}
            "https" => return Err(format!("{part}: https needs TLS, which is not supported by Keel yet")),
            other => return Err(format!("{part}: URL scheme must be http or https, not {other}")),
        }
        if url.host_str().is_none() || url.port().is_none() {
            return Err(format!("{part}: URL must name a host and a port, as http://127.0.0.1:2379"));
        }
        if url.path() != "/" && !url.path().is_empty() {
            return Err(format!("{part}: URL must not have a path"));
        }
        urls.push(url);
    }
    if urls.is_empty() {
        return Err("at least one URL is required".to_string());
    }
    Ok(urls)
}

/// Parses a comma-separated URL list for `--{flag}`.
pub fn parse_urls(flag: &'static str, value: &str) -> Result<Vec<Url>, ConfigError> {
    parse_url_list(value).map_err(|reason| invalid(flag, reason))
}

/// etcd's text form of a URL (no trailing slash), as used in member ids and member lists.
pub fn url_text(url: &Url) -> String {
    url.as_str().trim_end_matches('/').to_string()
}

impl Config {
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        if self.heartbeat_interval == 0 {
            return Err(invalid("heartbeat-interval", "must be positive"));
        }
        if self.election_timeout < 5 * self.heartbeat_interval {
            return Err(invalid(
                "election-timeout",
                format!(
                    "{} ms should be at least 5 times --heartbeat-interval ({} ms)",
                    self.election_timeout, self.heartbeat_interval
                ),
            ));
        }
        if self.initial_cluster_state != ClusterState::New {
            return Err(ConfigError::NotSupported {
                flag: "initial-cluster-state",
                what: "\"existing\": joining an existing cluster arrives with membership changes".to_string(),
            });
        }
        if self.snapshot_count == 0 {
            return Err(invalid("snapshot-count", "must be positive"));
        }
        if !(0.0..=1.0).contains(&self.auto_defrag_threshold) {
            return Err(invalid("auto-defrag-threshold", "must be a ratio between 0 (off) and 1, e.g. 0.8"));
        }
        let advertise_peer_urls = self.initial_advertise_peer_urls.0.clone();
        let initial_cluster = match &self.initial_cluster {
            Some(text) if !text.trim().is_empty() => parse_initial_cluster(text)?,
            _ => vec![(self.name.clone(), advertise_peer_urls.clone())],
        };
        let Some((_, own_urls)) = initial_cluster.iter().find(|(name, _)| *name == self.name) else {
            return Err(invalid("initial-cluster", format!("it has no member named {:?} (--name)", self.name)));
        };
        let mut own: Vec<String> = own_urls.iter().map(url_text).collect();
        let mut advertised: Vec<String> = advertise_peer_urls.iter().map(url_text).collect();
        own.sort();
        advertised.sort();
        if own != advertised {
            return Err(invalid(
                "initial-cluster",
                format!(
                    "member {:?} has peer URLs {own:?} there but --initial-advertise-peer-urls is {advertised:?}; they must match",
                    self.name
                ),
            ));
        }
        check_reachable(&initial_cluster)?;
        let election_ticks = (self.election_timeout / self.heartbeat_interval) as usize;
        let election = Duration::from_millis(self.election_timeout);
        let positive = |flag: &'static str, duration: GoDuration| {
            if duration.0.is_zero() { Err(invalid(flag, "must be positive")) } else { Ok(duration.0) }
        };
        let data_dir = match &self.data_dir {
            Some(dir) if !dir.as_os_str().is_empty() => dir.clone(),
            _ => PathBuf::from(format!("{}.keel", self.name)),
        };
        Ok(Settings {
            name: self.name.clone(),
            election_timeout: election,
            data_dir,
            wal_dir: self.wal_dir.clone().filter(|dir| !dir.as_os_str().is_empty()),
            listen_client_urls: self.listen_client_urls.0.clone(),
            listen_client_http_urls: self.listen_client_http_urls.clone().map(|urls| urls.0).unwrap_or_default(),
            advertise_client_urls: self.advertise_client_urls.0.clone(),
            advertise_peer_urls,
            listen_peer_urls: self.listen_peer_urls.0.clone(),
            initial_cluster,
            initial_cluster_token: self.initial_cluster_token.clone(),
            tick_interval: Duration::from_millis(self.heartbeat_interval),
            election_ticks,
            snapshot_count: self.snapshot_count,
            snapshot_catchup_entries: self.experimental_snapshot_catchup_entries,
            quota_backend_bytes: match self.quota_backend_bytes {
                0 => Some(DEFAULT_QUOTA_BYTES),
                bytes if bytes < 0 => None,
                bytes => Some(bytes as u64),
            },
            max_request_bytes: self.max_request_bytes as usize,
            max_txn_ops: self.max_txn_ops as usize,
            max_concurrent_streams: self.max_concurrent_streams.max(1),
            grpc_keepalive_interval: Some(self.grpc_keepalive_interval.0).filter(|interval| !interval.is_zero()),
            grpc_keepalive_timeout: positive("grpc-keepalive-timeout", self.grpc_keepalive_timeout)?,
            request_timeout: Duration::from_secs(5) + 2 * election,
            watch_progress_interval: positive(
                "experimental-watch-progress-notify-interval",
                self.experimental_watch_progress_notify_interval,
            )?,
            lease_checkpoint_interval: positive(
                "experimental-lease-checkpoint-interval",
                self.experimental_lease_checkpoint_interval,
            )?,
            warning_apply_duration: positive(
                "experimental-warning-apply-duration",
                self.experimental_warning_apply_duration,
            )?,
            auto_compaction: self.auto_compaction()?,
            auto_defrag_threshold: (self.auto_defrag_threshold > 0.0).then_some(self.auto_defrag_threshold),
            auto_defrag_check_interval: positive("auto-defrag-check-interval", self.auto_defrag_check_interval)?,
            corrupt_check_interval: Some(self.experimental_corrupt_check_time.0).filter(|every| !every.is_zero()),
            listen_metrics_urls: self.listen_metrics_urls.clone().map(|urls| urls.0).unwrap_or_default(),
            unsafe_local_reads: self.unsafe_local_reads()?,
            wal_fsync_delay: self.test_wal_fsync_delay.0,
        })
    }

    /// The log filter `--log-level` (or `--debug`) asks for.
    pub fn log_filter(&self) -> &'static str {
        if self.debug { LogLevel::Debug.filter() } else { self.log_level.filter() }
    }

    /// Settings that work but deserve a loud word at start.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.quota_backend_bytes > MAX_QUOTA_BYTES {
            warnings.push(format!(
                "--quota-backend-bytes={} is above etcd's recommended maximum of {MAX_QUOTA_BYTES} (8 GiB): a database \
                 that large makes snapshots, restarts and defragmentation slow",
                self.quota_backend_bytes
            ));
        }
        if self.quota_backend_bytes < 0 {
            warnings.push(
                "--quota-backend-bytes is negative: the backend quota is DISABLED (no NOSPACE alarm)".to_string(),
            );
        }
        warnings
    }

    /// etcd's reading: periodic retention is a duration ("1h", "30m") or a whole number of hours; revision
    /// retention is a number of revisions; "0" turns auto-compaction off.
    fn auto_compaction(&self) -> Result<AutoCompaction, ConfigError> {
        let retention = self.auto_compaction_retention.trim();
        if retention.is_empty() || retention == "0" {
            return Ok(AutoCompaction::Off);
        }
        let flag = "auto-compaction-retention";
        match self.auto_compaction_mode {
            CompactionMode::Periodic => match retention.parse::<u64>() {
                Ok(hours) => Ok(AutoCompaction::Periodic(Duration::from_secs(hours * 3600))),
                Err(_) => match duration::parse(retention) {
                    Ok(keep) if !keep.is_zero() => Ok(AutoCompaction::Periodic(keep)),
                    Ok(_) => Ok(AutoCompaction::Off),
                    Err(reason) => Err(invalid(flag, reason)),
                },
            },
            CompactionMode::Revision => {
                let keep = retention.parse::<i64>().ok().filter(|keep| *keep > 0).ok_or_else(|| {
                    invalid(flag, format!("{retention:?}: revision mode keeps a positive number of revisions"))
                })?;
                let check_interval = Some(self.auto_compaction_check_interval.0)
                    .filter(|every| !every.is_zero())
                    .ok_or_else(|| invalid("auto-compaction-check-interval", "must be positive"))?;
                Ok(AutoCompaction::Revision { keep, check_interval })
            }
        }
    }

    fn unsafe_local_reads(&self) -> Result<bool, ConfigError> {
        if self.test_unsafe_local_reads && std::env::var("KEEL_ALLOW_UNSAFE_TEST_FLAGS").as_deref() != Ok("1") {
            return Err(invalid(
                "test-unsafe-local-reads",
                "breaks linearizability on purpose (for the fault-injection suite); it needs KEEL_ALLOW_UNSAFE_TEST_FLAGS=1",
            ));
        }
        Ok(self.test_unsafe_local_reads)
    }
}

/// etcd's default backend quota (2 GiB) and its recommended maximum (8 GiB).
const DEFAULT_QUOTA_BYTES: u64 = 2 * 1024 * 1024 * 1024;
const MAX_QUOTA_BYTES: i64 = 8 * 1024 * 1024 * 1024;

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(name)) => name == "localhost",
        Some(url::Host::Ipv4(address)) => address.is_loopback(),
        Some(url::Host::Ipv6(address)) => address.is_loopback(),
        None => false,
    }
}

/// In a cluster, each member's peer URLs are what the others dial: the same URL twice cannot work, and a
/// loopback URL is unreachable from a member on another host (all-loopback clusters on one host are fine).
fn check_reachable(members: &[(String, Vec<Url>)]) -> Result<(), ConfigError> {
    let mut seen: std::collections::HashMap<String, &str> = std::collections::HashMap::new();
    for (name, urls) in members {
        for url in urls {
            if let Some(other) = seen.insert(url_text(url), name) {
                return Err(invalid(
                    "initial-cluster",
                    format!(
                        "peer URL {} is given for both {other:?} and {name:?}; every member needs its own",
                        url_text(url)
                    ),
                ));
            }
        }
    }
    let loopback: Vec<&str> =
        members.iter().filter(|(_, urls)| urls.iter().any(is_loopback)).map(|(name, _)| name.as_str()).collect();
    if members.len() > 1 && !loopback.is_empty() && loopback.len() < members.len() {
        return Err(invalid(
            "initial-cluster",
            format!(
                "members {loopback:?} advertise loopback peer URLs while others do not: the other members cannot \
                 reach them; advertise an address the other hosts can dial (--initial-advertise-peer-urls)"
            ),
        ));
    }
    Ok(())
}

/// `name=url,name=url2,other=url3`: a name may appear several times, once per URL.
pub fn parse_initial_cluster(text: &str) -> Result<Vec<(String, Vec<Url>)>, ConfigError> {
    let mut members: Vec<(String, Vec<Url>)> = Vec::new();
    for part in text.split(',').map(str::trim).filter(|part| !part.is_empty()) {
        let Some((name, url)) = part.split_once('=') else {
            return Err(invalid("initial-cluster", format!("{part:?} is not name=peerURL")));
        };
        let urls = parse_urls("initial-cluster", url)?;
        match members.iter_mut().find(|(existing, _)| existing == name) {
            Some((_, existing)) => existing.extend(urls),
            None => members.push((name.to_string(), urls)),
        }
    }
    if members.is_empty() {
        return Err(invalid("initial-cluster", "no members given"));
    }
    Ok(members)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(arguments: &[&str]) -> Config {
        Config::try_parse_from(std::iter::once("keel").chain(arguments.iter().copied())).unwrap()
    }

    #[test]
    fn defaults_are_etcds() {
        let settings = parse(&[]).settings().unwrap();
        assert_eq!(settings.name, "default");
        assert_eq!(settings.data_dir, PathBuf::from("default.keel"));
        assert_eq!(url_text(&settings.listen_client_urls[0]), "http://localhost:2379");
        assert_eq!(settings.election_ticks, 10);
        assert_eq!(settings.max_request_bytes, 1_572_864);
        assert_eq!(settings.request_timeout, Duration::from_secs(7));
    }

    #[test]
    fn later_flags_are_reported_not_ignored() {
        let config = parse(&["--quota-backend-bytes", "16777216", "--auto-compaction-retention", "1h"]);
        let settings = config.settings().unwrap();
        assert_eq!(settings.quota_backend_bytes, Some(16 * 1024 * 1024));
        assert_eq!(settings.auto_compaction, AutoCompaction::Periodic(Duration::from_secs(3600)));
        assert!(config.warnings().is_empty());
        let hours = parse(&["--auto-compaction-retention", "2"]).settings().unwrap().auto_compaction;
        assert_eq!(hours, AutoCompaction::Periodic(Duration::from_secs(7200)));
        let revisions = parse(&["--auto-compaction-mode", "revision", "--auto-compaction-retention", "1000"]);
        assert!(matches!(revisions.settings().unwrap().auto_compaction, AutoCompaction::Revision { keep: 1000, .. }));
        let nonsense = parse(&["--auto-compaction-mode", "revision", "--auto-compaction-retention", "1h"]).settings();
        assert!(nonsense.unwrap_err().to_string().contains("positive number of revisions"));
        assert_eq!(parse(&[]).settings().unwrap().quota_backend_bytes, Some(2 * 1024 * 1024 * 1024));
        let disabled = parse(&["--quota-backend-bytes", "-1"]);
        assert_eq!(disabled.settings().unwrap().quota_backend_bytes, None);
        assert!(disabled.warnings()[0].contains("DISABLED"));
        assert!(parse(&[]).warnings().is_empty());
    }

    #[test]
    fn unreachable_clusters_are_refused() {
        let config = |cluster: &str, own: &str| {
            parse(&["--name", "a", "--initial-cluster", cluster, "--initial-advertise-peer-urls", own]).settings()
        };
        let mixed = config("a=http://127.0.0.1:2380,b=http://10.0.0.2:2380", "http://127.0.0.1:2380").unwrap_err();
        assert!(mixed.to_string().contains("loopback"), "{mixed}");
        let twice = config("a=http://127.0.0.1:2380,b=http://127.0.0.1:2380", "http://127.0.0.1:2380").unwrap_err();
        assert!(twice.to_string().contains("every member needs its own"), "{twice}");
        assert!(config("a=http://127.0.0.1:2380,b=http://127.0.0.1:2381", "http://127.0.0.1:2380").is_ok());
    }

    #[test]
    fn bad_values_are_explained() {
        let error = parse(&["--election-timeout", "200"]).settings().unwrap_err();
        assert!(error.to_string().contains("at least 5 times"), "{error}");
        let error = parse(&["--name", "a", "--initial-cluster", "b=http://127.0.0.1:2380"]).settings().unwrap_err();
        assert!(error.to_string().contains("no member named"), "{error}");
    }
}
