#!/usr/bin/env bash
# Benchmarks Keel side by side with the real etcd 3.4 (Debian's etcd-server) and writes BENCHMARKS.md.
#
#   bench/compare.sh [--quick] [--no-build] [--rounds N] [--out FILE] [--workdir DIR]
#
# For each topology (1 member, then 3 members on 127.0.0.1) it starts an etcd cluster and a Keel cluster
# with the same flags and fresh data dirs (both idle while the other is measured), then runs every
# workload of keel-bench against each, etcd first in odd rounds and Keel first in even rounds; the report
# takes the median of the rounds. Both servers run with their defaults, which for both means an fsync of
# the WAL before a write is acknowledged. Then the memory and size workload: a fresh single member of each
# is loaded with 1 million keys (key 32 B, value 256 B), its RSS and db file size are read, and it is
# stopped with SIGTERM and restarted, timed until it answers a linearizable get.
#
# Everything (data dirs, server logs, one JSON per run, machine.json, memory.json, clusters.json) stays
# in the work dir, by default target/bench/<date> (on the repository's disk, not tmpfs);
# bench/report.py turns it into the report.
#
#   --quick      small totals and 100k keys instead of 1M: a smoke check, not figures to quote
#   --no-build   use target/release/{keel,keel-bench} as they are (default: cargo build --release first)
#   --rounds N   rounds of every workload on every server (default 2)
#   --out FILE   the report (default BENCHMARKS.md at the repository root)
#   --workdir D  where data dirs, logs and results go (must be empty or absent)
#   --port-base P  first port of the 400 used on 127.0.0.1 (default 21000, below Linux's ephemeral range)
#
# KEEL_BIN and KEEL_BENCH_BIN, when set, name other keel and keel-bench binaries (with --no-build).
set -euo pipefail
script=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
cd "$(dirname "$0")/.."
repo=$(pwd)
command_line="bench/compare.sh${*:+ $*}"

quick=0
build=1
rounds=2
out=BENCHMARKS.md
workdir=""
port_base=21000
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --no-build) build=0 ;;
    --rounds) rounds=${2:?--rounds needs a number}; shift ;;
    --out) out=${2:?--out needs a file}; shift ;;
    --workdir) workdir=${2:?--workdir needs a directory}; shift ;;
    --port-base) port_base=${2:?--port-base needs a port}; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$script" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "compare.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || { echo "compare.sh: --rounds must be a positive number" >&2; exit 2; }
[[ "$port_base" =~ ^[0-9]+$ ]] && [ "$port_base" -ge 1024 ] && [ "$port_base" -le 65000 ] \
  || { echo "compare.sh: --port-base must be a port between 1024 and 65000" >&2; exit 2; }

etcd_bin=/usr/bin/etcd
keel_bin=${KEEL_BIN:-$repo/target/release/keel}
bench_bin=${KEEL_BENCH_BIN:-$repo/target/release/keel-bench}
export ETCDCTL_API=3

die() {
  echo "compare.sh: $*" >&2
  exit 1
}

for tool in etcdctl python3 timeout; do
  command -v "$tool" >/dev/null 2>&1 || die "needs '$tool' (etcdctl: apt-get install etcd-client)"
done
[ -x "$etcd_bin" ] || die "needs the real etcd at $etcd_bin (apt-get install etcd-server)"
if [ "$build" = 1 ]; then
  echo "== cargo build --release -p keel-server -p keel-bench"
  cargo build --release --locked -p keel-server -p keel-bench
fi
[ -x "$keel_bin" ] || die "no $keel_bin (build it, or drop --no-build)"
[ -x "$bench_bin" ] || die "no $bench_bin (build it, or drop --no-build)"

if [ -z "$workdir" ]; then
  workdir=$repo/target/bench/$(date +%Y%m%d-%H%M%S)
fi
if [ -e "$workdir" ] && [ -n "$(ls -A "$workdir" 2>/dev/null)" ]; then
  die "work dir $workdir is not empty; the servers need fresh data dirs"
fi
mkdir -p "$workdir"/{data,logs,results}
workdir=$(cd "$workdir" && pwd)
case "$out" in /*) ;; *) out=$repo/$out ;; esac
echo "== work dir $workdir (logs in $workdir/logs)"

# ---------------------------------------------------------------------------------------------------
# Small JSON helpers (python3, standard library).

# json_set FILE KEY.PATH VALUE: sets one value (parsed as JSON when it parses, else kept as a string).
json_set() {
  python3 - "$@" <<'PY'
import json, os, sys
path, key, value = sys.argv[1:4]
data = json.load(open(path)) if os.path.exists(path) else {}
try:
    value = json.loads(value)
except ValueError:
    pass
node = data
parts = key.split(".")
for part in parts[:-1]:
    node = node.setdefault(part, {})
node[parts[-1]] = value
with open(path + ".tmp", "w") as file:
    json.dump(data, file, indent=2)
os.replace(path + ".tmp", path)
PY
}

# json_line FILE key=value...: appends one JSON object as a line.
json_line() {
  python3 - "$@" <<'PY'
import json, sys
record = {}
for argument in sys.argv[2:]:
    key, value = argument.split("=", 1)
    try:
        record[key] = json.loads(value)
    except ValueError:
        record[key] = value
with open(sys.argv[1], "a") as file:
    file.write(json.dumps(record) + "\n")
PY
}

now_ns() { date +%s%N; }
ms_since() { echo $(( ($(now_ns) - $1) / 1000000 )); }

# ---------------------------------------------------------------------------------------------------
# Machine facts, and the fsync latency of the disk the data dirs are on.

fsync_probe() {  # fsync_probe KEY: 1000 x (2 KiB append + fdatasync) in the work dir, into machine.json
  python3 - "$workdir" "$workdir/machine.json" "$1" <<'PY'
import json, os, statistics, sys, time
workdir, path, key = sys.argv[1:4]
probe = os.path.join(workdir, "fsync-probe")
fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
block = os.urandom(2048)
took = []
for _ in range(1000):
    started = time.perf_counter()
    os.write(fd, block)
    os.fdatasync(fd)
    took.append((time.perf_counter() - started) * 1000)
os.close(fd)
os.unlink(probe)
took.sort()
at = lambda q: took[min(len(took) - 1, int(q * len(took)))]
data = json.load(open(path)) if os.path.exists(path) else {}
data[key] = {"count": len(took), "p50_ms": at(0.50), "p90_ms": at(0.90), "p99_ms": at(0.99),
             "max_ms": took[-1], "mean_ms": statistics.fmean(took)}
json.dump(data, open(path, "w"), indent=2)
print(f"fsync ({key}): p50 {at(0.5):.2f} ms, p99 {at(0.99):.2f} ms")
PY
}

machine_facts() {
  local fs_line
  fs_line=$(df -PT "$workdir" | awk 'NR == 2 { print $1 " " $2 " mounted on " $7 }')
  python3 - "$workdir/machine.json" "$fs_line" <<'PY'
import json, os, platform, sys
path, filesystem = sys.argv[1:3]
data = json.load(open(path)) if os.path.exists(path) else {}
model = ""
for line in open("/proc/cpuinfo"):
    if line.startswith("model name"):
        model = line.split(":", 1)[1].strip()
        break
memory_kb = 0
for line in open("/proc/meminfo"):
    if line.startswith("MemTotal:"):
        memory_kb = int(line.split()[1])
data.update({"cores": os.cpu_count(), "cpu_model": model, "memory_kb": memory_kb,
             "kernel": platform.release(), "filesystem": filesystem})
json.dump(data, open(path, "w"), indent=2)
PY
  local machine=$workdir/machine.json
  json_set "$machine" command "$command_line"
  json_set "$machine" started "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  json_set "$machine" quick "$quick"
  json_set "$machine" rounds "$rounds"
  json_set "$machine" workdir "$workdir"
  json_set "$machine" etcd_version "$("$etcd_bin" --version 2>&1 | head -n1)"
  json_set "$machine" etcdctl_version "$(etcdctl version 2>&1 | head -n1)"
  json_set "$machine" keel_version "$("$keel_bin" --version 2>&1 | head -n1)"
  json_set "$machine" keel_bench_version "$("$bench_bin" --version 2>&1 | head -n1)"
  json_set "$machine" keel_binary "$keel_bin"
  json_set "$machine" keel_bench_binary "$bench_bin"
  json_set "$machine" keel_binary_built "$(date -u -r "$keel_bin" +%Y-%m-%dT%H:%M:%SZ)"
  json_set "$machine" keel_bench_binary_built "$(date -u -r "$bench_bin" +%Y-%m-%dT%H:%M:%SZ)"
  local commit dirty=""
  commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
  [ -z "$(git status --porcelain 2>/dev/null)" ] || dirty=" (with uncommitted changes)"
  json_set "$machine" git_commit "$commit$dirty"
}

# ---------------------------------------------------------------------------------------------------
# Clusters: started by us, stopped by PID only.

declare -A cluster_pids=()       # cluster -> "pid pid pid"
declare -A cluster_endpoints=()  # cluster -> "127.0.0.1:P,127.0.0.1:P"
declare -A cluster_dirs=()       # cluster -> "dir dir dir"
declare -A cluster_logs=()       # cluster -> "log log log"
declare -A cluster_kind=()       # cluster -> etcd | keel
all_pids=()

alive() {  # a running (not zombie) process
  [ -r "/proc/$1/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}

port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# stop_pid PID: SIGTERM, then SIGKILL after 30 s; sets stopped_ms (how long the process took to exit).
# Not to be called in a $(...) subshell: the servers are children of the main shell, which reaps them.
stopped_ms=0
stopped_by=SIGTERM
stop_pid() {
  local pid=$1 started waited=0
  started=$(now_ns)
  stopped_by=SIGTERM
  if alive "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    while alive "$pid" && [ $waited -lt 3000 ]; do
      sleep 0.01
      waited=$((waited + 1))
    done
    if alive "$pid"; then
      # SIGQUIT first: a Go program (etcd) writes every goroutine's stack to its log, showing where it hung.
      echo "compare.sh: pid $pid ignored SIGTERM for 30 s; SIGQUIT (a Go stack dump goes to its log), then SIGKILL" >&2
      kill -QUIT "$pid" 2>/dev/null || true
      sleep 2
      kill -KILL "$pid" 2>/dev/null || true
      stopped_by="SIGKILL (SIGTERM ignored for 30 s)"
      while alive "$pid"; do sleep 0.01; done
    fi
  fi
  wait "$pid" 2>/dev/null || true
  stopped_ms=$(ms_since "$started")
}

cleanup() {
  local pid
  for pid in "${all_pids[@]}"; do
    if alive "$pid"; then
      stop_pid "$pid"
    fi
  done
}
trap cleanup EXIT
trap 'echo "compare.sh: interrupted" >&2; exit 130' INT TERM

show_logs() {  # show_logs CLUSTER
  local log
  for log in ${cluster_logs[$1]}; do
    echo "---- last lines of $log" >&2
    tail -n 15 "$log" >&2 || true
  done
}

# launch_member CLUSTER INDEX: starts member INDEX of CLUSTER (data dir and flags already decided) and
# sets launched_pid. Not to be called in a $(...) subshell: the server must be the main shell's child.
declare -A member_flags=()  # "cluster/index" -> flags
launched_pid=0
launch_member() {
  local cluster=$1 index=$2 binary log
  if [ "${cluster_kind[$cluster]}" = etcd ]; then binary=$etcd_bin; else binary=$keel_bin; fi
  log=$workdir/logs/$cluster-m$index.log
  # shellcheck disable=SC2086
  echo "== $(date -u +%H:%M:%S) start: $binary ${member_flags[$cluster/$index]}" >>"$log"
  # shellcheck disable=SC2086
  "$binary" ${member_flags[$cluster/$index]} >>"$log" 2>&1 &
  launched_pid=$!
  all_pids+=("$launched_pid")
}

# start_cluster CLUSTER KIND MEMBERS SLOT: fresh data dirs; ports port_base + 100*SLOT + 10*i (+1 peer).
start_cluster() {
  local cluster=$1 kind=$2 members=$3 slot=$4 i client peer initial="" endpoints="" dirs="" logs=""
  cluster_kind[$cluster]=$kind
  for ((i = 1; i <= members; i++)); do
    peer=$((port_base + 100 * slot + 10 * i + 1))
    initial+="${initial:+,}m$i=http://127.0.0.1:$peer"
  done
  for ((i = 1; i <= members; i++)); do
    client=$((port_base + 100 * slot + 10 * i))
    peer=$((client + 1))
    for port in $client $peer; do
      port_in_use "$port" && die "port $port on 127.0.0.1 is already in use (choose another --port-base)"
    done
    local dir=$workdir/data/$cluster/m$i
    mkdir -p "$(dirname "$dir")"
    member_flags[$cluster/$i]="--name m$i --data-dir $dir
      --listen-client-urls http://127.0.0.1:$client --advertise-client-urls http://127.0.0.1:$client
      --listen-peer-urls http://127.0.0.1:$peer --initial-advertise-peer-urls http://127.0.0.1:$peer
      --initial-cluster $initial --initial-cluster-state new --initial-cluster-token bench-$cluster"
    endpoints+="${endpoints:+,}127.0.0.1:$client"
    dirs+=" $dir"
    logs+=" $workdir/logs/$cluster-m$i.log"
  done
  cluster_endpoints[$cluster]=$endpoints
  cluster_dirs[$cluster]=$dirs
  cluster_logs[$cluster]=$logs
  local pids=""
  for ((i = 1; i <= members; i++)); do
    launch_member "$cluster" "$i"
    pids+=" $launched_pid"
  done
  cluster_pids[$cluster]=$pids
  echo "== started $cluster ($kind, $members member(s), client endpoints $endpoints, pids$pids)"
}

# cluster_alive CLUSTER: every member still running.
cluster_alive() {
  local pid
  for pid in ${cluster_pids[$1]}; do
    alive "$pid" || return 1
  done
}

# wait_ready CLUSTER: every member answers `etcdctl endpoint health` within 60 s, or the run stops.
wait_ready() {
  local cluster=$1 deadline=$((SECONDS + 60))
  while true; do
    if ! cluster_alive "$cluster"; then
      show_logs "$cluster"
      die "a member of $cluster exited while starting; logs: ${cluster_logs[$cluster]}"
    fi
    if etcdctl --endpoints="${cluster_endpoints[$cluster]}" --dial-timeout=1s --command-timeout=2s \
      endpoint health >/dev/null 2>&1; then
      return 0
    fi
    if [ $SECONDS -ge $deadline ]; then
      show_logs "$cluster"
      die "$cluster did not become healthy within 60 s; logs: ${cluster_logs[$cluster]}"
    fi
    sleep 0.2
  done
}

# leader_name CLUSTER: prints the name (m1, m2, ...) of the member the cluster's members call leader.
leader_name() {
  etcdctl --endpoints="${cluster_endpoints[$1]}" --dial-timeout=2s --command-timeout=5s endpoint status -w json \
    2>/dev/null | python3 -c '
import json, sys
statuses = json.load(sys.stdin)
ids = [entry["Status"]["header"]["member_id"] for entry in statuses]
leaders = {entry["Status"]["leader"] for entry in statuses}
leader = leaders.pop() if len(leaders) == 1 else None
print(f"m{ids.index(leader) + 1}" if leader in ids else "none")' 2>/dev/null || echo none
}

# leader_to_first CLUSTER: moves Raft leadership to m1, the first endpoint (the one that a single
# connection uses), so that the same client traffic meets the same roles in both servers' clusters.
leader_to_first() {
  local cluster=$1 leader first_id deadline=$((SECONDS + 30))
  [ "$(wc -w <<<"${cluster_pids[$cluster]}")" -gt 1 ] || return 0
  while true; do
    leader=$(leader_name "$cluster")
    [ "$leader" = m1 ] && break
    first_id=$(etcdctl --endpoints="${cluster_endpoints[$cluster]%%,*}" endpoint status -w json 2>/dev/null \
      | python3 -c 'import json, sys; print(format(json.load(sys.stdin)[0]["Status"]["header"]["member_id"], "x"))' \
      2>/dev/null || true)
    if [ -n "$first_id" ] && [ "$leader" != none ]; then
      etcdctl --endpoints="${cluster_endpoints[$cluster]}" move-leader "$first_id" >/dev/null 2>&1 || true
    fi
    if [ $SECONDS -ge $deadline ]; then
      echo "compare.sh: could not move $cluster's leadership to m1 (leader: $leader); going on" >&2
      return 0
    fi
    sleep 0.5
  done
  echo "== $cluster: leader is m1"
}

stop_cluster() {
  local pid
  for pid in ${cluster_pids[$1]}; do
    stop_pid "$pid"
  done
  echo "== stopped $1"
}

status_kb() {  # status_kb PID FIELD: a /proc/PID/status field in kB (0 when gone)
  awk -v field="$2:" '$1 == field { print $2; found = 1 } END { if (!found) print 0 }' "/proc/$1/status" 2>/dev/null || echo 0
}

file_size() {  # bytes, 0 when absent
  stat -c %s "$1" 2>/dev/null || echo 0
}

dir_bytes_on_disk() {  # allocated bytes of everything under a dir
  du -s -B1 "$1" 2>/dev/null | awk '{ print $1 }' || echo 0
}

# record_cluster TOPOLOGY CLUSTER: peak and current RSS of each member, db file and data dir sizes.
record_cluster() {
  local topology=$1 cluster=$2 kind=${cluster_kind[$2]} i=0 pid hwm=() rss=() db=() disk=() dir
  local -a dirs
  read -r -a dirs <<<"${cluster_dirs[$cluster]}"
  for pid in ${cluster_pids[$cluster]}; do
    dir=${dirs[$i]}
    hwm+=("$(status_kb "$pid" VmHWM)")
    rss+=("$(status_kb "$pid" VmRSS)")
    db+=("$(file_size "$dir/member/snap/db")")
    disk+=("$(dir_bytes_on_disk "$dir")")
    i=$((i + 1))
  done
  local key="$topology.$kind" file=$workdir/clusters.json
  json_set "$file" "$key.leader_at_end" "$(leader_name "$cluster")"
  json_set "$file" "$key.vm_hwm_kb" "[$(IFS=,; echo "${hwm[*]}")]"
  json_set "$file" "$key.vm_rss_kb" "[$(IFS=,; echo "${rss[*]}")]"
  json_set "$file" "$key.db_bytes" "[$(IFS=,; echo "${db[*]}")]"
  json_set "$file" "$key.data_dir_bytes" "[$(IFS=,; echo "${disk[*]}")]"
  json_set "$file" "$key.alive" "$(cluster_alive "$cluster" && echo true || echo false)"
  echo "== $cluster: VmHWM kB ${hwm[*]}, db bytes ${db[*]}"
}

# ---------------------------------------------------------------------------------------------------
# Workloads: name | clients | conns | total | quick total | keel-bench workload and options.
# Values are 256 B everywhere, keys 16 B where the workload takes a key size (range keys are
# keel-bench's `range/NNNNNNNN`, 14 B).

watch_puts=2000
[ "$quick" = 1 ] && watch_puts=200
workloads=(
  "put-1c|1|1|2000|500|put --key-size 16 --val-size 256 --key-space-size 100000"
  "put-16c|16|1|20000|5000|put --key-size 16 --val-size 256 --key-space-size 100000"
  "put-64c|64|4|40000|10000|put --key-size 16 --val-size 256 --key-space-size 100000"
  "range-l-64c|64|4|40000|10000|range --consistency l --prefix-keys 1 --val-size 256"
  "range-s-64c|64|4|40000|10000|range --consistency s --prefix-keys 1 --val-size 256"
  "range-l-prefix100-16c|16|1|10000|2000|range --consistency l --prefix-keys 100 --val-size 256"
  "txn-put-64c|64|4|20000|5000|txn-put --txn-ops 1 --key-size 16 --val-size 256 --key-space-size 100000"
  "watch-1000w|1|1|$watch_puts|$watch_puts|watch --watchers 1000 --streams 10 --puts $watch_puts --val-size 256"
  "lease-keepalive-64c|64|4|40000|10000|lease-keepalive"
  "mixed-r90-64c|64|4|40000|10000|mixed --read-ratio 0.9 --key-space-size 10000 --key-size 16 --val-size 256 --consistency l"
)
bench_timeout=900
[ "$quick" = 1 ] && bench_timeout=180
settle=1
[ "$quick" = 1 ] && settle=0.3

# run_bench TOPOLOGY CLUSTER WORKLOAD-LINE ROUND POSITION: one keel-bench run, recorded in runs.jsonl
# whatever happens; a failure is reported, never fatal.
run_bench() {
  local topology=$1 cluster=$2 line=$3 round=$4 position=$5
  local name clients conns total quick_total arguments
  IFS='|' read -r name clients conns total quick_total arguments <<<"$line"
  [ "$quick" = 1 ] && total=$quick_total
  local kind=${cluster_kind[$cluster]}
  local base=$workdir/results/$topology/$name.$kind.r$round
  mkdir -p "$(dirname "$base")"
  local status=ok rc=0 started load
  load=$(cut -d' ' -f1 /proc/loadavg)
  started=$(now_ns)
  if ! cluster_alive "$cluster"; then
    status="server down"
    rc=-1
    echo "server $cluster is not running (logs: ${cluster_logs[$cluster]})" >"$base.out"
  else
    # shellcheck disable=SC2086
    timeout --kill-after=10 "$bench_timeout" "$bench_bin" --endpoints "${cluster_endpoints[$cluster]}" \
      --conns "$conns" --clients "$clients" --total "$total" --json "$base.json" \
      --label "$kind $topology $name r$round" --no-progress $arguments >"$base.out" 2>&1 || rc=$?
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
      status="timed out after ${bench_timeout}s"
    elif [ $rc -ne 0 ]; then
      status="failed (exit $rc)"
    elif [ ! -s "$base.json" ]; then
      status="no JSON written"
    fi
    if ! cluster_alive "$cluster"; then
      status="server died"
    fi
  fi
  local took_ms
  took_ms=$(ms_since "$started")
  json_line "$workdir/runs.jsonl" topology="$topology" workload="$name" server="$kind" round="$round" \
    position="$position" clients="$clients" conns="$conns" total="$total" arguments="$arguments" \
    status="$status" exit="$rc" json="$base.json" output="$base.out" wall_ms="$took_ms" loadavg_before="$load"
  if [ "$status" = ok ]; then
    echo "   $(printf '%-22s %-4s r%s' "$name" "$kind" "$round"): $(grep -m1 -iE 'throughput|/s' "$base.out" || tail -n1 "$base.out")"
  else
    echo "   $(printf '%-22s %-4s r%s' "$name" "$kind" "$round"): $status; output in $base.out" >&2
    tail -n 5 "$base.out" | sed 's/^/      /' >&2
  fi
  sleep "$settle"
}

# run_topology TOPOLOGY MEMBERS: both clusters up, every workload in alternation for every round.
run_topology() {
  local topology=$1 members=$2 round line
  local etcd_cluster=etcd-$topology keel_cluster=keel-$topology
  start_cluster "$etcd_cluster" etcd "$members" $((members == 1 ? 0 : 2))
  start_cluster "$keel_cluster" keel "$members" $((members == 1 ? 1 : 3))
  wait_ready "$etcd_cluster"
  wait_ready "$keel_cluster"
  leader_to_first "$etcd_cluster"
  leader_to_first "$keel_cluster"
  for ((round = 1; round <= rounds; round++)); do
    echo "== $topology, round $round of $rounds"
    for line in "${workloads[@]}"; do
      if ((round % 2 == 1)); then
        run_bench "$topology" "$etcd_cluster" "$line" "$round" 1
        run_bench "$topology" "$keel_cluster" "$line" "$round" 2
      else
        run_bench "$topology" "$keel_cluster" "$line" "$round" 1
        run_bench "$topology" "$etcd_cluster" "$line" "$round" 2
      fi
    done
  done
  sleep 1  # the backends' batch commit (100 ms in both) reaches the db file
  record_cluster "$topology" "$etcd_cluster"
  record_cluster "$topology" "$keel_cluster"
  stop_cluster "$etcd_cluster"
  stop_cluster "$keel_cluster"
}

# ---------------------------------------------------------------------------------------------------
# Memory and size: load N keys into a fresh single member, then RSS, db size, stop, restart.

# first_linearizable_get CLUSTER: waits for the client port, then retries a linearizable get.
first_linearizable_get() {
  local cluster=$1 endpoint port deadline=$((SECONDS + 300))
  endpoint=${cluster_endpoints[$cluster]}
  port=${endpoint##*:}
  while ! port_in_use "$port"; do
    cluster_alive "$cluster" || return 1
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.005
  done
  until etcdctl --endpoints="$endpoint" --dial-timeout=5s --command-timeout=60s \
    get --consistency=l restart-probe >/dev/null 2>&1; do
    cluster_alive "$cluster" || return 1
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.01
  done
}

memory_workload() {
  local kind=$1 keys=$2 slot=$3 cluster=mem-$1
  local file=$workdir/memory.json base=$workdir/results/memory/load.$kind
  mkdir -p "$workdir/results/memory"
  start_cluster "$cluster" "$kind" 1 "$slot"
  wait_ready "$cluster"
  local pid dir
  pid=$(echo ${cluster_pids[$cluster]})
  dir=$(echo ${cluster_dirs[$cluster]})
  json_set "$file" "$kind.vm_rss_kb_idle" "$(status_kb "$pid" VmRSS)"

  echo "== $cluster: loading $keys keys (key 32 B, value 256 B, 64 clients / 4 conns)"
  local rc=0 status=ok
  timeout --kill-after=10 3600 "$bench_bin" --endpoints "${cluster_endpoints[$cluster]}" --conns 4 --clients 64 \
    --total "$keys" --json "$base.json" --label "$kind load $keys keys" --no-progress \
    put --sequential-keys --key-size 32 --val-size 256 --key-space-size "$keys" >"$base.out" 2>&1 || rc=$?
  [ $rc -eq 0 ] && [ -s "$base.json" ] || status="failed (exit $rc)"
  cluster_alive "$cluster" || status="server died"
  json_set "$file" "$kind.load_status" "$status"
  json_set "$file" "$kind.load_json" "$base.json"
  json_set "$file" "$kind.load_output" "$base.out"
  if [ "$status" != ok ]; then
    echo "   load on $kind: $status; output in $base.out, logs ${cluster_logs[$cluster]}" >&2
    tail -n 5 "$base.out" | sed 's/^/      /' >&2
    cluster_alive "$cluster" || { stop_cluster "$cluster"; return 0; }
  fi
  sleep 2  # the backends' batch commit reaches the file; RSS settles
  json_set "$file" "$kind.vm_rss_kb_after_load" "$(status_kb "$pid" VmRSS)"
  json_set "$file" "$kind.vm_hwm_kb_load" "$(status_kb "$pid" VmHWM)"
  json_set "$file" "$kind.db_bytes_after_load" "$(file_size "$dir/member/snap/db")"

  stop_pid "$pid"
  json_set "$file" "$kind.stop_ms" "$stopped_ms"
  json_set "$file" "$kind.stopped_by" "$stopped_by"
  json_set "$file" "$kind.db_bytes_after_stop" "$(file_size "$dir/member/snap/db")"
  json_set "$file" "$kind.db_bytes_on_disk_after_stop" "$(dir_bytes_on_disk "$dir/member/snap/db")"
  json_set "$file" "$kind.data_dir_bytes_on_disk" "$(dir_bytes_on_disk "$dir")"
  json_set "$file" "$kind.wal_bytes_on_disk" "$(dir_bytes_on_disk "$dir/member/wal")"

  echo "== $cluster: restart after $keys keys"
  local started restart_ms
  started=$(now_ns)
  launch_member "$cluster" 1
  pid=$launched_pid
  cluster_pids[$cluster]=" $pid"
  if first_linearizable_get "$cluster"; then
    restart_ms=$(ms_since "$started")
    json_set "$file" "$kind.restart_ms" "$restart_ms"
    json_set "$file" "$kind.vm_rss_kb_after_restart" "$(status_kb "$pid" VmRSS)"
    # What one etcdctl get costs against a running server: the probe's own share of restart_ms.
    started=$(now_ns)
    etcdctl --endpoints="${cluster_endpoints[$cluster]}" get --consistency=l restart-probe >/dev/null 2>&1 || true
    json_set "$file" "$kind.probe_ms" "$(ms_since "$started")"
    echo "   restarted in $restart_ms ms"
    local count
    # etcdctl 3.4 has no --count-only; the response's count is the whole range's even with --limit=1.
    count=$(etcdctl --endpoints="${cluster_endpoints[$cluster]}" --command-timeout=120s get --from-key '' \
      --keys-only --limit=1 -w json 2>/dev/null \
      | python3 -c 'import json,sys; print(json.load(sys.stdin).get("count", 0))' 2>/dev/null || echo '"count failed"')
    json_set "$file" "$kind.keys_after_restart" "$count"
    sleep 2
    json_set "$file" "$kind.vm_rss_kb_after_restart_settled" "$(status_kb "$pid" VmRSS)"
    json_set "$file" "$kind.vm_hwm_kb_restart" "$(status_kb "$pid" VmHWM)"
  else
    json_set "$file" "$kind.restart_status" "did not answer a linearizable get within 300 s"
    show_logs "$cluster"
  fi
  stop_cluster "$cluster"
}

# ---------------------------------------------------------------------------------------------------

started_at=$SECONDS
machine_facts
fsync_probe fsync_before
run_topology 1-member 1
run_topology 3-member 3
memory_keys=1000000
[ "$quick" = 1 ] && memory_keys=100000
json_set "$workdir/memory.json" keys "$memory_keys"
memory_workload etcd "$memory_keys" 0
memory_workload keel "$memory_keys" 1
fsync_probe fsync_after
json_set "$workdir/machine.json" finished "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
json_set "$workdir/machine.json" wall_seconds "$((SECONDS - started_at))"

python3 "$repo/bench/report.py" "$workdir" --out "$out"
echo "== wrote $out (raw results in $workdir)"
