#!/usr/bin/env bash
# Instructions the bench process itself executes per job (submit, engine, OurDB, the Redis
# client), counted by callgrind: the client side's cost, which the machine's load does not
# move (scripts/redis-cost.sh counts the Redis side).
#
#   scripts/client-cost.sh BINARY... [-- extra bench flags]
#
# For each binary: one bench of JOBS jobs (default 2,000; env JOBS) under valgrind against a
# fresh redis-server (port 6403, nothing on disk), no sequential round trips; prints the
# process's total instructions divided by JOBS (set-up and clean-up included: compare
# binaries with each other at the same JOBS). Needs valgrind (apt-get install valgrind).
set -euo pipefail
jobs=${JOBS:-2000}
bins=()
while [ $# -gt 0 ] && [ "$1" != -- ]; do bins+=("$1"); shift; done
[ "${1:-}" = -- ] && shift
[ ${#bins[@]} -gt 0 ] || { echo "usage: $0 BINARY... [-- bench flags]" >&2; exit 2; }
command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; exit 2; }
port=6403
for bin in "${bins[@]}"; do
  redis-server --port "$port" --save "" --appendonly no --daemonize yes --logfile /dev/null >/dev/null
  for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  base=$(mktemp -d /tmp/client-cost.XXXXXX)
  out=$(mktemp /tmp/client-cost.cg.XXXXXX)
  valgrind --tool=callgrind --callgrind-out-file="$out" "$bin" --redis "redis://127.0.0.1:$port" \
    --base "$base" bench --jobs "$jobs" --roundtrips 0 --json "$@" >/dev/null 2>&1 ||
    echo "warning: $bin bench failed" >&2
  redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
  total=$(callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ && !t { gsub(",", "", $1); t = $1 } END { print t }')
  echo "$bin client_instructions_per_job $(( total / jobs ))"
  rm -rf "$base" "$out"
done
