//! etcd's flags that Keel does not implement, one row each, and what Keel does with each when it is set:
//! - **no effect**: accepted, and one log line at start says so and why (ignoring it is safe: logging
//!   destinations, profiling, bbolt tuning, flags whose behaviour Keel always has);
//! - **refused**: set to anything but etcd's default, `keel` exits at start with a message naming the
//!   flag and saying why (TLS and auth settings above all: never silently ignored; flags whose absence
//!   would start the wrong cluster).
//!
//! Each row becomes a clap argument, so etcd's spelling parses; the flags Keel implements are fields of
//! [`super::Config`]. `tests/flags.rs` starts `keel` with every flag of the real etcd's `--help`.

/// How a flag takes its value, as Go's flag package does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Shape {
    /// `--flag` alone means true; `--flag=false` turns it off.
    Bool,
    /// `--flag value` or `--flag=value`.
    Value,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Treatment {
    NoEffect(&'static str),
    /// Refused unless the value is etcd's default.
    Refused(&'static str),
}

/// One etcd flag Keel does not implement.
#[derive(Debug, Clone, Copy)]
pub struct Foreign {
    pub name: &'static str,
    pub shape: Shape,
    /// etcd's default, as its `--help` prints it ("" for none).
    pub default: &'static str,
    pub treatment: Treatment,
}

use Shape::{Bool, Value};
use Treatment::{NoEffect, Refused};

const TLS: &str = "TLS is not supported by Keel yet; a TLS setting is never ignored (remove the flag or wait for TLS)";
const AUTH: &str = "etcd's authentication is not supported by Keel yet; an auth setting is never ignored";
const LOGS: &str = "Keel logs to stderr in its own format (KEEL_LOG takes a tracing filter)";
const BBOLT: &str = "Keel's backend is not bbolt: it commits in its own batches";
const V2: &str = "the v2 API and its proxy are not served by Keel (etcd removed them too)";
const V2_IGNORED: &str = "a v2-era flag etcd itself ignores";

const fn row(name: &'static str, shape: Shape, default: &'static str, treatment: Treatment) -> Foreign {
    Foreign { name, shape, default, treatment }
}

/// Every flag of etcd 3.4's and 3.5's `etcd --help` (and the hidden ones etcd registers) that Keel
/// does not implement. The implemented ones are [`super::Config`]'s fields.
pub const FOREIGN: &[Foreign] = &[
    // Logging and profiling: safe to ignore.
    row("logger", Value, "zap", NoEffect(LOGS)),
    row("log-outputs", Value, "default", NoEffect(LOGS)),
    row("log-output", Value, "default", NoEffect(LOGS)),
    row("log-package-levels", Value, "", NoEffect(LOGS)),
    row("enable-log-rotation", Bool, "false", NoEffect(LOGS)),
    row("log-rotation-config-json", Value, "", NoEffect(LOGS)),
    row("enable-pprof", Bool, "false", NoEffect("Keel has no pprof endpoints; profile it with perf")),
    row("metrics", Value, "basic", NoEffect("Keel exports one set of etcd's metrics, including the histograms")),
    row("experimental-enable-distributed-tracing", Bool, "false", NoEffect("Keel does not export traces")),
    row("experimental-distributed-tracing-address", Value, "localhost:4317", NoEffect("Keel does not export traces")),
    row("experimental-distributed-tracing-service-name", Value, "etcd", NoEffect("Keel does not export traces")),
    row("experimental-distributed-tracing-instance-id", Value, "", NoEffect("Keel does not export traces")),
    row("experimental-distributed-tracing-sampling-rate", Value, "0", NoEffect("Keel does not export traces")),
    // Storage tuning that has no meaning for Keel's WAL and backend.
    row("max-snapshots", Value, "5", NoEffect("Keel keeps no snapshot files beyond the one being installed")),
    row("max-wals", Value, "5", NoEffect("Keel removes WAL segments itself once the log is compacted past them")),
    row("backend-batch-interval", Value, "", NoEffect(BBOLT)),
    row("backend-batch-limit", Value, "0", NoEffect(BBOLT)),
    row("backend-bbolt-freelist-type", Value, "map", NoEffect(BBOLT)),
    row("experimental-backend-bbolt-freelist-type", Value, "array", NoEffect(BBOLT)),
    row("experimental-memory-mlock", Bool, "false", NoEffect(BBOLT)),
    row("experimental-txn-mode-write-with-shared-buffer", Bool, "true", NoEffect(BBOLT)),
    row("experimental-compaction-batch-limit", Value, "1000", NoEffect("Keel compacts in its own batches")),
    row("experimental-compaction-sleep-interval", Value, "10ms", NoEffect("Keel compacts in its own batches")),
    row(
        "experimental-bootstrap-defrag-threshold-megabytes",
        Value,
        "0",
        NoEffect("Keel defragments online (see --auto-defrag-threshold)"),
    ),
    row(
        "experimental-stop-grpc-service-on-defrag",
        Bool,
        "false",
        NoEffect("Keel's defragmentation does not stop serving"),
    ),
    row("unsafe-no-fsync", Bool, "false", NoEffect("Keel always fsyncs its WAL before acknowledging a write")),
    // Behaviour Keel always has.
    row("pre-vote", Bool, "true", NoEffect("Keel always runs Raft with PreVote and CheckQuorum")),
    row("initial-election-tick-advance", Bool, "true", NoEffect("Keel's election timing is fixed")),
    row(
        "experimental-enable-lease-checkpoint",
        Bool,
        "false",
        NoEffect("Keel always checkpoints leases' remaining TTLs (--experimental-lease-checkpoint-interval)"),
    ),
    row(
        "experimental-enable-lease-checkpoint-persist",
        Bool,
        "false",
        NoEffect("Keel always persists leases' remaining TTLs"),
    ),
    row(
        "experimental-initial-corrupt-check",
        Bool,
        "false",
        NoEffect("Keel has no check at start; the periodic check is --experimental-corrupt-check-time"),
    ),
    row(
        "experimental-compact-hash-check-enabled",
        Bool,
        "false",
        NoEffect("Keel's corruption check is --experimental-corrupt-check-time"),
    ),
    row(
        "experimental-compact-hash-check-time",
        Value,
        "1m",
        NoEffect("Keel's corruption check is --experimental-corrupt-check-time"),
    ),
    row("experimental-downgrade-check-time", Value, "", NoEffect("Keel does not support downgrades")),
    row(
        "strict-reconfig-check",
        Bool,
        "true",
        NoEffect("membership changes are not supported by Keel yet, so there is nothing to check"),
    ),
    row("enable-grpc-gateway", Bool, "true", NoEffect("the JSON gateway is not served by Keel yet")),
    row("grpc-keepalive-min-time", Value, "5s", NoEffect("Keel does not police client pings")),
    row("raft-read-timeout", Value, "5s", NoEffect("Keel's peer streams time out after 3 s without a ping")),
    row("raft-write-timeout", Value, "5s", NoEffect("Keel's peer streams time out after 3 s without a ping")),
    row("socket-reuse-port", Bool, "false", NoEffect("Keel binds its listeners without SO_REUSEPORT")),
    row("socket-reuse-address", Bool, "false", NoEffect("Keel binds its listeners without SO_REUSEADDR")),
    row("v2-deprecation", Value, "not-yet", NoEffect(V2)),
    // The v2 API and its proxy.
    row("enable-v2", Bool, "false", Refused(V2)),
    row("experimental-enable-v2v3", Value, "", Refused(V2)),
    row("proxy", Value, "off", Refused(V2)),
    row("proxy-failure-wait", Value, "5000", NoEffect(V2)),
    row("proxy-refresh-interval", Value, "30000", NoEffect(V2)),
    row("proxy-dial-timeout", Value, "1000", NoEffect(V2)),
    row("proxy-write-timeout", Value, "5000", NoEffect(V2)),
    row("proxy-read-timeout", Value, "0", NoEffect(V2)),
    // Bootstrapping Keel cannot do yet: ignoring these would start the wrong cluster.
    row("discovery", Value, "", Refused("discovery is not supported by Keel; list the members with --initial-cluster")),
    row(
        "discovery-srv",
        Value,
        "",
        Refused("DNS discovery is not supported by Keel; list the members with --initial-cluster"),
    ),
    row(
        "discovery-srv-name",
        Value,
        "",
        Refused("DNS discovery is not supported by Keel; list the members with --initial-cluster"),
    ),
    row(
        "discovery-proxy",
        Value,
        "",
        Refused("discovery is not supported by Keel; list the members with --initial-cluster"),
    ),
    row("discovery-fallback", Value, "proxy", NoEffect("discovery is not supported by Keel")),
    row(
        "force-new-cluster",
        Bool,
        "false",
        Refused("recovering a single member from a lost quorum is not supported by Keel yet"),
    ),
    // HTTP security settings: never silently ignored.
    row(
        "cors",
        Value,
        "*",
        Refused("Keel serves no browser API yet; a CORS restriction is a security setting and is never ignored"),
    ),
    row(
        "host-whitelist",
        Value,
        "*",
        Refused("Keel does not check Host headers yet; a host whitelist is a security setting and is never ignored"),
    ),
    // TLS.
    row("cert-file", Value, "", Refused(TLS)),
    row("key-file", Value, "", Refused(TLS)),
    row("client-cert-auth", Bool, "false", Refused(TLS)),
    row("client-crl-file", Value, "", Refused(TLS)),
    row("client-cert-allowed-hostname", Value, "", Refused(TLS)),
    row("client-cert-file", Value, "", Refused(TLS)),
    row("client-key-file", Value, "", Refused(TLS)),
    row("trusted-ca-file", Value, "", Refused(TLS)),
    row("auto-tls", Bool, "false", Refused(TLS)),
    row("peer-cert-file", Value, "", Refused(TLS)),
    row("peer-key-file", Value, "", Refused(TLS)),
    row("peer-client-cert-auth", Bool, "false", Refused(TLS)),
    row("peer-client-cert-file", Value, "", Refused(TLS)),
    row("peer-client-key-file", Value, "", Refused(TLS)),
    row("peer-trusted-ca-file", Value, "", Refused(TLS)),
    row("peer-auto-tls", Bool, "false", Refused(TLS)),
    row("peer-crl-file", Value, "", Refused(TLS)),
    row("peer-cert-allowed-cn", Value, "", Refused(TLS)),
    row("peer-cert-allowed-hostname", Value, "", Refused(TLS)),
    row("experimental-peer-skip-client-san-verification", Bool, "false", Refused(TLS)),
    row("cipher-suites", Value, "", Refused(TLS)),
    row("tls-min-version", Value, "TLS1.2", Refused(TLS)),
    row("tls-max-version", Value, "", Refused(TLS)),
    row("self-signed-cert-validity", Value, "1", Refused(TLS)),
    // Auth.
    row("auth-token", Value, "simple", Refused(AUTH)),
    row("bcrypt-cost", Value, "10", Refused(AUTH)),
    row("auth-token-ttl", Value, "300", Refused(AUTH)),
    // v2-era flags etcd 3.4 and 3.5 accept and ignore.
    row("cluster-active-size", Bool, "", NoEffect(V2_IGNORED)),
    row("cluster-remove-delay", Bool, "", NoEffect(V2_IGNORED)),
    row("cluster-sync-interval", Bool, "", NoEffect(V2_IGNORED)),
    row("config", Bool, "", NoEffect(V2_IGNORED)),
    row("force", Bool, "", NoEffect(V2_IGNORED)),
    row("max-result-buffer", Bool, "", NoEffect(V2_IGNORED)),
    row("max-retry-attempts", Bool, "", NoEffect(V2_IGNORED)),
    row("peer-heartbeat-interval", Bool, "", NoEffect(V2_IGNORED)),
    row("peer-election-timeout", Bool, "", NoEffect(V2_IGNORED)),
    row("retry-interval", Bool, "", NoEffect(V2_IGNORED)),
    row("snapshot", Bool, "", NoEffect(V2_IGNORED)),
    row("v", Bool, "", NoEffect(V2_IGNORED)),
    row("vv", Bool, "", NoEffect(V2_IGNORED)),
];

/// The clap argument for a row: etcd's spelling, hidden from `--help` (the README lists them).
pub fn argument(flag: &Foreign) -> clap::Arg {
    let argument = clap::Arg::new(flag.name).long(flag.name).hide(true).action(clap::ArgAction::Set);
    match flag.shape {
        Bool => argument.num_args(0..=1).require_equals(true).default_missing_value("true"),
        Value => argument.allow_hyphen_values(true),
    }
}

/// What a set flag means for the member: a warning to log, or the reason to refuse it.
pub fn judge(flag: &Foreign, value: &str) -> Result<Option<String>, String> {
    let is_default = match flag.shape {
        Bool => {
            parse_bool(value).map_err(|reason| format!("--{}: {reason}", flag.name))?
                == parse_bool(flag.default).unwrap_or(false)
        }
        Value => value.trim() == flag.default,
    };
    match flag.treatment {
        NoEffect(why) => Ok(Some(format!("--{}={value} has no effect in Keel: {why}", flag.name))),
        Refused(_) if is_default => Ok(Some(format!("--{}={value} is etcd's default: accepted", flag.name))),
        Refused(why) => Err(format!("--{}={value} is refused: {why}", flag.name)),
    }
}

/// Go's `strconv.ParseBool`.
pub fn parse_bool(text: &str) -> Result<bool, String> {
    match text {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" | "" => Ok(false),
        other => Err(format!("{other:?} is not a boolean (true or false)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_row_twice() {
        let mut names: Vec<&str> = FOREIGN.iter().map(|flag| flag.name).collect();
        names.sort();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len());
    }

    #[test]
    fn tls_is_refused_unless_default_and_logging_is_noted() {
        let cert = FOREIGN.iter().find(|flag| flag.name == "cert-file").unwrap();
        let refused = judge(cert, "/etc/etcd/server.crt").unwrap_err();
        assert!(refused.contains("--cert-file") && refused.contains("TLS"), "{refused}");
        assert!(judge(cert, "").is_ok());
        let auth = FOREIGN.iter().find(|flag| flag.name == "client-cert-auth").unwrap();
        assert!(judge(auth, "true").is_err());
        assert!(judge(auth, "false").is_ok());
        let logger = FOREIGN.iter().find(|flag| flag.name == "logger").unwrap();
        assert!(judge(logger, "zap").unwrap().unwrap().contains("no effect"));
    }
}
