//! The two exposition formats `/metrics` speaks, chosen by the scraper's `Accept` header.
//!
//! `prometheus-client` writes OpenMetrics text, which Prometheus asks for first. etcd (Go's client library)
//! writes the classic text format 0.0.4, and that is what every other reader gets: a plain `curl`, Python's
//! and Go's text parsers, scripts written against etcd. The two differ only in the comments: in 0.0.4 a
//! counter's `# HELP`/`# TYPE` lines name the family with its `_total` suffix, and there is no `# UNIT`,
//! no `_created` sample and no `# EOF`.

/// OpenMetrics text, what [`super::render`] returns.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The classic Prometheus text format, what etcd serves.
pub const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether the scraper said it reads OpenMetrics.
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|accept| {
        accept.split(',').any(|range| {
            let mut params = range.split(';').map(str::trim);
            let kind = params.next().unwrap_or("");
            let refused = params.any(|param| param.replace(' ', "") == "q=0");
            kind.eq_ignore_ascii_case("application/openmetrics-text") && !refused
        })
    })
}

/// Rewrites OpenMetrics text as the classic text format 0.0.4 (same samples, same values).
pub fn to_classic_text(openmetrics: &str) -> String {
    let counters: Vec<&str> =
        openmetrics.lines().filter_map(|line| line.strip_prefix("# TYPE ")?.strip_suffix(" counter")).collect();
    let is_counter = |name: &str| counters.contains(&name);
    let mut text = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some((keyword, rest)) = line.strip_prefix("# ").and_then(|comment| comment.split_once(' ')) {
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            if (keyword == "HELP" || keyword == "TYPE") && is_counter(name) {
                text.push_str(&format!("# {keyword} {name}_total"));
                if !tail.is_empty() {
                    text.push(' ');
                    text.push_str(tail);
                }
                text.push('\n');
                continue;
            }
        } else {
            let name = line.split(['{', ' ']).next().unwrap_or("");
            if name.strip_suffix("_created").is_some_and(is_counter) {
                continue;
            }
        }
        text.push_str(line);
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
# HELP etcd_mvcc_put Total number of puts seen by this member.
# TYPE etcd_mvcc_put counter
etcd_mvcc_put_total 12
etcd_mvcc_put_created 1700000000.0
# HELP etcd_server_has_leader Whether or not a leader exists. 1 is existence, 0 is not.
# TYPE etcd_server_has_leader gauge
etcd_server_has_leader 1
# HELP etcd_disk_wal_fsync_duration_seconds The latency distributions of fsync called by WAL.
# TYPE etcd_disk_wal_fsync_duration_seconds histogram
# UNIT etcd_disk_wal_fsync_duration_seconds seconds
etcd_disk_wal_fsync_duration_seconds_sum 0.5
etcd_disk_wal_fsync_duration_seconds_count 3
etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.001\"} 1
etcd_disk_wal_fsync_duration_seconds_bucket{le=\"+Inf\"} 3
# HELP grpc_server_handled Total number of RPCs completed on the server, regardless of success or failure.
# TYPE grpc_server_handled counter
grpc_server_handled_total{grpc_type=\"unary\",grpc_service=\"etcdserverpb.KV\",grpc_method=\"Put\",grpc_code=\"OK\"} 10
# EOF
";

    #[test]
    fn counters_are_named_with_their_suffix_and_openmetrics_only_lines_go() {
        let text = to_classic_text(SAMPLE);
        let expected = "\
# HELP etcd_mvcc_put_total Total number of puts seen by this member.
# TYPE etcd_mvcc_put_total counter
etcd_mvcc_put_total 12
# HELP etcd_server_has_leader Whether or not a leader exists. 1 is existence, 0 is not.
# TYPE etcd_server_has_leader gauge
etcd_server_has_leader 1
# HELP etcd_disk_wal_fsync_duration_seconds The latency distributions of fsync called by WAL.
# TYPE etcd_disk_wal_fsync_duration_seconds histogram
etcd_disk_wal_fsync_duration_seconds_sum 0.5
etcd_disk_wal_fsync_duration_seconds_count 3
etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.001\"} 1
etcd_disk_wal_fsync_duration_seconds_bucket{le=\"+Inf\"} 3
# HELP grpc_server_handled_total Total number of RPCs completed on the server, regardless of success or failure.
# TYPE grpc_server_handled_total counter
grpc_server_handled_total{grpc_type=\"unary\",grpc_service=\"etcdserverpb.KV\",grpc_method=\"Put\",grpc_code=\"OK\"} 10
";
        assert_eq!(text, expected);
    }

    #[test]
    fn openmetrics_only_when_asked_for() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert!(wants_openmetrics(Some(prometheus)));
        assert!(wants_openmetrics(Some("Application/OpenMetrics-Text")));
        assert!(!wants_openmetrics(None));
        assert!(!wants_openmetrics(Some("*/*")));
        assert!(!wants_openmetrics(Some("text/plain;version=0.0.4")));
        assert!(!wants_openmetrics(Some("application/openmetrics-text; q=0, text/plain")));
    }
}
