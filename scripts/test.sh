#!/usr/bin/env bash
# Runs every test of Keel: unit, property, and black-box tests against the real binaries.
# Installs what the tests need when it is missing, from Debian's packages:
#   etcd-client        the real etcdctl 3.4 the compatibility tests drive
#   etcd-server        the real etcd, the reference the differential tests compare Keel with
#   protobuf-compiler  protoc, which the etcd-client crate (a test client) needs to build
#   libprotobuf-dev    the well-known types (google/protobuf/descriptor.proto, ...) protoc imports for it;
#                      a Recommends of protobuf-compiler, which --no-install-recommends would skip
#   prometheus         a real Prometheus (and promtool) to scrape a cluster and check the shipped
#                      dashboard queries and alert rules
#   iproute2, iptables network namespaces and partitions for the fault-injection suite (crates/chaos)
# Keel itself builds without protoc. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v etcdctl >/dev/null 2>&1 || missing+=(etcd-client)
[ -x /usr/bin/etcd ] || missing+=(etcd-server)
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
[ -f /usr/include/google/protobuf/descriptor.proto ] || missing+=(libprotobuf-dev)
command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v iptables >/dev/null 2>&1 || missing+=(iptables)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing test dependencies: ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# One build, run once: incremental-compilation caches would only take disk (about 2 GB).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
# The gate: one format (rustfmt.toml) and no clippy warning, before any test runs.
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
exec cargo test --workspace --locked "$@"
