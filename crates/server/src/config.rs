//! etcd's flags and their `ETCD_*` environment variables, with etcd's defaults.

use clap::Parser;
use std::path::PathBuf;
use std::time::Duration;
use url::Url;

/// Keel: an etcd v3 compatible, strongly consistent key-value store.
#[derive(Debug, Clone, Parser)]
#[command(name = "keel", version, about)]
pub struct Config {
    /// Human-readable name for this member.
    #[arg(long, env = "ETCD_NAME", default_value = "default")]
    pub name: String,
    /// Path to the data directory [default: <name>.keel].
    #[arg(long, env = "ETCD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Path to the dedicated WAL directory [default: <data-dir>/member/wal].
    #[arg(long, env = "ETCD_WAL_DIR")]
    pub wal_dir: Option<PathBuf>,
    /// URLs to listen on for client traffic (comma-separated).
    #[arg(long, env = "ETCD_LISTEN_CLIENT_URLS", default_value = "http://localhost:2379")]
    pub listen_client_urls: String,
    /// Client URLs of this member as advertised to the rest of the cluster and to clients.
    #[arg(long, env = "ETCD_ADVERTISE_CLIENT_URLS", default_value = "http://localhost:2379")]
    pub advertise_client_urls: String,
    /// URLs to listen on for peer traffic.
    #[arg(long, env = "ETCD_LISTEN_PEER_URLS", default_value = "http://localhost:2380")]
    pub listen_peer_urls: String,
    /// Peer URLs of this member as advertised to the rest of the cluster.
    #[arg(long, env = "ETCD_INITIAL_ADVERTISE_PEER_URLS", default_value = "http://localhost:2380")]
    pub initial_advertise_peer_urls: String,
    /// Initial cluster configuration for bootstrapping: name=peerURL,... [default: <name>=<initial-advertise-peer-urls>].
    #[arg(long, env = "ETCD_INITIAL_CLUSTER")]
    pub initial_cluster: Option<String>,
    /// Initial cluster state ('new' or 'existing').
    #[arg(long, env = "ETCD_INITIAL_CLUSTER_STATE", default_value = "new")]
    pub initial_cluster_state: String,
    /// Initial cluster token, part of the member and cluster ids.
    #[arg(long, env = "ETCD_INITIAL_CLUSTER_TOKEN", default_value = "etcd-cluster")]
    pub initial_cluster_token: String,
    /// Backend quota in bytes before the NOSPACE alarm (0 = etcd's default, 2 GiB; negative disables it).
    #[arg(long, env = "ETCD_QUOTA_BACKEND_BYTES", default_value_t = 0, allow_negative_numbers = true)]
    pub quota_backend_bytes: i64,
    /// Auto compaction mode: 'periodic' or 'revision'.
    #[arg(long, env = "ETCD_AUTO_COMPACTION_MODE", default_value = "periodic")]
    pub auto_compaction_mode: String,
    /// Auto compaction retention (e.g. '1h' for periodic, '1000' for revision; '0' disables).
    #[arg(long, env = "ETCD_AUTO_COMPACTION_RETENTION", default_value = "0")]
    pub auto_compaction_retention: String,
    /// Keel: how often the revision-mode auto-compactor looks at the revision (etcd: fixed 5m).
    #[arg(long, env = "KEEL_AUTO_COMPACTION_CHECK_INTERVAL", default_value = "5m")]
    pub auto_compaction_check_interval: String,
    /// Keel: defragment by itself, one member of the cluster at a time, when the file is over this share of
    /// the quota or this share of the file is free (0 = off). E.g. 0.8.
    #[arg(long, env = "KEEL_AUTO_DEFRAG_THRESHOLD", default_value_t = 0.0)]
    pub auto_defrag_threshold: f64,
    /// Keel: how often a member checks whether it should defragment by itself.
    #[arg(long, env = "KEEL_AUTO_DEFRAG_CHECK_INTERVAL", default_value = "1m")]
    pub auto_defrag_check_interval: String,
    /// How often the leader compares its members' HashKV and raises CORRUPT on a mismatch (0s = off).
    #[arg(long, env = "ETCD_EXPERIMENTAL_CORRUPT_CHECK_TIME", default_value = "0s")]
    pub experimental_corrupt_check_time: String,
    /// Time (in milliseconds) of a heartbeat interval.
    #[arg(long, env = "ETCD_HEARTBEAT_INTERVAL", default_value_t = 100)]
    pub heartbeat_interval: u64,
    /// Time (in milliseconds) for an election to timeout.
    #[arg(long, env = "ETCD_ELECTION_TIMEOUT", default_value_t = 1000)]
    pub election_timeout: u64,
    /// Number of committed entries between two compactions of the Raft log.
    #[arg(long, env = "ETCD_SNAPSHOT_COUNT", default_value_t = 100_000)]
    pub snapshot_count: u64,
    /// Entries a member keeps in its Raft log behind each compaction, for slow followers; a follower
    /// further behind is sent a snapshot.
    #[arg(long, env = "ETCD_EXPERIMENTAL_SNAPSHOT_CATCHUP_ENTRIES", default_value_t = 5000)]
    pub experimental_snapshot_catchup_entries: u64,
    /// Maximum client request size in bytes the server will accept.
    #[arg(long, env = "ETCD_MAX_REQUEST_BYTES", default_value_t = 1_572_864)]
    pub max_request_bytes: u32,
    /// Maximum number of operations permitted in a transaction.
    #[arg(long, env = "ETCD_MAX_TXN_OPS", default_value_t = 128)]
    pub max_txn_ops: u32,
    /// Interval of the progress notifications watchers ask for (etcd's experimental flag), e.g. '10m', '5s'.
    #[arg(long, env = "ETCD_EXPERIMENTAL_WATCH_PROGRESS_NOTIFY_INTERVAL", default_value = "10m")]
    pub experimental_watch_progress_notify_interval: String,
    /// How often the leader checkpoints leases' remaining TTLs into the log, e.g. '5m'.
    #[arg(long, env = "ETCD_EXPERIMENTAL_LEASE_CHECKPOINT_INTERVAL", default_value = "5m")]
    pub experimental_lease_checkpoint_interval: String,
    /// More URLs to serve /metrics and /health on, plain HTTP (comma-separated; the client port serves
    /// them too).
    #[arg(long, env = "ETCD_LISTEN_METRICS_URLS")]
    pub listen_metrics_urls: Option<String>,
    /// Test only: a delay added to every WAL fsync, to see how a slow disk is reported (e.g. '20ms').
    #[arg(long, env = "KEEL_TEST_WAL_FSYNC_DELAY", default_value = "0s", hide = true)]
    pub test_wal_fsync_delay: String,
    /// Test only, and UNSAFE: serve linearizable reads from the local store without a ReadIndex round (a
    /// deliberately broken build for the fault-injection suite to catch). Refused unless the environment
    /// has KEEL_ALLOW_UNSAFE_TEST_FLAGS=1.
    #[arg(long, hide = true)]
    pub test_unsafe_local_reads: bool,
    /// Log level: debug, info, warn, error.
    #[arg(long, env = "ETCD_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
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
    /// How long a client request may wait for its result (etcd: 5 s + 2 election timeouts).
    pub request_timeout: Duration,
    pub watch_progress_interval: Duration,
    pub lease_checkpoint_interval: Duration,
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

/// Parses a comma-separated URL list the way etcd does: http(s)://host:port, no path.
pub fn parse_urls(flag: &'static str, value: &str) -> Result<Vec<Url>, ConfigError> {
    let mut urls = Vec::new();
    for part in value.split(',').map(str::trim).filter(|part| !part.is_empty()) {
        let url = Url::parse(part).map_err(|error| invalid(flag, format!("{part:?} is not a URL: {error}")))?;
        match url.scheme() {
            "http" => {}
            "https" => {
                return Err(ConfigError::NotSupported { flag, what: format!("{part}: TLS (https) arrives later") });
            }
            other => return Err(invalid(flag, format!("{part}: URL scheme must be http or https, not {other}"))),
        }
        if url.host_str().is_none() || url.port().is_none() {
            return Err(invalid(flag, format!("{part}: URL must name a host and a port, as http://127.0.0.1:2379")));
        }
        if url.path() != "/" && !url.path().is_empty() {
            return Err(invalid(flag, format!("{part}: URL must not have a path")));
        }
        urls.push(url);
    }
    if urls.is_empty() {
        return Err(invalid(flag, "at least one URL is required"));
    }
    Ok(urls)
}

/// etcd's text form of a URL (no trailing slash), as used in member ids and member lists.
pub fn url_text(url: &Url) -> String {
    url.as_str().trim_end_matches('/').to_string()
}

impl Config {
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        if self.election_timeout < 5 * self.heartbeat_interval {
            return Err(invalid(
                "election-timeout",
                format!(
                    "{} ms should be at least 5 times --heartbeat-interval ({} ms)",
                    self.election_timeout, self.heartbeat_interval
                ),
            ));
        }
        if self.heartbeat_interval == 0 {
            return Err(invalid("heartbeat-interval", "must be positive"));
        }
        if self.initial_cluster_state != "new" {
            return Err(ConfigError::NotSupported {
                flag: "initial-cluster-state",
                what: format!(
                    "{:?}: joining an existing cluster arrives with the cluster work",
                    self.initial_cluster_state
                ),
            });
        }
        if self.snapshot_count == 0 {
            return Err(invalid("snapshot-count", "must be positive"));
        }
        self.check_later_flags()?;
        let advertise_peer_urls = parse_urls("initial-advertise-peer-urls", &self.initial_advertise_peer_urls)?;
        let initial_cluster = match &self.initial_cluster {
            Some(text) => parse_initial_cluster(text)?,
            None => vec![(self.name.clone(), advertise_peer_urls.clone())],
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
        Ok(Settings {
            name: self.name.clone(),
            election_timeout: election,
            data_dir: self.data_dir.clone().unwrap_or_else(|| PathBuf::from(format!("{}.keel", self.name))),
            wal_dir: self.wal_dir.clone().filter(|dir| !dir.as_os_str().is_empty()),
            listen_client_urls: parse_urls("listen-client-urls", &self.listen_client_urls)?,
            advertise_client_urls: parse_urls("advertise-client-urls", &self.advertise_client_urls)?,
            advertise_peer_urls,
            listen_peer_urls: parse_urls("listen-peer-urls", &self.listen_peer_urls)?,
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
            request_timeout: Duration::from_secs(5) + 2 * election,
            watch_progress_interval: parse_duration(
                "experimental-watch-progress-notify-interval",
                &self.experimental_watch_progress_notify_interval,
            )?,
            lease_checkpoint_interval: parse_duration(
                "experimental-lease-checkpoint-interval",
                &self.experimental_lease_checkpoint_interval,
            )?,
            auto_compaction: self.auto_compaction()?,
            auto_defrag_threshold: (self.auto_defrag_threshold > 0.0).then_some(self.auto_defrag_threshold),
            auto_defrag_check_interval: parse_duration("auto-defrag-check-interval", &self.auto_defrag_check_interval)?,
            corrupt_check_interval: match self.experimental_corrupt_check_time.trim() {
                "0" | "0s" | "" => None,
                text => Some(parse_duration("experimental-corrupt-check-time", text)?),
            },
            listen_metrics_urls: match &self.listen_metrics_urls {
                Some(text) if !text.trim().is_empty() => parse_urls("listen-metrics-urls", text)?,
                _ => Vec::new(),
            },
            unsafe_local_reads: self.unsafe_local_reads()?,
            wal_fsync_delay: match self.test_wal_fsync_delay.trim() {
                "0" | "0s" | "" => Duration::ZERO,
                text => parse_duration("test-wal-fsync-delay", text)?,
            },
        })
    }

    /// Flags whose behaviour later work brings: accepted, and reported loudly at start (never silently
    /// ignored). Returns one warning per such flag that is set.
    pub fn unsupported_settings(&self) -> Vec<String> {
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
        match self.auto_compaction_mode.as_str() {
            "periodic" => match retention.parse::<u64>() {
                Ok(hours) => Ok(AutoCompaction::Periodic(Duration::from_secs(hours * 3600))),
                Err(_) => Ok(AutoCompaction::Periodic(parse_duration(flag, retention)?)),
            },
            _ => {
                let keep = retention.parse::<i64>().ok().filter(|keep| *keep > 0).ok_or_else(|| {
                    invalid(flag, format!("{retention:?}: revision mode keeps a positive number of revisions"))
                })?;
                let check_interval =
                    parse_duration("auto-compaction-check-interval", &self.auto_compaction_check_interval)?;
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

    fn check_later_flags(&self) -> Result<(), ConfigError> {
        if !(0.0..=1.0).contains(&self.auto_defrag_threshold) {
            return Err(invalid("auto-defrag-threshold", "must be a ratio between 0 (off) and 1, e.g. 0.8"));
        }
        if !matches!(self.auto_compaction_mode.as_str(), "periodic" | "revision") {
            return Err(invalid(
                "auto-compaction-mode",
                format!("{:?}: must be 'periodic' or 'revision'", self.auto_compaction_mode),
            ));
        }
        Ok(())
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

/// A Go-style duration: a number and a unit (`ms`, `s`, `m`, `h`), e.g. `10m`, `1.5s`, `100ms`.
pub fn parse_duration(flag: &'static str, text: &str) -> Result<Duration, ConfigError> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 =
        number.parse().map_err(|_| invalid(flag, format!("{text:?} is not a duration like 10m or 5s")))?;
    let seconds = match unit {
        "ms" => number / 1000.0,
        "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => return Err(invalid(flag, format!("{text:?}: the unit must be ms, s, m or h"))),
    };
    if seconds <= 0.0 {
        return Err(invalid(flag, "must be positive"));
    }
    Ok(Duration::from_secs_f64(seconds))
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
        Config::parse_from(std::iter::once("keel").chain(arguments.iter().copied()))
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
        assert!(config.unsupported_settings().is_empty());
        let hours = parse(&["--auto-compaction-retention", "2"]).settings().unwrap().auto_compaction;
        assert_eq!(hours, AutoCompaction::Periodic(Duration::from_secs(7200)));
        let revisions = parse(&["--auto-compaction-mode", "revision", "--auto-compaction-retention", "1000"]);
        assert!(matches!(revisions.settings().unwrap().auto_compaction, AutoCompaction::Revision { keep: 1000, .. }));
        let nonsense = parse(&["--auto-compaction-mode", "revision", "--auto-compaction-retention", "1h"]).settings();
        assert!(nonsense.unwrap_err().to_string().contains("positive number of revisions"));
        assert_eq!(parse(&[]).settings().unwrap().quota_backend_bytes, Some(2 * 1024 * 1024 * 1024));
        let disabled = parse(&["--quota-backend-bytes", "-1"]);
        assert_eq!(disabled.settings().unwrap().quota_backend_bytes, None);
        assert!(disabled.unsupported_settings()[0].contains("DISABLED"));
        assert!(parse(&[]).unsupported_settings().is_empty());
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
        let error = parse(&["--listen-client-urls", "127.0.0.1:2379"]).settings().unwrap_err();
        assert!(error.to_string().contains("listen-client-urls"), "{error}");
        let error = parse(&["--name", "a", "--initial-cluster", "b=http://127.0.0.1:2380"]).settings().unwrap_err();
        assert!(error.to_string().contains("no member named"), "{error}");
    }
}
