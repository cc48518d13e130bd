//! Reads the configuration from its sources with etcd's precedence:
//! - `--config-file` (or `ETCD_CONFIG_FILE`): etcd's YAML file, with etcd's keys; every other flag and
//!   `ETCD_*` variable is then ignored, as etcd does (and a line says so);
//! - otherwise the command line, then `ETCD_<FLAG>` variables (`KEEL_<FLAG>` for Keel's own flags) for
//!   the flags the command line does not set. As in etcd, a variable for a flag the command line also
//!   sets is refused (etcd exits on it), and one that names no flag is reported and ignored.
//!
//! Go's flag syntax is accepted too: `-name value` (one dash) and `--flag=value`; a bool flag alone means
//! true. Every source ends up as one argument list parsed by clap, so each value is checked the same way.

use super::foreign::{self, FOREIGN};
use super::{Config, ConfigError};
use clap::{CommandFactory, FromArgMatches};
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::Path;
use yaml_rust2::{Yaml, YamlLoader};

/// The configuration as read, and what to log about it once logging is set up.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    /// One line each: flags with no effect, shadowed or unknown variables, the config file in force.
    pub notes: Vec<String>,
}

/// Why no configuration could be read.
#[derive(Debug)]
pub enum LoadError {
    /// A flag or value clap refused (or `--help` / `--version`): clap prints it and exits.
    Clap(clap::Error),
    /// etcd flags Keel refuses, or a config file it cannot use: one line each.
    Refused(Vec<String>),
}

impl From<ConfigError> for LoadError {
    fn from(error: ConfigError) -> Self {
        LoadError::Refused(vec![error.to_string()])
    }
}

/// Keel's own flags: their variables are `KEEL_<FLAG>`, not `ETCD_<FLAG>`.
const KEEL_FLAGS: &[&str] = &[
    "auto-compaction-check-interval",
    "auto-defrag-threshold",
    "auto-defrag-check-interval",
    "test-wal-fsync-delay",
    "test-unsafe-local-reads",
];

/// Flags whose value is a Go `time.Duration`: in etcd's YAML file these are integers of nanoseconds.
const DURATION_FLAGS: &[&str] = &[
    "experimental-corrupt-check-time",
    "experimental-watch-progress-notify-interval",
    "experimental-lease-checkpoint-interval",
    "experimental-warning-apply-duration",
    "grpc-keepalive-interval",
    "grpc-keepalive-timeout",
    "grpc-keepalive-min-time",
    "auto-compaction-check-interval",
    "auto-defrag-check-interval",
    "backend-batch-interval",
    "experimental-compaction-sleep-interval",
    "experimental-compact-hash-check-time",
    "experimental-downgrade-check-time",
    "raft-read-timeout",
    "raft-write-timeout",
    "test-wal-fsync-delay",
];

/// Variables with the ETCD_ prefix that are not flags and must not be reported as unknown.
const NOT_FLAGS: &[&str] = &["ETCD_UNSUPPORTED_ARCH"];

fn command() -> clap::Command {
    Config::command().args(FOREIGN.iter().map(foreign::argument)).args_override_self(true)
}

/// Reads the configuration from `arguments` (the program name first) and `environment`.
pub fn load(arguments: Vec<OsString>, environment: Vec<(String, String)>) -> Result<Loaded, LoadError> {
    let mut arguments = go_style(arguments);
    let program = if arguments.is_empty() { OsString::from("keel") } else { arguments.remove(0) };
    let command = command();
    let names: BTreeSet<String> =
        command.get_arguments().filter_map(|argument| argument.get_long().map(str::to_string)).collect();
    let given = flags_given(&arguments);
    let mut notes = Vec::new();

    let config_file = value_given(&arguments, "config-file")
        .or_else(|| environment.iter().find(|(name, _)| name == "ETCD_CONFIG_FILE").map(|(_, value)| value.clone()));
    let list = match config_file.filter(|path| !path.is_empty()) {
        Some(path) => {
            let ignored: Vec<&String> = given.iter().filter(|flag| *flag != "config-file").collect();
            notes.push(format!(
                "loaded the configuration file {path}: other command-line flags and ETCD_* variables are ignored, \
                 as etcd does{}",
                if ignored.is_empty() { String::new() } else { format!(" (ignored: {ignored:?})") }
            ));
            from_file(Path::new(&path), &names, &mut notes)?
        }
        None => {
            let mut conflicts = Vec::new();
            let mut list = from_environment(&environment, &names, &given, &mut notes, &mut conflicts);
            if !conflicts.is_empty() {
                return Err(LoadError::Refused(conflicts));
            }
            list.extend(arguments);
            list
        }
    };
    let matches = command.try_get_matches_from(std::iter::once(program).chain(list)).map_err(LoadError::Clap)?;
    let config = Config::from_arg_matches(&matches).map_err(LoadError::Clap)?;
    let mut refused = Vec::new();
    for flag in FOREIGN {
        if matches.value_source(flag.name) != Some(clap::parser::ValueSource::CommandLine) {
            continue;
        }
        let value = matches.get_one::<String>(flag.name).cloned().unwrap_or_default();
        match foreign::judge(flag, &value) {
            Ok(note) => notes.extend(note),
            Err(reason) => refused.push(reason),
        }
    }
    if !refused.is_empty() {
        return Err(LoadError::Refused(refused));
    }
    Ok(Loaded { config, notes })
}

/// Go's flag package takes `-flag` like `--flag`; clap takes only the latter.
fn go_style(arguments: Vec<OsString>) -> Vec<OsString> {
    let mut after_terminator = false;
    arguments
        .into_iter()
        .enumerate()
        .map(|(index, argument)| {
            let text = argument.to_string_lossy();
            if text == "--" {
                after_terminator = true;
            }
            let single_dash = text.len() > 2 && text.starts_with('-') && !text.starts_with("--");
            if index > 0 && !after_terminator && single_dash { OsString::from(format!("-{text}")) } else { argument }
        })
        .collect()
}

/// The flags named on the command line (`--flag` or `--flag=value`).
fn flags_given(arguments: &[OsString]) -> BTreeSet<String> {
    arguments
        .iter()
        .filter_map(|argument| {
            argument.to_str()?.strip_prefix("--").map(|flag| flag.split('=').next().unwrap_or(flag).to_string())
        })
        .filter(|flag| !flag.is_empty())
        .collect()
}

/// The value of `--flag value` or `--flag=value` on the command line, if given.
fn value_given(arguments: &[OsString], flag: &str) -> Option<String> {
    let long = format!("--{flag}");
    let mut iterator = arguments.iter().filter_map(|argument| argument.to_str());
    let mut found = None;
    while let Some(argument) = iterator.next() {
        if argument == long {
            found = iterator.next().map(str::to_string);
        } else if let Some(value) = argument.strip_prefix(&format!("{long}=")) {
            found = Some(value.to_string());
        }
    }
    found
}

/// The variable etcd reads for `flag`: `ETCD_INITIAL_CLUSTER` for `--initial-cluster`.
pub fn variable_of(flag: &str) -> String {
    let prefix = if KEEL_FLAGS.contains(&flag) { "KEEL_" } else { "ETCD_" };
    format!("{prefix}{}", flag.to_uppercase().replace('-', "_"))
}

fn from_environment(
    environment: &[(String, String)],
    names: &BTreeSet<String>,
    given: &BTreeSet<String>,
    notes: &mut Vec<String>,
    conflicts: &mut Vec<String>,
) -> Vec<OsString> {
    let mut list = Vec::new();
    let mut used = BTreeSet::new();
    for flag in names {
        let variable = variable_of(flag);
        let Some((_, value)) = environment.iter().find(|(name, _)| *name == variable) else { continue };
        used.insert(variable.clone());
        if given.contains(flag) {
            conflicts.push(format!(
                "conflicting environment variable {variable:?} is shadowed by corresponding command-line flag \
                 (either unset environment variable or disable flag)"
            ));
            continue;
        }
        list.push(OsString::from(format!("--{flag}={value}")));
    }
    for (name, value) in environment {
        if name.starts_with("ETCD_") && !used.contains(name) && !NOT_FLAGS.contains(&name.as_str()) {
            notes.push(format!("unrecognized environment variable {name}={value}"));
        }
    }
    list
}

/// etcd's YAML file as arguments: each key is the flag of the same name, but for the TLS blocks
/// (`client-transport-security`, `peer-transport-security`) and a few renamed keys.
fn from_file(path: &Path, names: &BTreeSet<String>, notes: &mut Vec<String>) -> Result<Vec<OsString>, LoadError> {
    let refuse = |reason: String| LoadError::Refused(vec![format!("--config-file {}: {reason}", path.display())]);
    let text = std::fs::read_to_string(path).map_err(|error| refuse(format!("cannot read it: {error}")))?;
    let documents = YamlLoader::load_from_str(&text).map_err(|error| refuse(format!("not YAML: {error}")))?;
    let Some(document) = documents.into_iter().next() else { return Ok(Vec::new()) };
    let Yaml::Hash(entries) = document else {
        return Err(refuse("the file must be a map of etcd's configuration keys".to_string()));
    };
    let mut list = Vec::new();
    for (key, value) in entries {
        let Some(key) = key.as_str() else { return Err(refuse(format!("a key is not a string: {key:?}"))) };
        let key = key.to_string();
        for (flag, value) in flags_of_key(&key, value).map_err(refuse)? {
            let security = key.ends_with("transport-security");
            if !names.contains(&flag) && security && !matches!(value, Yaml::Null) {
                return Err(refuse(format!("{key}: {flag}: TLS is not supported by Keel yet and is never ignored")));
            }
            if !names.contains(&flag) {
                notes.push(format!("config file {}: unknown key {flag:?} ignored", path.display()));
                continue;
            }
            let Some(text) = value_text(&flag, &value).map_err(refuse)? else { continue };
            list.push(OsString::from(format!("--{flag}={text}")));
        }
    }
    Ok(list)
}

/// The flags one top-level key stands for.
fn flags_of_key(key: &str, value: Yaml) -> Result<Vec<(String, Yaml)>, String> {
    let nested_prefix = match key {
        "client-transport-security" => Some(""),
        "peer-transport-security" => Some("peer-"),
        "socket-options" => Some("socket-"),
        _ => None,
    };
    let Some(prefix) = nested_prefix else {
        let flag = match key {
            "experimental-snapshot-catch-up-entries" => "experimental-snapshot-catchup-entries",
            other => other,
        };
        return Ok(vec![(flag.to_string(), value)]);
    };
    let entries = match value {
        Yaml::Hash(entries) => entries,
        Yaml::Null => return Ok(Vec::new()),
        other => return Err(format!("{key} must be a map, not {other:?}")),
    };
    let mut flags = Vec::new();
    for (inner, value) in entries {
        let inner = inner.as_str().ok_or_else(|| format!("{key}: a key is not a string"))?;
        let flag = match (prefix, inner) {
            ("", "allowed-hostname") => "client-cert-allowed-hostname".to_string(),
            ("", "crl-file") => "client-crl-file".to_string(),
            ("", "allowed-cn") => "client-cert-allowed-cn".to_string(),
            ("peer-", "allowed-cn" | "allowed-hostname") => format!("peer-cert-{inner}"),
            (prefix, inner) => format!("{prefix}{inner}"),
        };
        flags.push((flag, value));
    }
    Ok(flags)
}

/// A YAML value as the flag's text; None for null (etcd's zero value: the default stands).
fn value_text(flag: &str, value: &Yaml) -> Result<Option<String>, String> {
    Ok(Some(match value {
        Yaml::Null => return Ok(None),
        Yaml::Boolean(on) => on.to_string(),
        Yaml::Integer(number) if DURATION_FLAGS.contains(&flag) => format!("{number}ns"),
        Yaml::Integer(number) => number.to_string(),
        Yaml::Real(text) | Yaml::String(text) => text.clone(),
        Yaml::Array(items) => {
            let texts: Result<Vec<Option<String>>, String> = items.iter().map(|item| value_text(flag, item)).collect();
            texts?.into_iter().flatten().collect::<Vec<_>>().join(",")
        }
        other => return Err(format!("{flag}: a value of this kind is not understood: {other:?}")),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn arguments(list: &[&str]) -> Vec<OsString> {
        std::iter::once("keel").chain(list.iter().copied()).map(OsString::from).collect()
    }

    fn environment(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect()
    }

    #[test]
    fn go_syntax_env_precedence_and_notes() {
        let loaded = load(
            arguments(&["-name", "a", "--initial-cluster-token=t", "--pre-vote", "--logger", "zap"]),
            environment(&[
                ("ETCD_DATA_DIR", "/var/lib/etcd"),
                ("ETCD_SNAPSHOT_COUNT", "7"),
                ("ETCD_BOGUS", "1"),
                ("KEEL_AUTO_DEFRAG_THRESHOLD", "0.5"),
            ]),
        )
        .unwrap();
        assert_eq!(loaded.config.name, "a");
        assert_eq!(loaded.config.data_dir.as_deref(), Some(Path::new("/var/lib/etcd")));
        assert_eq!(loaded.config.snapshot_count, 7);
        assert_eq!(loaded.config.auto_defrag_threshold, 0.5);
        assert_eq!(loaded.config.initial_cluster_token, "t");
        let notes = loaded.notes.join("\n");
        assert!(notes.contains("unrecognized environment variable ETCD_BOGUS=1"), "{notes}");
        assert!(notes.contains("--pre-vote=true has no effect"), "{notes}");
        assert!(notes.contains("--logger=zap has no effect"), "{notes}");
    }

    #[test]
    fn a_variable_for_a_flag_also_given_is_refused_as_etcd_does() {
        let Err(LoadError::Refused(reasons)) = load(arguments(&["--name", "a"]), environment(&[("ETCD_NAME", "b")]))
        else {
            panic!("etcd exits on a variable shadowed by a flag");
        };
        assert!(reasons[0].contains("\"ETCD_NAME\" is shadowed"), "{reasons:?}");
    }

    #[test]
    fn tls_and_auth_flags_are_refused_by_name() {
        let Err(LoadError::Refused(reasons)) =
            load(arguments(&["--cert-file", "/x.crt", "--auth-token=jwt", "--client-cert-auth=false"]), Vec::new())
        else {
            panic!("TLS flags must be refused");
        };
        assert_eq!(reasons.len(), 2, "{reasons:?}");
        assert!(reasons[0].contains("--cert-file") || reasons[1].contains("--cert-file"), "{reasons:?}");
        assert!(reasons.iter().any(|reason| reason.contains("--auth-token")), "{reasons:?}");
    }

    #[test]
    fn typed_values_are_checked_by_clap() {
        let bad = |list: &[&str]| match load(arguments(list), Vec::new()) {
            Err(LoadError::Clap(error)) => error.to_string(),
            other => panic!("{list:?} should be refused by clap, got {other:?}"),
        };
        assert!(bad(&["--experimental-corrupt-check-time", "5"]).contains("missing unit"));
        assert!(bad(&["--listen-client-urls", "127.0.0.1:2379"]).contains("--listen-client-urls"));
        assert!(bad(&["--initial-cluster-state", "old"]).contains("--initial-cluster-state"));
        assert!(bad(&["--no-such-flag"]).contains("--no-such-flag"));
        let loaded = load(arguments(&["--experimental-corrupt-check-time", "1h30m"]), Vec::new()).unwrap();
        assert_eq!(loaded.config.experimental_corrupt_check_time.0, Duration::from_secs(5400));
    }

    #[test]
    fn a_config_file_is_read_with_etcds_keys_and_wins_over_everything() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("etcd.conf.yml");
        std::fs::write(
            &path,
            "name: infra0\ndata-dir: /var/lib/etcd\nheartbeat-interval: 200\nelection-timeout: 2000\n\
             listen-client-urls: http://10.0.0.1:2379,http://127.0.0.1:2379\n\
             experimental-corrupt-check-time: 300000000000\nauto-compaction-retention: \"1h\"\n\
             log-outputs: [stderr]\nenable-v2: false\nunknown-thing: 1\ninitial-cluster-token:\n\
             client-transport-security:\n  cert-file:\n  client-cert-auth: false\n\
             experimental-snapshot-catch-up-entries: 99\n",
        )
        .unwrap();
        let file = path.to_str().unwrap();
        let loaded = load(
            arguments(&["--config-file", file, "--name", "ignored"]),
            environment(&[("ETCD_SNAPSHOT_COUNT", "5")]),
        )
        .unwrap();
        let config = &loaded.config;
        assert_eq!(config.name, "infra0");
        assert_eq!(config.data_dir.as_deref(), Some(Path::new("/var/lib/etcd")));
        assert_eq!((config.heartbeat_interval, config.election_timeout), (200, 2000));
        assert_eq!(config.listen_client_urls.0.len(), 2);
        assert_eq!(config.experimental_corrupt_check_time.0, Duration::from_secs(300));
        assert_eq!(config.snapshot_count, 100_000, "ETCD_* variables are ignored with a config file");
        assert_eq!(config.experimental_snapshot_catchup_entries, 99);
        assert_eq!(config.initial_cluster_token, "etcd-cluster", "a null value leaves the default");
        let notes = loaded.notes.join("\n");
        assert!(notes.contains("ignored: [\"name\"]"), "{notes}");
        assert!(notes.contains("unknown key \"unknown-thing\""), "{notes}");
        std::fs::write(&path, "client-transport-security:\n  cert-file: /etc/etcd/server.crt\n").unwrap();
        let Err(LoadError::Refused(reasons)) = load(arguments(&["--config-file", file]), Vec::new()) else {
            panic!("a TLS key in the file must be refused");
        };
        assert!(reasons[0].contains("--cert-file"), "{reasons:?}");
        let missing = load(arguments(&["--config-file", "/nonexistent.yml"]), Vec::new());
        assert!(matches!(missing, Err(LoadError::Refused(reasons)) if reasons[0].contains("cannot read")));
    }
}
