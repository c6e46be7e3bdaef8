#!/usr/bin/env bash
# herojobs against BullMQ, Celery and RQ on the same private redis-server, under one
# protocol (herojobs bench's): N no-op jobs enqueued one call at a time, drained by 8
# workers, then sequential submit -> result round trips. Alternates the systems RUNS times
# so that all see the same machine. Not part of CI: it installs the others from npm and pip.
#
#   scripts/compare/run.sh [RUNS] [N_FAST] [N_SLOW]
#
# N_FAST jobs for herojobs and BullMQ, N_SLOW for Celery and RQ (they drain ~1k/s).
set -euo pipefail
runs=${1:-3}; n_fast=${2:-20000}; n_slow=${3:-5000}
here=$(cd "$(dirname "$0")" && pwd); root=$(cd "$here/../.." && pwd)
port=6395
export REDIS_PORT=$port
work=${COMPARE_DIR:-/tmp/herojobs-compare}
mkdir -p "$work"
if [ ! -d "$work/node_modules/bullmq" ]; then
  (cd "$work" && npm init -y >/dev/null && npm install --silent bullmq ioredis)
fi
python3 -c "import rq, celery, packaging" 2>/dev/null || pip3 install --quiet rq celery redis packaging
cp "$here/bullmq_bench.js" "$work/"
(cd "$root" && cargo build --release --quiet --bin herojobs)
redis-server --port $port --save "" --appendonly no --daemonize yes >/dev/null
trap 'redis-cli -p $port shutdown nosave >/dev/null 2>&1 || true' EXIT
until redis-cli -p $port ping >/dev/null 2>&1; do sleep 0.1; done
for _ in $(seq "$runs"); do
  redis-cli -p $port flushall >/dev/null
  "$root/target/release/herojobs" bench --redis "redis://127.0.0.1:$port" --jobs "$n_fast" --json
  redis-cli -p $port flushall >/dev/null
  node "$work/bullmq_bench.js" "$n_fast" 8 500
  redis-cli -p $port flushall >/dev/null
  python3 "$here/celery_bench.py" "$n_slow" 8 200
  redis-cli -p $port flushall >/dev/null
  python3 "$here/rq_bench.py" "$n_slow" 8 200
done
