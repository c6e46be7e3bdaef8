#!/usr/bin/env bash
# Compares two herojobs binaries on this machine, alternating runs so that both see the
# same noise (on a shared VM the same binary can differ 2x from one minute to the next).
#
#   scripts/bench-ab.sh OLD_BINARY NEW_BINARY [RUNS] [JOBS] [-- extra bench flags]
#
# Every run gets a fresh private redis-server (port 6394, nothing on disk), so neither
# binary inherits the other's keys or a warm dictionary. Per run it prints enqueue/s,
# drain/s, the round trip p50, and the CPU seconds of the bench process and of Redis (user
# + system): on a shared machine the CPU figures move less than the rates, and say which
# side got more expensive. Build the old binary from a worktree, e.g.:
#   git worktree add /tmp/old <commit> && (cd /tmp/old && CARGO_TARGET_DIR=/tmp/oldtarget \
#     cargo build --release --bin herojobs)
set -euo pipefail
old=${1:?old binary}; new=${2:?new binary}
runs=${3:-5}; jobs=${4:-20000}
shift $(($# < 4 ? $# : 4))
[ "${1:-}" = -- ] && shift
port=6394
redis_cpu() {
  redis-cli -p "$port" info cpu | tr -d '\r' |
    awk -F: '/^used_cpu_(user|sys):/ { s += $2 } END { printf "%.2f", s }'
}
for _ in $(seq "$runs"); do
  for which in old new; do
    bin=$old; [ "$which" = new ] && bin=$new
    redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
    redis-server --port "$port" --save "" --appendonly no --daemonize yes \
      --logfile /tmp/bench-ab-redis.log >/dev/null
    for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
    before=$(redis_cpu)
    out=$(/usr/bin/time -f 'cpu %U %S' "$bin" --redis "redis://127.0.0.1:$port" bench \
      --jobs "$jobs" --json "$@" 2>&1 >/tmp/bench-ab.json | grep '^cpu' || true)
    after=$(redis_cpu)
    redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
    python3 - "$which" "$out" "$before" "$after" <<'PY'
import json, sys
which, cpu, before, after = sys.argv[1:5]
d = json.load(open('/tmp/bench-ab.json'))
_, user, sys_ = cpu.split()
print(f"{which} enqueue/s {d['enqueue_per_s']:.0f} drain/s {d['drain_per_s']:.0f} "
      f"p50_ms {d['roundtrip_p50_ms']} bench_cpu_s {float(user) + float(sys_):.2f} "
      f"redis_cpu_s {float(after) - float(before):.2f}")
PY
  done
done
