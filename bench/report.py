#!/usr/bin/env python3
"""Writes BENCHMARKS.md from the work dir of keel-bench compare (python3, standard library only).

    bench/report.py WORKDIR [--out BENCHMARKS.md]

Reads, all written by keel-bench compare:
  machine.json   the command, dates, versions, cores, memory, file system, fsync probes
  runs.jsonl     one line per keel-bench run: topology, workload, server, round, status, JSON path
  results/...    keel-bench's JSON of each run
  clusters.json  per topology and server: VmHWM, VmRSS, db file and data dir size of each member
  memory.json    the memory and size workload: load, RSS, db size, stop and restart times

Every figure of a workload is the median of its rounds (runs that failed are left out and said so);
every ratio is Keel / etcd from the same run of the script.
"""

import argparse
import json
import os
import statistics
import sys

SERVERS = ("etcd", "keel")
TOPOLOGIES = (("1-member", "1 member"), ("3-member", "3 members"))

# What each workload of keel-bench compare is, in words; the exact keel-bench arguments go in the appendix.
DESCRIPTIONS = {
    "put-1c": "put, 1 client",
    "put-16c": "put, 16 clients",
    "put-64c": "put, 64 clients",
    "range-l-64c": "range 1 key, linearizable, 64 clients",
    "range-s-64c": "range 1 key, serializable, 64 clients",
    "range-l-prefix100-16c": "range prefix of 100 keys, linearizable, 16 clients",
    "txn-put-64c": "txn of 1 put, 64 clients",
    "watch-1000w": "watch: 1000 watchers on 1 key, 10 streams; events/s, delivery latency",
    "lease-keepalive-64c": "lease keep-alive, 64 clients",
    "mixed-r90-64c": "90% linearizable get / 10% put, 64 clients",
}


def read_json(path, default=None):
    try:
        with open(path) as file:
            return json.load(file)
    except (OSError, ValueError):
        return default


def read_runs(workdir):
    runs = []
    try:
        lines = open(os.path.join(workdir, "runs.jsonl")).read().splitlines()
    except OSError:
        return runs
    for line in lines:
        if not line.strip():
            continue
        run = json.loads(line)
        run["result"] = read_json(run["json"]) if run.get("status") == "ok" else None
        if run.get("status") == "ok" and run["result"] is None:
            run["status"] = "unreadable JSON"
        runs.append(run)
    return runs


def last_line(path):
    try:
        lines = [line.strip() for line in open(path, errors="replace").read().splitlines() if line.strip()]
    except OSError:
        return "(no output file)"
    return lines[-1][:300] if lines else "(no output)"


# ------------------------------------------------------------------------------------------------
# Formatting.

def number(value, digits=0):
    if value is None:
        return "-"
    if not isinstance(value, (int, float)):
        return str(value)
    return f"{value:,.{digits}f}"


def rate(value):
    return "-" if value is None else f"{value:,.0f}/s"


def ms(value):
    if value is None:
        return "-"
    if value < 10:
        return f"{value:.2f} ms"
    if value < 1000:
        return f"{value:.1f} ms"
    return f"{value:,.0f} ms"


def mib_from_kb(value):
    return "-" if value is None else f"{value / 1024:,.1f} MiB"


def mib(value):
    """Bytes, in MiB (KiB below 1 MiB)."""
    if value is None:
        return "-"
    if value < 1048576:
        return f"{value / 1024:,.0f} KiB"
    return f"{value / 1048576:,.1f} MiB"


def ratio(keel, etcd):
    if not isinstance(keel, (int, float)) or not isinstance(etcd, (int, float)) or etcd == 0:
        return None
    return keel / etcd


def times(value):
    return "-" if value is None else f"{value:.2f}x"


def median(values):
    values = [value for value in values if value is not None]
    return statistics.median(values) if values else None


# ------------------------------------------------------------------------------------------------
# Runs into per-workload summaries.

class Summary:
    """One workload on one server in one topology: the median of its successful rounds."""

    def __init__(self, runs):
        self.runs = runs
        good = [run for run in runs if run["status"] == "ok"]
        self.failed = [run for run in runs if run["status"] != "ok"]
        results = [run["result"] for run in good]
        self.throughput = median([result.get("throughput") for result in results])
        latency = [result.get("latency_ms") or {} for result in results]
        self.latency = {key: median([item.get(key) for item in latency])
                        for key in ("min", "mean", "p50", "p90", "p99", "p999", "max")}
        self.errors = sum(result.get("errors") or 0 for result in results)
        self.rounds = len(runs)

    @property
    def usable(self):
        return self.throughput is not None

    def note(self, server):
        notes = []
        if self.failed:
            notes.append(f"{server}: {len(self.failed)} of {self.rounds} rounds did not succeed "
                         f"(first: {self.failed[0]['status']}; see Failed runs)")
        if self.errors:
            notes.append(f"{server}: {self.errors:,} request errors")
        return notes


def summarize(runs):
    grouped = {}
    for run in runs:
        grouped.setdefault((run["topology"], run["workload"], run["server"]), []).append(run)
    return {key: Summary(value) for key, value in grouped.items()}


def workload_order(runs):
    order = []
    for run in runs:
        if run["workload"] not in order:
            order.append(run["workload"])
    return order


# ------------------------------------------------------------------------------------------------
# The report's sections.

def header(machine, memory):
    lines = ["# Keel and etcd 3.4, side by side", ""]
    if machine.get("quick"):
        lines += ["> **Quick run (`--quick`)**: small totals and "
                  f"{number(memory.get('keys'))} keys in the memory workload. A smoke check of the "
                  "benchmark, not figures to quote.", ""]
    lines += [
        f"Made by `{machine.get('command', 'keel-bench compare')}` from {machine.get('started', '?')} to "
        f"{machine.get('finished', '?')} ({number((machine.get('wall_seconds') or 0) / 60, 1)} min). "
        f"Rounds: {machine.get('rounds', '?')}; every figure is the median of the rounds, every ratio "
        "is Keel / etcd from this same run.",
        "",
        "| | |",
        "|---|---|",
        f"| Keel | `{machine.get('keel_version', '?')}` (`{machine.get('keel_binary', '?')}`, built "
        f"{machine.get('keel_binary_built', '?')}), repository at commit {machine.get('git_commit', '?')} |",
        f"| etcd | `{machine.get('etcd_version', '?')}` (Debian `etcd-server`, `/usr/bin/etcd`) |",
        f"| client | `{machine.get('keel_bench_version', '?')}` (`{machine.get('keel_bench_binary', '?')}`), on "
        "the same machine as the servers |",
        f"| cores | {machine.get('cores', '?')} x {machine.get('cpu_model', '?')} |",
        f"| memory | {(machine.get('memory_kb') or 0) / 1048576:.1f} GiB |",
        f"| kernel | {machine.get('kernel', '?')} |",
        f"| data dirs | `{machine.get('workdir', '?')}` on {machine.get('filesystem', '?')} |",
    ]
    for key, when in (("fsync_before", "before the run"), ("fsync_after", "after the run")):
        probe = machine.get(key)
        if probe:
            lines.append(
                f"| disk fsync, {when} | 2 KiB write + fdatasync, {probe['count']} times in the data dirs' "
                f"file system: p50 {ms(probe['p50_ms'])}, p90 {ms(probe['p90_ms'])}, "
                f"p99 {ms(probe['p99_ms'])}, max {ms(probe['max_ms'])} |")
    return lines + [""]


def fsync_p50(machine):
    values = [machine[key]["p50_ms"] for key in ("fsync_before", "fsync_after") if key in machine]
    return " / ".join(ms(value) for value in values) if values else "-"


def goals(summaries, memory, machine):
    """The issue's performance goals, each with where this run stands."""
    rows = []

    def workload_goal(title, topology, workload, metric, target_kind, target, note=""):
        etcd = summaries.get((topology, workload, "etcd"))
        keel = summaries.get((topology, workload, "keel"))

        def value(summary):
            if summary is None or not summary.usable:
                return None
            return summary.throughput if metric == "throughput" else summary.latency.get(metric)

        show = rate if metric == "throughput" else ms
        etcd_value, keel_value = value(etcd), value(keel)
        rows.append((title, target_kind, target, show(etcd_value), show(keel_value),
                     ratio(keel_value, etcd_value), note))

    fsync = f"disk fsync p50 {fsync_p50(machine)} (before / after)"
    workload_goal("put throughput, 64 clients, 3 members", "3-member", "put-64c", "throughput", ">=", 1.5)
    workload_goal("put p99, 64 clients, 3 members", "3-member", "put-64c", "p99", "<=", 1.0)
    workload_goal("put p50, 1 client, 1 member", "1-member", "put-1c", "p50", "<=", 1.0, fsync)
    workload_goal("put p50, 1 client, 3 members", "3-member", "put-1c", "p50", "<=", 1.0, fsync)
    for topology, words in TOPOLOGIES:
        workload_goal(f"linearizable range throughput, 64 clients, {words}", topology, "range-l-64c",
                      "throughput", ">=", 1.5)
    for topology, words in TOPOLOGIES:
        workload_goal(f"serializable range throughput, 64 clients, {words}", topology, "range-s-64c",
                      "throughput", ">=", 2.0)
    for topology, words in TOPOLOGIES:
        workload_goal(f"watch delivery p99, 1000 watchers, {words}", topology, "watch-1000w", "p99", "<=", 1.0)

    keys = number(memory.get("keys"))
    etcd, keel = memory.get("etcd", {}), memory.get("keel", {})
    for title, key, show, target in (
            (f"RSS after loading {keys} keys, 1 member", "vm_rss_kb_after_load", mib_from_kb, 0.5),
            (f"db file size, {keys} keys (after a clean stop)", "db_bytes_after_stop", mib, 1.0),
            (f"restart time, {keys} keys (start to first linearizable get)", "restart_ms", ms, 0.5)):
        note = ""
        if key == "restart_ms":
            probes = [side.get("probe_ms") for side in (etcd, keel) if side.get("probe_ms") is not None]
            if probes:
                note = f"includes one linearizable get (~{ms(max(probes))} on a running server)"
        rows.append((title, "<=", target, show(etcd.get(key)), show(keel.get(key)),
                     ratio(keel.get(key), etcd.get(key)), note))

    lines = ["## Goals", "",
             "| goal | target, Keel / etcd | etcd | Keel | Keel / etcd | met | note |",
             "|---|---|---|---|---|---|---|"]
    for title, kind, target, etcd_text, keel_text, value, note in rows:
        if value is None:
            verdict = "no data"
        elif (value >= target) if kind == ">=" else (value <= target):
            verdict = "yes"
        else:
            verdict = "**no**"
        lines.append(f"| {title} | {kind} {target:.1f}x | {etcd_text} | {keel_text} | {times(value)} | "
                     f"{verdict} | {note} |")
    return lines + [""]


def results(summaries, runs):
    lines = ["## Workloads", "",
             "Values 256 B, keys 16 B (the range workloads' keys are keel-bench's `range/NNNNNNNN`, 14 B). "
             "Throughput in requests per second (events per second for watch); latencies per request "
             "(per event from put sent to event received for watch). Ratios are Keel / etcd: above 1 "
             "is better for throughput, below 1 is better for latency.", ""]
    order = workload_order(runs)
    for topology, words in TOPOLOGIES:
        if not any(key[0] == topology for key in summaries):
            continue
        lines += [f"### {words}", "",
                  "| workload | clients / conns | etcd | Keel | ratio | etcd p50 | Keel p50 | ratio "
                  "| etcd p99 | Keel p99 | ratio | etcd max | Keel max |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        notes = []
        for workload in order:
            etcd = summaries.get((topology, workload, "etcd"))
            keel = summaries.get((topology, workload, "keel"))
            if etcd is None and keel is None:
                continue
            any_run = (etcd or keel).runs[0]

            def get(summary, what):
                if summary is None or not summary.usable:
                    return None
                return summary.throughput if what == "throughput" else summary.latency.get(what)

            def cell(summary, what, show):
                if summary is None:
                    return "not run"
                if not summary.usable:
                    return "**failed**"
                return show(get(summary, what))

            row = [DESCRIPTIONS.get(workload, workload), f"{any_run['clients']} / {any_run['conns']}"]
            for what, show in (("throughput", rate), ("p50", ms), ("p99", ms)):
                row += [cell(etcd, what, show), cell(keel, what, show), times(ratio(get(keel, what), get(etcd, what)))]
            row += [cell(etcd, "max", ms), cell(keel, "max", ms)]
            lines.append("| " + " | ".join(row) + " |")
            for server, summary in (("etcd", etcd), ("keel", keel)):
                if summary is not None:
                    notes += [f"{DESCRIPTIONS.get(workload, workload)}: {note}" for note in summary.note(server)]
        lines.append("")
        if notes:
            lines += [f"- {note}" for note in notes] + [""]
    return lines


def cluster_resources(clusters):
    if not clusters:
        return []
    lines = ["## Server memory and db size during the workloads", "",
             "Peak RSS is each member's VmHWM at the end of the topology's workloads; the db file is "
             "`member/snap/db` (etcd's bbolt, Keel's redb) at the same moment.", "",
             "| topology | | etcd | Keel | Keel / etcd |", "|---|---|---|---|---|"]
    for topology, words in TOPOLOGIES:
        both = clusters.get(topology)
        if not both:
            continue
        etcd, keel = both.get("etcd", {}), both.get("keel", {})
        for title, key, reduce, show in (
                ("peak RSS, largest member", "vm_hwm_kb", max, mib_from_kb),
                ("peak RSS, all members", "vm_hwm_kb", sum, mib_from_kb),
                ("RSS at the end, all members", "vm_rss_kb", sum, mib_from_kb),
                ("db file, largest member", "db_bytes", max, mib),
                ("data dir on disk (WAL + db), largest member", "data_dir_bytes", max, mib)):
            etcd_value = reduce(etcd[key]) if etcd.get(key) else None
            keel_value = reduce(keel[key]) if keel.get(key) else None
            lines.append(f"| {words} | {title} | {show(etcd_value)} | {show(keel_value)} | "
                         f"{times(ratio(keel_value, etcd_value))} |")
        leaders = [side.get("leader_at_end") for side in (etcd, keel)]
        if topology != "1-member" and any(leaders):
            lines.append(f"| {words} | leader at the end (moved to m1 at the start) | {leaders[0] or '-'} | "
                         f"{leaders[1] or '-'} | |")
        for server, side in (("etcd", etcd), ("Keel", keel)):
            if side and side.get("alive") is False:
                lines.append(f"| {words} | **a {server} member had exited by the end** | | | |")
    return lines + [""]


def memory_section(memory):
    if not memory:
        return []
    keys = number(memory.get("keys"))
    etcd, keel = memory.get("etcd", {}), memory.get("keel", {})
    lines = [f"## Memory and size: {keys} keys", "",
             f"A fresh single member of each is loaded with {keys} distinct keys (key 32 B, value 256 B, "
             "64 clients over 4 connections), then stopped with SIGTERM and started again; restart time "
             "runs from starting the process to the first answer to a linearizable get (a gRPC Range).", "",
             "| | etcd | Keel | Keel / etcd |", "|---|---|---|---|"]

    def load(side, what):
        result = read_json(side.get("load_json", ""), None) if side.get("load_status") == "ok" else None
        if result is None:
            return None
        return result.get("throughput") if what == "throughput" else (result.get("latency_ms") or {}).get(what)

    rows = [
        ("load throughput", load(etcd, "throughput"), load(keel, "throughput"), rate),
        ("load put p99", load(etcd, "p99"), load(keel, "p99"), ms),
        ("RSS idle, before the load", etcd.get("vm_rss_kb_idle"), keel.get("vm_rss_kb_idle"), mib_from_kb),
        ("RSS after the load", etcd.get("vm_rss_kb_after_load"), keel.get("vm_rss_kb_after_load"), mib_from_kb),
        ("peak RSS during the load (VmHWM)", etcd.get("vm_hwm_kb_load"), keel.get("vm_hwm_kb_load"), mib_from_kb),
        ("db file after the load", etcd.get("db_bytes_after_load"), keel.get("db_bytes_after_load"), mib),
        ("db file after a clean stop", etcd.get("db_bytes_after_stop"), keel.get("db_bytes_after_stop"), mib),
        ("db file, blocks on disk", etcd.get("db_bytes_on_disk_after_stop"),
         keel.get("db_bytes_on_disk_after_stop"), mib),
        ("WAL dir on disk", etcd.get("wal_bytes_on_disk"), keel.get("wal_bytes_on_disk"), mib),
        ("data dir on disk (WAL + db + snapshots)", etcd.get("data_dir_bytes_on_disk"),
         keel.get("data_dir_bytes_on_disk"), mib),
        ("stop (SIGTERM to exit)", etcd.get("stop_ms"), keel.get("stop_ms"), ms),
        ("restart (start to first linearizable get)", etcd.get("restart_ms"), keel.get("restart_ms"), ms),
        ("one linearizable get on the running server (part of the above)", etcd.get("probe_ms"),
         keel.get("probe_ms"), ms),
        ("RSS right after the restart", etcd.get("vm_rss_kb_after_restart"),
         keel.get("vm_rss_kb_after_restart"), mib_from_kb),
        ("RSS 2 s after the restart and a count of all keys", etcd.get("vm_rss_kb_after_restart_settled"),
         keel.get("vm_rss_kb_after_restart_settled"), mib_from_kb),
        ("keys counted after the restart", etcd.get("keys_after_restart"), keel.get("keys_after_restart"), number),
    ]
    for title, etcd_value, keel_value, show in rows:
        lines.append(f"| {title} | {show(etcd_value)} | {show(keel_value)} | {times(ratio(keel_value, etcd_value))} |")
    lines.append("")
    for server, side in (("etcd", etcd), ("Keel", keel)):
        if side.get("load_status") not in (None, "ok"):
            lines.append(f"- **{server}: the load {side['load_status']}**: `{last_line(side.get('load_output', ''))}` "
                         f"(output in `{side.get('load_output')}`)")
        if side.get("stopped_by", "SIGTERM") != "SIGTERM":
            lines.append(f"- **{server}: the stop before the restart took {side['stopped_by']}**, so the "
                         "restart recovered from a kill, not from a clean stop")
        if side.get("restart_status"):
            lines.append(f"- **{server}: {side['restart_status']}**")
        if side.get("keys_after_restart") not in (None, memory.get("keys")):
            lines.append(f"- **{server}: {number(side.get('keys_after_restart'))} keys after the restart, "
                         f"{keys} loaded**")
    if lines[-1] != "":
        lines.append("")
    return lines


def method(machine):
    return [
        "## How it was measured", "",
        "- Both servers run with their default settings and the same flags (`--name`, `--data-dir`, "
        "`--listen-client-urls`, `--advertise-client-urls`, `--listen-peer-urls`, "
        "`--initial-advertise-peer-urls`, `--initial-cluster`, `--initial-cluster-state new`, "
        "`--initial-cluster-token`), all members on 127.0.0.1, fresh data dirs in the same file system. "
        "Both fsync the WAL before acknowledging a write (neither default can be turned off without a flag); "
        "both commit their backend (bbolt, redb) in batches and recover it from the WAL.",
        "- For each topology the etcd and the Keel cluster run at the same time on distinct ports; one is idle "
        "while the other is measured. Each round runs every workload on both, etcd first in odd rounds and "
        "Keel first in even rounds, so the data set each one has is the same at each step. With 2 rounds "
        "the median is the mean of the two; the last table has every run.",
        "- In the 3-member clusters Raft leadership is moved to m1 (`etcdctl move-leader`) before the "
        "workloads: m1 is the first endpoint, the one a 1-connection workload talks to, and it takes 2 of 4 "
        "connections; so both servers meet the same traffic in the same roles. Followers forward writes "
        "and ReadIndex to the leader in both.",
        "- The client is `keel-bench` for both servers, on the same cores as the servers (a 2-core machine "
        "shares its CPUs between client and servers, as etcd's own benchmark figures on one host do).",
        "- Peak RSS is VmHWM from `/proc/PID/status`; db size is the size of `member/snap/db`.",
        f"- Raw results: `{machine.get('workdir', '?')}` (`runs.jsonl`, `results/`, `logs/`, `machine.json`, "
        "`clusters.json`, `memory.json`); this file was written from them by `bench/report.py`.",
        "",
    ]


def appendix(runs, machine):
    if not runs:
        return []
    lines = ["## Every run", "",
             "Load is the 1-minute load average just before the run (the machine has "
             f"{machine.get('cores', '?')} cores). It includes the benchmark's own recent work, so read it "
             "for differences: a load well above the neighbouring runs' means something else was running.", "",
             "| topology | workload | round | first | server | status | throughput | p50 | p99 | max | errors | load |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for run in runs:
        result = run.get("result") or {}
        latency = result.get("latency_ms") or {}
        lines.append(
            f"| {run['topology']} | {run['workload']} | {run['round']} | {'yes' if run['position'] == 1 else ''} "
            f"| {run['server']} | {run['status']} | {rate(result.get('throughput'))} | {ms(latency.get('p50'))} "
            f"| {ms(latency.get('p99'))} | {ms(latency.get('max'))} | {number(result.get('errors'))} "
            f"| {run.get('loadavg_before', '-')} |")
    lines += ["", "keel-bench arguments of each workload (after `--endpoints <cluster> --conns C --clients N "
              "--total T --json F --label L --no-progress`):", ""]
    seen = {}
    for run in runs:
        seen.setdefault(run["workload"], run)
    lines += ["| workload | clients / conns | total | arguments |", "|---|---|---|---|"]
    for workload, run in seen.items():
        lines.append(f"| {workload} | {run['clients']} / {run['conns']} | {number(run['total'])} | "
                     f"`{run['arguments']}` |")
    failed = [run for run in runs if run["status"] != "ok"]
    if failed:
        lines += ["", "### Failed runs", ""]
        for run in failed:
            lines.append(f"- {run['topology']} {run['workload']} {run['server']} round {run['round']}: "
                         f"{run['status']}: `{last_line(run['output'])}` (output in `{run['output']}`)")
    return lines + [""]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workdir", help="the work dir of a keel-bench compare run")
    parser.add_argument("--out", default="BENCHMARKS.md", help="the report to write (default BENCHMARKS.md)")
    options = parser.parse_args()

    machine = read_json(os.path.join(options.workdir, "machine.json"), {})
    memory = read_json(os.path.join(options.workdir, "memory.json"), {})
    clusters = read_json(os.path.join(options.workdir, "clusters.json"), {})
    runs = read_runs(options.workdir)
    if not machine and not runs:
        sys.exit(f"report.py: {options.workdir} has no machine.json and no runs.jsonl: not a keel-bench compare work dir")
    summaries = summarize(runs)

    lines = (header(machine, memory) + goals(summaries, memory, machine) + results(summaries, runs)
             + memory_section(memory) + cluster_resources(clusters) + method(machine) + appendix(runs, machine))
    with open(options.out + ".tmp", "w") as file:
        file.write("\n".join(lines).rstrip() + "\n")
    os.replace(options.out + ".tmp", options.out)


if __name__ == "__main__":
    main()
