#!/usr/bin/env bash
# Builds what the benchmark harness needs and runs it (bench/cmd/benchrun);
# `make bench` and `make bench-quick` call it. Arguments go to benchrun
# (run `bin/bench/benchrun -h` for them), e.g.
#
#   bench/bench.sh -quick
#   bench/bench.sh -rounds 5 -duration 15s -docs docs/benchmarks.md
#
# Everything runs on 127.0.0.1. wrk and haproxy come from Debian: when
# missing they are installed with apt-get, which is said before it happens.
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}

if [ "$(grep -c '^processor' /proc/cpuinfo)" -lt 2 ]; then
	echo "bench: needs at least 2 CPUs (the gateway on core 0, load and backends on core 1)" >&2
	exit 1
fi

missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v haproxy >/dev/null || missing+=(haproxy)
command -v taskset >/dev/null || missing+=(util-linux)
if [ ${#missing[@]} -gt 0 ]; then
	echo "bench: installing ${missing[*]} from Debian with apt-get"
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo=sudo
	$sudo apt-get update -qq
	$sudo apt-get install -y -qq "${missing[@]}"
fi

echo "bench: building the binaries"
$GO build -o bin/ ./cmd/catalog ./cmd/orders ./cmd/gateway ./cmd/devissuer
$GO build -o bin/bench/ ./bench/cmd/benchbackend ./bench/cmd/benchgateway ./bench/cmd/benchrun
$GO -C tools/ghz build -o ../../bin/ghz github.com/bojand/ghz/cmd/ghz

# benchrun runs on the load core, so its children (Consul, the token
# issuer) stay off the gateway's core; it pins every other process itself.
exec taskset -c 1 bin/bench/benchrun -bin bin -bench-bin bin/bench "$@"
