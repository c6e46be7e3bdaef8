#!/usr/bin/env bash
# Instructions Redis executes per job in a `herojobs bench` run, counted by callgrind: a
# measure of the Redis side's cost that does not move with the machine's load (on a shared
# 2-core VM the rates of scripts/bench-ab.sh swing by 30 % from one minute to the next; this
# figure moves by about 1 %, from batch sizes that depend on timing).
#
#   scripts/redis-cost.sh BINARY... [-- extra bench flags]
#
# For each binary: one run with JOBS jobs (default 4,000; env JOBS) and one with a single
# job, each against a fresh redis-server under valgrind (nothing on disk); the per-job
# figure is the difference divided by JOBS - 1, so Redis's start-up, the bench's set-up and
# its clean-up of the circle's keys cancel out. Under callgrind Redis runs ~30x slower, so
# the bench's batches are larger than on a free-running Redis; compare binaries with each
# other, not with figures from a normal run. Needs valgrind (apt-get install valgrind).
set -euo pipefail
jobs=${JOBS:-4000}
bins=()
while [ $# -gt 0 ] && [ "$1" != -- ]; do bins+=("$1"); shift; done
[ "${1:-}" = -- ] && shift
[ ${#bins[@]} -gt 0 ] || { echo "usage: $0 BINARY... [-- bench flags]" >&2; exit 2; }
command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; exit 2; }
port=6401
ir() { # BINARY JOBS [flags]: total instructions of one run
  local bin=$1 n=$2; shift 2
  local out; out=$(mktemp /tmp/redis-cost.XXXXXX)
  valgrind --tool=callgrind --callgrind-out-file="$out" redis-server --port "$port" \
    --save "" --appendonly no --logfile /dev/null >/dev/null 2>&1 &
  local vg=$!
  for _ in $(seq 300); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  "$bin" --redis "redis://127.0.0.1:$port" bench --jobs "$n" --json "$@" >/dev/null 2>&1 ||
    echo "warning: $bin bench --jobs $n failed" >&2
  redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
  wait "$vg" || true
  callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1; exit }'
  rm -f "$out"
}
for bin in "${bins[@]}"; do
  many=$(ir "$bin" "$jobs" "$@")
  one=$(ir "$bin" 1 "$@")
  echo "$bin redis_instructions_per_job $(( (many - one) / (jobs - 1) ))"
done
