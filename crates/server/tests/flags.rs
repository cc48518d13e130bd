//! etcd's flags against the real `keel` binary: every flag of the real etcd 3.4's `etcd --help` (Debian's
//! etcd-server, read at test time) and of etcd 3.5's, one start each with a sample value. Each must be
//! accepted (the member comes up and stops cleanly on SIGTERM) or refused at start with a message naming
//! the flag; never clap's "unexpected argument". Also: etcd's YAML config file, and `--wal-dir`.
//! Every member here listens on port 0 and reports what it bound (`<data-dir>/bound-addresses`).

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The flags Keel must refuse with the sample values below (TLS, auth, discovery, v2, and the rest whose
/// absence would be unsafe to ignore).
const REFUSED: &[&str] = &[
    "enable-v2",
    "cert-file",
    "key-file",
    "client-cert-auth",
    "client-crl-file",
    "client-cert-allowed-hostname",
    "trusted-ca-file",
    "auto-tls",
    "peer-cert-file",
    "peer-key-file",
    "peer-client-cert-auth",
    "peer-trusted-ca-file",
    "peer-cert-allowed-cn",
    "peer-cert-allowed-hostname",
    "peer-auto-tls",
    "peer-crl-file",
    "cipher-suites",
    "cors",
    "host-whitelist",
    "auth-token",
    "bcrypt-cost",
    "auth-token-ttl",
    "proxy",
    "experimental-enable-v2v3",
    "experimental-peer-skip-client-san-verification",
    "force-new-cluster",
    "discovery",
    "discovery-proxy",
    "discovery-srv",
    "discovery-srv-name",
    "initial-cluster-state",
    "client-cert-file",
    "client-key-file",
    "peer-client-cert-file",
    "peer-client-key-file",
    "self-signed-cert-validity",
    "tls-min-version",
    "tls-max-version",
];

/// etcd 3.5's flags that 3.4's help lacks (Debian's etcd is 3.4), with etcd 3.5's defaults.
const ETCD_35_ONLY: &[(&str, &str)] = &[
    ("listen-client-http-urls", ""),
    ("backend-bbolt-freelist-type", "map"),
    ("socket-reuse-port", "false"),
    ("socket-reuse-address", "false"),
    ("raft-read-timeout", "5s"),
    ("raft-write-timeout", "5s"),
    ("v2-deprecation", "not-yet"),
    ("client-cert-file", ""),
    ("client-key-file", ""),
    ("peer-client-cert-file", ""),
    ("peer-client-key-file", ""),
    ("self-signed-cert-validity", "1"),
    ("tls-min-version", "TLS1.2"),
    ("tls-max-version", ""),
    ("enable-log-rotation", "false"),
    ("log-rotation-config-json", "{\"maxsize\": 100}"),
    ("experimental-enable-distributed-tracing", "false"),
    ("experimental-distributed-tracing-address", "localhost:4317"),
    ("experimental-distributed-tracing-service-name", "etcd"),
    ("experimental-distributed-tracing-instance-id", ""),
    ("experimental-distributed-tracing-sampling-rate", "0"),
    ("experimental-compact-hash-check-enabled", "false"),
    ("experimental-compact-hash-check-time", "1m"),
    ("experimental-compaction-sleep-interval", "10ms"),
    ("experimental-downgrade-check-time", "5s"),
    ("experimental-memory-mlock", "false"),
    ("experimental-txn-mode-write-with-shared-buffer", "true"),
    ("experimental-stop-grpc-service-on-defrag", "false"),
    ("experimental-bootstrap-defrag-threshold-megabytes", "0"),
    ("experimental-snapshot-catchup-entries", "5000"),
    ("experimental-enable-lease-checkpoint-persist", "false"),
    ("experimental-lease-checkpoint-interval", "5m"),
];

/// Flags the harness sets itself (each start has its own data dir and port-0 URLs).
const HARNESS: &[&str] = &[
    "data-dir",
    "listen-client-urls",
    "advertise-client-urls",
    "listen-peer-urls",
    "initial-advertise-peer-urls",
    "initial-cluster",
];

/// (flag, etcd's default as its help prints it) for every flag of the real etcd 3.4's `--help`.
fn etcd_34_flags() -> Vec<(String, String)> {
    let output = Command::new(common::etcd_binary()).arg("--help").output().expect("run etcd --help");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    let flags: Vec<(String, String)> = text
        .lines()
        .filter_map(|line| {
            let rest = line.trim_start().strip_prefix("--")?;
            let (flag, default) = rest.split_once(' ').unwrap_or((rest, ""));
            Some((flag.to_string(), default.trim().trim_matches('\'').to_string()))
        })
        .collect();
    assert!(flags.len() >= 75, "etcd --help listed only {} flags:\n{text}", flags.len());
    flags
}

/// A value to start with: the opposite of a bool's default (so refusals and notes show), an example
/// for empty defaults, etcd's default otherwise.
fn sample(flag: &str, default: &str, dir: &Path) -> String {
    match (flag, default) {
        (_, "true") => "false".into(),
        (_, "false") => "true".into(),
        ("wal-dir", _) => dir.join("wal").display().to_string(),
        ("data-dir", _) => dir.join("data").display().to_string(),
        ("max-concurrent-streams", _) => "1000".into(),
        ("initial-cluster-state", _) => "existing".into(),
        (
            "listen-metrics-urls"
            | "listen-client-http-urls"
            | "listen-client-urls"
            | "advertise-client-urls"
            | "listen-peer-urls"
            | "initial-advertise-peer-urls",
            _,
        ) => "http://127.0.0.1:0".into(),
        ("initial-cluster", _) => "default=http://127.0.0.1:0".into(),
        ("backend-batch-interval" | "experimental-downgrade-check-time", _) => "10ms".into(),
        ("discovery", _) => "https://discovery.etcd.io/3e86b59982e49066c5d813af1c2e2579cbf573de".into(),
        ("discovery-srv" | "discovery-proxy" | "discovery-srv-name", _) => "example.com".into(),
        ("cipher-suites", _) => "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".into(),
        ("client-cert-allowed-hostname" | "peer-cert-allowed-cn" | "peer-cert-allowed-hostname", _) => "x".into(),
        ("experimental-enable-v2v3", _) => "/v2".into(),
        ("log-package-levels", _) => "etcdserver=DEBUG".into(),
        ("cors" | "host-whitelist", _) => "https://example.com".into(),
        ("tls-max-version", _) => "TLS1.3".into(),
        ("tls-min-version", _) => "TLS1.3".into(),
        ("auth-token", _) => "jwt,pub-key=app.rsa.pub,priv-key=app.rsa,sign-method=RS512".into(),
        ("bcrypt-cost", _) => "12".into(),
        ("auth-token-ttl", _) => "600".into(),
        ("self-signed-cert-validity", _) => "2".into(),
        ("proxy", _) => "on".into(),
        ("experimental-distributed-tracing-instance-id", _) => "a".into(),
        (flag, "") if flag.ends_with("-file") => "/etc/etcd/pki/file.pem".into(),
        (_, default) => default.into(),
    }
}

/// How one start went.
enum Outcome {
    Accepted { log: String },
    Refused { code: Option<i32>, log: String },
}

fn keel() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keel"));
    command.env_remove("KEEL_LOG").stdout(Stdio::null()).stderr(Stdio::piped());
    command
}

fn harness_arguments(dir: &Path, skip: &str) -> Vec<String> {
    let port0 = "http://127.0.0.1:0".to_string();
    let mut arguments = Vec::new();
    for flag in HARNESS.iter().filter(|flag| **flag != skip) {
        let value = match *flag {
            "data-dir" => dir.join("data").display().to_string(),
            "initial-cluster" => format!("default={port0}"),
            _ => port0.clone(),
        };
        arguments.push(format!("--{flag}={value}"));
    }
    arguments
}

/// Starts keel, waits until it is ready (then stops it with SIGTERM) or has exited by itself.
fn start(arguments: &[String], data_dir: &Path) -> Outcome {
    let log_path = data_dir.with_extension("log");
    let log_file = std::fs::File::create(&log_path).unwrap();
    let mut child: Child = keel().args(arguments).stderr(log_file).spawn().unwrap();
    let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Outcome::Refused { code: status.code(), log: read_log() };
        }
        if read_log().contains("member is ready") {
            break;
        }
        assert!(Instant::now() < deadline, "keel {arguments:?} neither became ready nor exited:\n{}", read_log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let bound = data_dir.join("bound-addresses");
    assert!(bound.exists(), "keel {arguments:?} wrote no {}:\n{}", bound.display(), read_log());
    Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
    let status = child.wait().unwrap();
    let log = read_log();
    assert!(status.success(), "keel {arguments:?} did not stop cleanly ({status}):\n{log}");
    Outcome::Accepted { log }
}

#[test]
fn every_etcd_flag_is_implemented_noted_or_refused_by_name() {
    let scratch = tempfile::tempdir().unwrap();
    let mut flags = etcd_34_flags();
    let known: BTreeSet<String> = flags.iter().map(|(flag, _)| flag.clone()).collect();
    flags.extend(
        ETCD_35_ONLY
            .iter()
            .filter(|(flag, _)| !known.contains(*flag))
            .map(|(flag, default)| (flag.to_string(), default.to_string())),
    );
    let mut refused = BTreeSet::new();
    for (index, (flag, default)) in flags.iter().enumerate() {
        let dir = scratch.path().join(format!("{index}"));
        std::fs::create_dir_all(&dir).unwrap();
        let value = sample(flag, default, &dir);
        let mut arguments = harness_arguments(&dir, flag);
        arguments.push(format!("--{flag}={value}"));
        match start(&arguments, &dir.join("data")) {
            Outcome::Accepted { log } => {
                assert!(!log.contains("unexpected argument"), "--{flag}: {log}");
            }
            Outcome::Refused { code, log } => {
                assert!(!log.contains("unexpected argument"), "--{flag} is unknown to keel:\n{log}");
                assert!(log.contains(&format!("--{flag}")), "--{flag}={value} was refused without naming it:\n{log}");
                assert_eq!(code, Some(2), "--{flag}={value}: refusals exit 2:\n{log}");
                refused.insert(flag.clone());
            }
        }
    }
    let expected: BTreeSet<String> = REFUSED.iter().map(|flag| flag.to_string()).collect();
    assert_eq!(refused, expected, "the refused flags (left) are not the expected ones (right)");
    // A flag with no effect says so in the log.
    let dir = scratch.path().join("noted");
    std::fs::create_dir_all(&dir).unwrap();
    let mut arguments = harness_arguments(&dir, "");
    arguments.extend(["--logger=zap".to_string(), "-max-wals".to_string(), "3".to_string()]);
    let Outcome::Accepted { log } = start(&arguments, &dir.join("data")) else { panic!("--logger refused") };
    assert!(log.contains("--logger=zap has no effect in Keel"), "{log}");
    assert!(log.contains("--max-wals=3 has no effect in Keel"), "Go's one-dash spelling: {log}");
}

#[test]
fn etcds_yaml_config_file_starts_a_member_and_wins_over_flags() {
    let scratch = tempfile::tempdir().unwrap();
    let data = scratch.path().join("infra0");
    let path = scratch.path().join("etcd.conf.yml");
    std::fs::write(
        &path,
        format!(
            "# etcd's sample configuration, as an operator keeps it\nname: 'infra0'\ndata-dir: {}\n\
             snapshot-count: 10000\nheartbeat-interval: 100\nelection-timeout: 1000\nquota-backend-bytes: 0\n\
             listen-peer-urls: http://127.0.0.1:0\nlisten-client-urls: http://127.0.0.1:0\n\
             initial-advertise-peer-urls: http://127.0.0.1:0\nadvertise-client-urls: http://127.0.0.1:0\n\
             initial-cluster: infra0=http://127.0.0.1:0\ninitial-cluster-token: 'etcd-cluster'\n\
             initial-cluster-state: 'new'\nenable-v2: false\nenable-pprof: false\nlogger: zap\n\
             log-outputs: [stderr]\nexperimental-watch-progress-notify-interval: 5000000000\n\
             client-transport-security:\n  cert-file:\n  key-file:\n  client-cert-auth: false\n  auto-tls: false\n\
             peer-transport-security:\n  cert-file:\n  auto-tls: false\n",
            data.display()
        ),
    )
    .unwrap();
    let arguments = vec![format!("--config-file={}", path.display()), "--name=ignored".to_string()];
    let Outcome::Accepted { log } = start(&arguments, &data) else { panic!("the config file was refused") };
    assert!(log.contains("loaded the configuration file"), "{log}");
    assert!(log.contains("name = infra0") || log.contains("name=infra0"), "the file's name is used:\n{log}");
    let bound = std::fs::read_to_string(data.join("bound-addresses")).unwrap();
    assert!(bound.lines().any(|line| line.starts_with("client http://127.0.0.1:0 127.0.0.1:")), "{bound}");
    // A TLS key in the file is never ignored.
    std::fs::write(&path, "name: a\nclient-transport-security:\n  cert-file: /etc/etcd/server.crt\n").unwrap();
    let Outcome::Refused { log, .. } = start(&[format!("--config-file={}", path.display())], &data) else {
        panic!("a TLS key in the config file was ignored");
    };
    assert!(log.contains("--cert-file") && log.contains("TLS"), "{log}");
}

fn wal_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir).map(|entries| entries.flatten().map(|entry| entry.path()).collect()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn wal_dir_holds_the_log_and_a_restart_replays_it() {
    let scratch = tempfile::tempdir().unwrap();
    let data = scratch.path().join("data");
    let wal = scratch.path().join("fast-disk").join("wal");
    let mut arguments = harness_arguments(scratch.path(), "data-dir");
    arguments.push(format!("--data-dir={}", data.display()));
    arguments.push(format!("--wal-dir={}", wal.display()));
    let mut child = keel().args(&arguments).stderr(Stdio::null()).spawn().unwrap();
    let endpoint = wait_for_client(&data);
    let mut client = etcd_client::Client::connect([endpoint.as_str()], None).await.unwrap();
    for index in 0..20 {
        client.put(format!("key{index}"), "value", None).await.unwrap();
    }
    assert!(!wal_files(&wal).is_empty(), "no WAL segment in --wal-dir");
    assert!(wal_files(&data.join("member").join("wal")).is_empty(), "the log was written in the data dir too");
    // kill -9: nothing acknowledged may be lost, and the log is read back from --wal-dir.
    child.kill().unwrap();
    child.wait().unwrap();
    std::fs::remove_file(data.join("bound-addresses")).unwrap();
    let mut child = keel().args(&arguments).stderr(Stdio::null()).spawn().unwrap();
    let endpoint = wait_for_client(&data);
    let mut client = etcd_client::Client::connect([endpoint.as_str()], None).await.unwrap();
    let all = client.get("key", Some(etcd_client::GetOptions::new().with_prefix())).await.unwrap();
    assert_eq!(all.count(), 20);
    child.kill().unwrap();
    child.wait().unwrap();
}

/// The client endpoint a member reports in `<data-dir>/bound-addresses`, once it answers.
fn wait_for_client(data: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let bound = std::fs::read_to_string(data.join("bound-addresses")).unwrap_or_default();
        if let Some(address) = bound.lines().find_map(|line| line.strip_prefix("client ")?.split(' ').nth(1)) {
            let endpoint = format!("http://{address}");
            if common::try_http_get(&endpoint, "/health").is_some_and(|(status, _)| status == 200) {
                return endpoint;
            }
        }
        assert!(Instant::now() < deadline, "the member did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
}
