#!/usr/bin/env bash
# Compares two herojobs binaries on this machine, alternating runs so that both see the
# same noise (on a shared VM the same binary can differ 2x from one minute to the next).
#
#   scripts/bench-ab.sh OLD_BINARY NEW_BINARY [RUNS] [REDIS_URL] [JOBS]
#
# Build the old one from a worktree, e.g.:
#   git worktree add /tmp/old <commit> && (cd /tmp/old && CARGO_TARGET_DIR=/tmp/oldtarget \
#     cargo build --release --bin herojobs)
# and use a private redis-server (redis-server --port 6394 --save "" --appendonly no).
set -euo pipefail
old=${1:?old binary}; new=${2:?new binary}
runs=${3:-5}; url=${4:-redis://127.0.0.1:6394}; jobs=${5:-20000}
for _ in $(seq "$runs"); do
  for which in old new; do
    bin=$old; [ "$which" = new ] && bin=$new
    "$bin" bench --redis "$url" --jobs "$jobs" --json 2>/dev/null |
      python3 -c "import json,sys; d=json.load(sys.stdin); print('$which', 'drain/s', d['drain_per_s'], 'p50 ms', d['roundtrip_p50_ms'])"
  done
done | sort -k1,1 -k3,3n
