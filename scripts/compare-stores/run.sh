#!/usr/bin/env bash
# Runs every workload on every store, one fresh process per measurement, stores alternated
# (the starting store rotates each round), ROUNDS times; then prints the markdown table of
# medians (min–max). See README.md beside this script.
#
#   scripts/compare-stores/run.sh [ROUNDS]          (default 3)
#
# Environment (all optional):
#   CARGO_TARGET_DIR     build directory (default /work/target-compare, outside the repo)
#   COMPARE_DATA         parent of the fresh database directories and of the results
#                        (default /work/compare-data; keep it on the filesystem under test)
#   COMPARE_OUT          results file (default $COMPARE_DATA/results-<time>.jsonl)
#   COMPARE_WORKLOADS    workloads to run (default: all eight, in the table's order)
#   COMPARE_STORES       stores to run (default: ourdb fjall lmdb redb sled)
#   COMPARE_ARGS         extra arguments for every measurement (e.g. "--n 20000" for a smoke run)
#   COMPARE_VARIANTS     1 (default): also LMDB and redb with one read txn per thread on the
#                        get workloads (a separate table row); 0: skip
#   COMPARE_QUIET_MAX    seconds to wait, before each measurement, for the other processes on
#                        the machine to use < COMPARE_QUIET_BUSY of the CPUs (default 60, 0: don't)
#   COMPARE_QUIET_BUSY   that threshold as a fraction of all CPUs (default 0.25)
set -euo pipefail

ROUNDS=${1:-3}
HERE=$(cd "$(dirname "$0")" && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target-compare}
DATA=${COMPARE_DATA:-/work/compare-data}
mkdir -p "$DATA"
OUT=${COMPARE_OUT:-$DATA/results-$(date +%Y%m%d-%H%M%S).jsonl}
LOG=${OUT%.jsonl}.log
WORKLOADS=${COMPARE_WORKLOADS:-add-periodic add-strict-8 add-strict-1 add-batch-1000 get-random-2 get-random-1 open-get footprint}
read -r -a STORES <<<"${COMPARE_STORES:-ourdb fjall lmdb redb sled}"
read -r -a EXTRA <<<"${COMPARE_ARGS:-}"
VARIANTS=${COMPARE_VARIANTS:-1}
QUIET_MAX=${COMPARE_QUIET_MAX:-60}
QUIET_BUSY=${COMPARE_QUIET_BUSY:-0.25}

(cd "$HERE" && cargo build --release --locked --quiet)
BIN=$CARGO_TARGET_DIR/release/compare-stores

# Fraction of all CPUs busy over one second (from /proc/stat; iowait counts as idle).
busy() {
  local a b
  read -r -a a < <(grep '^cpu ' /proc/stat)
  sleep 1
  read -r -a b < <(grep '^cpu ' /proc/stat)
  local total=0 idle i
  for i in 1 2 3 4 5 6 7 8; do total=$((total + b[i] - a[i])); done
  idle=$((b[4] - a[4] + b[5] - a[5]))
  awk -v t="$total" -v i="$idle" 'BEGIN { printf "%.2f", (t > 0 ? 1 - i / t : 0) }'
}

# Waits up to QUIET_MAX seconds for the machine to be quiet; exports what it saw.
quiet_wait() {
  local waited=0 b
  b=$(busy)
  while [ "$QUIET_MAX" -gt 0 ] && awk -v b="$b" -v m="$QUIET_BUSY" 'BEGIN { exit !(b > m) }' &&
    [ "$waited" -lt "$QUIET_MAX" ]; do
    sleep 2
    waited=$((waited + 3))
    b=$(busy)
  done
  export COMPARE_BUSY="$b (waited ${waited}s)"
}

{
  echo "# compare-stores: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), rounds $ROUNDS"
  echo "# herojobs $(git -C "$HERE" rev-parse --short HEAD 2>/dev/null || echo '?'), $(rustc --version)"
  echo "# $(nproc) CPUs, $(uname -r), data in $DATA ($(df -T "$DATA" | awk 'NR==2 {print $2}'))"
} | tee "$LOG" >&2

START=$(date +%s)
FAILED=0
for w in $WORKLOADS; do
  runs=("${STORES[@]}")
  if [ "$VARIANTS" = 1 ] && [[ $w == get-random-* ]]; then
    for s in lmdb redb; do
      [[ " ${STORES[*]} " == *" $s "* ]] && runs+=("$s:thread")
    done
  fi
  for ((r = 0; r < ROUNDS; r++)); do
    k=${#runs[@]}
    for ((j = 0; j < k; j++)); do
      entry=${runs[$(((j + r) % k))]}
      store=${entry%%:*}
      args=("$store" "$w" --dir "$DATA" "${EXTRA[@]}")
      [[ $entry == *:thread ]] && args+=(--read-txn thread)
      quiet_wait
      t0=$(date +%s)
      if line=$("$BIN" "${args[@]}" 2>>"$LOG"); then
        echo "$line" >>"$OUT"
        summary=$(jq -r '[.ops_per_s, .open_get_ms, .ratio_allocated] | map(select(. != null)) | first' <<<"$line" 2>/dev/null || echo '?')
        echo "[$(date +%H:%M:%S)] round $((r + 1))/$ROUNDS $w $entry: $summary ($(($(date +%s) - t0)) s, busy before $COMPARE_BUSY)" | tee -a "$LOG" >&2
      else
        FAILED=$((FAILED + 1))
        echo "[$(date +%H:%M:%S)] round $((r + 1))/$ROUNDS $w $entry: FAILED (see $LOG)" | tee -a "$LOG" >&2
      fi
    done
  done
done
echo "# done in $(($(date +%s) - START)) s, $FAILED failed; results in $OUT" | tee -a "$LOG" >&2

"$BIN" table "$OUT"
[ "$FAILED" -eq 0 ]
