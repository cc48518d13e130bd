#!/usr/bin/env python3
"""Writes keel-dashboard.json, the Grafana dashboard for a Keel cluster.

The dashboard is kept as this script rather than as hand-edited JSON: each panel is one
call below, so a reviewer reads the PromQL and the layout, not Grafana's boilerplate.
Edit this file, then run it (python3 only, no packages):

    python3 observability/grafana/build_dashboard.py          # rewrites keel-dashboard.json
    python3 observability/grafana/build_dashboard.py --check  # exit 1 if the JSON is stale

Rules every expression follows, so that observability/check_queries.py --require-data
passes on a healthy 3-member cluster under write load:
  * selectors are regex matchers on the template variables: job=~"$job", instance=~"$instance";
  * rate windows are [$__rate_interval];
  * nothing is filtered down to "only when broken" (no `== 0`, no `> 0`); a series that only
    appears after a failure is filled with zeros (`or` a zero vector).
"""

import argparse
import json
import pathlib
import sys

OUTPUT = pathlib.Path(__file__).with_name("keel-dashboard.json")

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
SELECTOR = 'job=~"$job",instance=~"$instance"'
RATE = "[$__rate_interval]"

# etcd's guidance: WAL fsync and backend commit p99 should stay under 10 ms, and so should
# the peer round trip; above that, heartbeats are late and elections start.
LATENCY_LIMIT_SECONDS = 0.01


def metric(name, extra=""):
    """`name{job=~"$job",instance=~"$instance"<,extra>}`."""
    labels = SELECTOR + ("," + extra if extra else "")
    return f"{name}{{{labels}}}"


def rate(name, extra=""):
    return f"rate({metric(name, extra)}{RATE})"


def quantile(q, histogram, by="instance"):
    return (
        f"histogram_quantile({q}, sum by ({by}, le) "
        f"({rate(histogram + '_bucket')}))"
    )


def zero_per_instance():
    """One 0 per scraped member, labelled {instance}: fills series that appear only on failure."""
    return f"(0 * sum by (instance) ({metric('etcd_server_has_leader')}))"


def target(expr, legend, ref_id, instant=False):
    return {
        "datasource": DATASOURCE,
        "editorMode": "code",
        "expr": expr,
        "instant": instant,
        "legendFormat": legend,
        "range": not instant,
        "refId": ref_id,
    }


def targets(queries, instant=False):
    """queries: list of (expr, legend)."""
    return [
        target(expr, legend, chr(ord("A") + index), instant)
        for index, (expr, legend) in enumerate(queries)
    ]


def thresholds(*steps):
    """steps: (value, color) pairs above a green base."""
    return {
        "mode": "absolute",
        "steps": [{"color": "green", "value": None}]
        + [{"color": color, "value": value} for value, color in steps],
    }


def value_mapping(mapping):
    """mapping: {value: (text, color)}."""
    return [
        {
            "type": "value",
            "options": {
                str(value): {"text": text, "color": color, "index": index}
                for index, (value, (text, color)) in enumerate(mapping.items())
            },
        }
    ]


class Layout:
    """Places panels on Grafana's 24-column grid, left to right, row by row."""

    def __init__(self):
        self.panels = []
        self.next_id = 1
        self.x = 0
        self.y = 0
        self.line_height = 0

    def _id(self):
        panel_id = self.next_id
        self.next_id += 1
        return panel_id

    def _place(self, width, height):
        if self.x + width > 24:
            self.x = 0
            self.y += self.line_height
            self.line_height = 0
        position = {"h": height, "w": width, "x": self.x, "y": self.y}
        self.x += width
        self.line_height = max(self.line_height, height)
        return position

    def row(self, title):
        if self.x:
            self.y += self.line_height
        self.x = 0
        self.line_height = 0
        self.panels.append(
            {
                "type": "row",
                "id": self._id(),
                "title": title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y},
                "panels": [],
            }
        )
        self.y += 1

    def timeseries(self, title, description, queries, unit, width=8, height=8,
                   limit=None, minimum=0, stack=False):
        custom = {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 10,
            "gradientMode": "none",
            "showPoints": "never",
            "spanNulls": False,
            "stacking": {"mode": "normal" if stack else "none", "group": "A"},
            "thresholdsStyle": {"mode": "dashed" if limit is not None else "off"},
        }
        if minimum is not None:
            custom["axisSoftMin"] = minimum
        limits = thresholds((limit, "red")) if limit is not None else thresholds()
        if limit is not None:
            # Only the dashed threshold line shows; nothing is drawn for the base step.
            limits["steps"][0]["color"] = "transparent"
        self.panels.append(
            {
                "type": "timeseries",
                "id": self._id(),
                "title": title,
                "description": description,
                "datasource": DATASOURCE,
                "gridPos": self._place(width, height),
                "fieldConfig": {
                    "defaults": {
                        "unit": unit,
                        "color": {"mode": "palette-classic"},
                        "custom": custom,
                        "thresholds": limits,
                    },
                    "overrides": [],
                },
                "options": {
                    "legend": {"displayMode": "list", "placement": "bottom",
                               "showLegend": True, "calcs": []},
                    "tooltip": {"mode": "multi", "sort": "desc"},
                },
                "targets": targets(queries),
            }
        )

    def stat(self, title, description, queries, unit="none", width=6, height=4,
             steps=(), mapping=None, text_mode="auto", color_mode="background",
             graph=False):
        defaults = {
            "unit": unit,
            "color": {"mode": "thresholds"},
            "thresholds": thresholds(*steps),
            "mappings": value_mapping(mapping) if mapping else [],
        }
        self.panels.append(
            {
                "type": "stat",
                "id": self._id(),
                "title": title,
                "description": description,
                "datasource": DATASOURCE,
                "gridPos": self._place(width, height),
                "fieldConfig": {"defaults": defaults, "overrides": []},
                "options": {
                    "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                    "colorMode": color_mode,
                    "graphMode": "area" if graph else "none",
                    "justifyMode": "auto",
                    "orientation": "auto",
                    "textMode": text_mode,
                    "wideLayout": True,
                },
                "targets": targets(queries, instant=not graph),
            }
        )


def cluster_overview(layout):
    layout.row("Cluster overview")
    layout.stat(
        "Members up",
        "Scrape targets of this job answering /metrics, against the number configured. "
        "A 3-member cluster keeps quorum with 2.",
        [
            (f"sum(up{{{SELECTOR}}})", "up"),
            (f"count(up{{{SELECTOR}}})", "configured"),
        ],
        width=4,
        color_mode="value",
    )
    layout.stat(
        "Has leader",
        "etcd_server_has_leader per member: 0 means that member sees no leader and "
        "cannot serve linearizable requests or writes.",
        [(metric("etcd_server_has_leader"), "{{instance}}")],
        width=6,
        steps=(),
        mapping={0: ("NO LEADER", "red"), 1: ("has leader", "green")},
    )
    layout.stat(
        "Leader",
        "etcd_server_is_leader per member: exactly one member should show LEADER.",
        [(metric("etcd_server_is_leader"), "{{instance}}")],
        width=6,
        mapping={0: ("follower", "text"), 1: ("LEADER", "blue")},
    )
    layout.stat(
        "Leader changes (1h)",
        "Most leader changes any member saw in the last hour. More than a few an hour "
        "points at slow disks, a saturated network or CPU starvation.",
        [(f"max(increase({metric('etcd_server_leader_changes_seen_total')}[1h]))",
          "changes")],
        width=4,
        steps=((3, "orange"), (6, "red")),
    )
    layout.stat(
        "Uptime",
        "Time since each member's process started.",
        [(f"time() - {metric('process_start_time_seconds')}", "{{instance}}")],
        unit="s",
        width=4,
        color_mode="value",
    )
    layout.stat(
        "Version",
        "etcd_server_version: the etcd version each member reports compatibility with.",
        [(metric("etcd_server_version"), "{{instance}}: {{server_version}}")],
        width=12,
        text_mode="name",
        color_mode="none",
    )
    layout.stat(
        "Member IDs",
        "etcd_server_id: the member ID each instance reports (as in `etcdctl member list`, hex).",
        [(metric("etcd_server_id"), "{{instance}}: {{server_id}}")],
        width=12,
        text_mode="name",
        color_mode="none",
    )


def proposals(layout):
    layout.row("Raft proposals")
    layout.timeseries(
        "Proposals committed and applied",
        "Rate of Raft entries committed to the log and applied to the state machine, per member. "
        "The two lines should overlap.",
        [
            (rate("etcd_server_proposals_committed_total"), "{{instance}} committed"),
            (rate("etcd_server_proposals_applied_total"), "{{instance}} applied"),
        ],
        unit="ops",
    )
    layout.timeseries(
        "Committed minus applied",
        "Entries committed but not yet applied. A lag that keeps growing means apply cannot "
        "keep up (slow backend commits, huge transactions).",
        [(f"{metric('etcd_server_proposals_committed_total')} - "
          f"{metric('etcd_server_proposals_applied_total')}", "{{instance}}")],
        unit="short",
    )
    layout.timeseries(
        "Proposals pending",
        "Proposals submitted on this member and waiting for commit. Only the leader's and "
        "forwarding members' counts are non-zero; a steady climb means the cluster is overloaded.",
        [(metric("etcd_server_proposals_pending"), "{{instance}}")],
        unit="short",
    )
    layout.timeseries(
        "Proposals failed",
        "Rate of proposals that failed, mostly because of leader elections or lost quorum.",
        [(rate("etcd_server_proposals_failed_total"), "{{instance}}")],
        unit="ops",
    )
    layout.timeseries(
        "Slow applies and ReadIndex",
        "Applies that took longer than expected (over 100 ms), ReadIndex requests that were slow "
        "or failed. Non-zero rates follow slow disks or leader changes.",
        [
            (rate("etcd_server_slow_apply_total"), "{{instance}} slow apply"),
            (rate("etcd_server_slow_read_indexes_total"), "{{instance}} slow ReadIndex"),
            (rate("etcd_server_read_indexes_failed_total"), "{{instance}} failed ReadIndex"),
        ],
        unit="ops",
    )
    layout.timeseries(
        "MVCC operations",
        "Puts, deletes, ranges and transactions applied to the key space, summed over the "
        "selected members.",
        [
            (f"sum({rate('etcd_mvcc_put_total')})", "put"),
            (f"sum({rate('etcd_mvcc_delete_total')})", "delete"),
            (f"sum({rate('etcd_mvcc_range_total')})", "range"),
            (f"sum({rate('etcd_mvcc_txn_total')})", "txn"),
        ],
        unit="ops",
    )


def disk(layout):
    layout.row("Disk latency")
    limit = "Red line: 10 ms, the limit etcd operators are told to stay under."
    layout.timeseries(
        "WAL fsync duration",
        "p50 and p99 of the fsync that makes each Raft log append durable. " + limit,
        [
            (quantile(0.5, "etcd_disk_wal_fsync_duration_seconds"), "{{instance}} p50"),
            (quantile(0.99, "etcd_disk_wal_fsync_duration_seconds"), "{{instance}} p99"),
        ],
        unit="s",
        width=12,
        limit=LATENCY_LIMIT_SECONDS,
    )
    layout.timeseries(
        "Backend commit duration",
        "p99 of the backend (state machine store) commit that applies entries. " + limit,
        [(quantile(0.99, "etcd_disk_backend_commit_duration_seconds"), "{{instance}} p99")],
        unit="s",
        width=12,
        limit=LATENCY_LIMIT_SECONDS,
    )


def network(layout):
    layout.row("Network")
    layout.timeseries(
        "Peer round trip p99",
        "p99 round-trip time to each peer (instance → To). Red line: 10 ms. Keep the election "
        "timeout well above it (etcd's rule of thumb: heartbeat ≈ round trip, election ≈ 10×).",
        [(quantile(0.99, "etcd_network_peer_round_trip_time_seconds", by="instance, To"),
          "{{instance}} → {{To}}")],
        unit="s",
        limit=LATENCY_LIMIT_SECONDS,
    )
    layout.timeseries(
        "Peer traffic",
        "Bytes per second sent to and received from the other members.",
        [
            (f"sum by (instance) ({rate('etcd_network_peer_sent_bytes_total')})",
             "{{instance}} sent"),
            (f"sum by (instance) ({rate('etcd_network_peer_received_bytes_total')})",
             "{{instance}} received"),
        ],
        unit="Bps",
    )
    layout.timeseries(
        "Heartbeat and peer send failures",
        "Heartbeats the leader failed to send in time, and messages that could not be sent to a "
        "peer. Both should be zero; heartbeat failures usually mean a slow disk on the leader.",
        [
            (rate("etcd_server_heartbeat_send_failures_total"), "{{instance}} heartbeat"),
            (f"sum by (instance) ({rate('etcd_network_peer_sent_failures_total')}) "
             f"or {zero_per_instance()}", "{{instance}} peer send"),
        ],
        unit="ops",
    )


def space(layout):
    layout.row("Space")
    layout.timeseries(
        "Database size vs quota",
        "Backend file size, the part of it in use, and the quota (--quota-backend-bytes). "
        "When the file reaches the quota the NOSPACE alarm stops writes.",
        [
            (metric("etcd_mvcc_db_total_size_in_bytes"), "{{instance}} total"),
            (metric("etcd_mvcc_db_total_size_in_use_in_bytes"), "{{instance}} in use"),
            (f"max({metric('etcd_server_quota_backend_bytes')})", "quota"),
        ],
        unit="bytes",
    )
    layout.stat(
        "Quota used",
        "Backend file size as a share of the quota, per member. Over 80%: compact and defrag, "
        "or raise --quota-backend-bytes.",
        [(f"100 * {metric('etcd_mvcc_db_total_size_in_bytes')} / "
          f"{metric('etcd_server_quota_backend_bytes')}", "{{instance}}")],
        unit="percent",
        width=4,
        height=8,
        steps=((80, "orange"), (95, "red")),
    )
    layout.timeseries(
        "Defrag would reclaim",
        "Total minus in-use: free pages inside the backend file that a defragment would return "
        "to the file system.",
        [(f"{metric('etcd_mvcc_db_total_size_in_bytes')} - "
          f"{metric('etcd_mvcc_db_total_size_in_use_in_bytes')}", "{{instance}}")],
        unit="bytes",
        width=6,
    )
    layout.stat(
        "Defrag in flight",
        "1 while a member is defragmenting: it serves no requests until it is done.",
        [(metric("etcd_disk_defrag_inflight"), "{{instance}}")],
        width=6,
        height=8,
        mapping={0: ("idle", "green"), 1: ("DEFRAGMENTING", "orange")},
    )
    layout.timeseries(
        "Keys",
        "Keys in the key space (latest revision, deleted keys excluded).",
        [(metric("etcd_debugging_mvcc_keys_total"), "{{instance}}")],
        unit="short",
    )
    layout.timeseries(
        "Revisions",
        "Current revision and the revision compacted up to. The gap is the history kept; "
        "it grows without bound when nothing compacts (-1: never compacted).",
        [
            (metric("etcd_debugging_mvcc_current_revision"), "{{instance}} current"),
            (metric("etcd_debugging_mvcc_compact_revision"), "{{instance}} compacted"),
        ],
        unit="short",
        minimum=None,
    )
    layout.timeseries(
        "Watchers",
        "Watchers and watch streams open on each member.",
        [
            (metric("etcd_debugging_mvcc_watcher_total"), "{{instance}} watchers"),
            (metric("etcd_debugging_mvcc_watch_stream_total"), "{{instance}} streams"),
        ],
        unit="short",
    )


def alarms(layout):
    layout.row("Alarms")
    layout.stat(
        "Alarms",
        "keel_server_alarm_active per member and alarm. NOSPACE: writes are refused until space "
        "is freed (compact, defrag, `etcdctl alarm disarm`). CORRUPT: a member's data diverged; "
        "stop writing and restore that member from a healthy one.",
        [(metric("keel_server_alarm_active"), "{{instance}} {{alarm}}")],
        width=18,
        mapping={0: ("ok", "green"), 1: ("ACTIVE", "red")},
    )
    layout.stat(
        "Active alarms",
        "Number of alarm series at 1 across the selected members.",
        [(f"sum({metric('keel_server_alarm_active')})", "active")],
        width=6,
        steps=((1, "red"),),
    )


NOT_OK = 'grpc_code!="OK"'


def grpc(layout):
    layout.row("gRPC")
    layout.timeseries(
        "Requests by method",
        "RPCs started per second (streams count once, when opened), summed over the selected "
        "members.",
        [(f"sum by (grpc_service, grpc_method) ({rate('grpc_server_started_total')})",
          "{{grpc_service}}/{{grpc_method}}")],
        unit="reqps",
        width=12,
    )
    layout.timeseries(
        "Errors by code",
        "RPCs finished with a code other than OK, per second. Canceled and NotFound are often "
        "the client's doing; Unavailable, ResourceExhausted and Internal are the server's.",
        [(f"sum by (grpc_code) ({rate('grpc_server_handled_total', NOT_OK)}) "
          'or on() label_replace(vector(0), "grpc_code", "none", "", "")', "{{grpc_code}}")],
        unit="reqps",
        width=12,
    )


def process(layout):
    layout.row("Process")
    layout.timeseries(
        "Resident memory",
        "Resident set size of each keel process.",
        [(metric("process_resident_memory_bytes"), "{{instance}}")],
        unit="bytes",
    )
    layout.timeseries(
        "CPU",
        "CPU time per second of wall time (1.0 = one full core).",
        [(rate("process_cpu_seconds_total"), "{{instance}}")],
        unit="percentunit",
    )
    layout.timeseries(
        "File descriptors",
        "Open file descriptors against the process limit.",
        [
            (metric("process_open_fds"), "{{instance}} open"),
            (metric("process_max_fds"), "{{instance}} max"),
        ],
        unit="short",
    )


def templating():
    def query_variable(name, label, query, include_all):
        variable = {
            "name": name,
            "label": label,
            "type": "query",
            "datasource": DATASOURCE,
            "definition": query,
            "query": {"query": query, "refId": f"{name}-variable-query", "qryType": 1},
            "refresh": 2,
            "sort": 1,
            "regex": "",
            "hide": 0,
            "multi": include_all,
            "includeAll": include_all,
            "current": {},
            "options": [],
        }
        if include_all:
            variable["allValue"] = ".*"
        return variable

    return {
        "list": [
            {
                "name": "datasource",
                "label": "Data source",
                "type": "datasource",
                "query": "prometheus",
                "regex": "",
                "hide": 0,
                "refresh": 1,
                "includeAll": False,
                "multi": False,
                "current": {},
                "options": [],
            },
            # One job is one cluster: the panels sum over members, so never mix jobs.
            query_variable("job", "Cluster (job)", "label_values(etcd_server_has_leader, job)",
                           include_all=False),
            query_variable("instance", "Member",
                           'label_values(etcd_server_has_leader{job=~"$job"}, instance)',
                           include_all=True),
        ]
    }


def dashboard():
    layout = Layout()
    for section in (cluster_overview, proposals, disk, network, space, alarms, grpc, process):
        section(layout)
    return {
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "description": "Keel (etcd v3 API compatible key-value store): leader, Raft, disk, "
                       "network, space, alarms, gRPC and process metrics.",
        "editable": True,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "id": None,
        "links": [],
        "liveNow": False,
        "panels": layout.panels,
        "refresh": "30s",
        "schemaVersion": 39,
        "tags": ["keel", "etcd"],
        "templating": templating(),
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {},
        "timezone": "",
        "title": "Keel",
        "uid": "keel-cluster",
        "version": 1,
        "weekStart": "",
    }


def render():
    return json.dumps(dashboard(), indent=2, ensure_ascii=False) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if keel-dashboard.json differs from what this script writes")
    arguments = parser.parse_args()
    text = render()
    if arguments.check:
        if not OUTPUT.exists() or OUTPUT.read_text(encoding="utf-8") != text:
            print(f"{OUTPUT} is stale: run {sys.argv[0]}", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
