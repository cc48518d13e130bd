#!/usr/bin/env bash
# bench/defrag.sh: defrag on the same data shape for etcd and Keel: 300 keys x 2 generations of 1 MiB values, compact at
# the last revision, then defrag while readers (linearizable) and a writer run; reports defrag time,
# file sizes and the slowest read and write seen during the defrag.
# Needs release builds (cargo build --release -p keel-server -p keel-bench) and Debian's etcd-server and etcd-client.
set -u
repo=$(cd "$(dirname "$0")/.." && pwd)
B=$repo/target/release/keel-bench
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export ETCDCTL_API=3
run() {
  name=$1; bin=$2; port=$3; dir=$work/$name
  rm -rf $dir; mkdir -p $dir
  $bin --name n --data-dir $dir/data --listen-client-urls http://127.0.0.1:$port --advertise-client-urls http://127.0.0.1:$port \
    --listen-peer-urls http://127.0.0.1:$((port+1)) --initial-advertise-peer-urls http://127.0.0.1:$((port+1)) \
    --initial-cluster n=http://127.0.0.1:$((port+1)) --quota-backend-bytes 8589934592 --snapshot-count 1000 > $dir/log 2>&1 &
  pid=$!
  sleep 2
  E=127.0.0.1:$port
  $B --endpoints $E --no-progress --clients 4 --total 600 put --key-size 3 --val-size 1048576 --key-space-size 300 --sequential-keys >/dev/null
  rev=$(etcdctl --endpoints=$E endpoint status -w json | python3 -c "import json,sys; print(json.load(sys.stdin)[0]['Status']['header']['revision'])")
  etcdctl --endpoints=$E compact $rev --physical >/dev/null
  before=$(etcdctl --endpoints=$E endpoint status -w json | python3 -c "import json,sys; s=json.load(sys.stdin)[0]['Status']; print(s['dbSize'])")
  $B --endpoints $E --no-progress --clients 4 --total 4000 --json $dir/reads.json range --consistency l >/dev/null &
  rpid=$!
  $B --endpoints $E --no-progress --clients 1 --total 800 --json $dir/writes.json put --key-size 8 --val-size 64 --key-space-size 1000 >/dev/null &
  wpid=$!
  sleep 0.5
  start=$(date +%s.%N)
  etcdctl --endpoints=$E defrag --command-timeout 120s >/dev/null
  end=$(date +%s.%N)
  wait $rpid $wpid
  after=$(etcdctl --endpoints=$E endpoint status -w json | python3 -c "import json,sys; s=json.load(sys.stdin)[0]['Status']; print(s['dbSize'])")
  python3 - "$name" "$before" "$after" "$start" "$end" $dir <<'PY'
import json, sys
name, before, after, start, end, d = sys.argv[1:]
reads = json.load(open(d + "/reads.json")); writes = json.load(open(d + "/writes.json"))
took = float(end) - float(start)
print(f"{name}: defrag {took:.2f}s for {int(before)/2**30:.2f} GiB ({took/(int(before)/2**30):.2f} s/GiB), file {int(before)>>20} -> {int(after)>>20} MiB; "
      f"slowest read {reads['latency_ms']['max']:.1f} ms (p99 {reads['latency_ms']['p99']:.1f}, errors {reads['errors']}), "
      f"slowest write {writes['latency_ms']['max']:.1f} ms (errors {writes['errors']}); reads spanned {reads['seconds']:.1f}s, writes {writes['seconds']:.1f}s")
PY
  kill $pid; wait $pid 2>/dev/null
}
run etcd /usr/bin/etcd 45379
run keel $repo/target/release/keel 46379
