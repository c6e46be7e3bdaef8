#!/usr/bin/env bash
# Open + get of a fresh process, binaries and stores alternated child by child: the way to
# see a change of a few per cent in OurDB's open, which run.sh's five children per
# measurement cannot.
#
#   scripts/compare-stores/open-ab.sh N LABEL=BINARY:STORE [LABEL=BINARY:STORE ...]
#
#   e.g. open-ab.sh 150 old=/tmp/cs-old:ourdb new=/tmp/cs-new:ourdb lmdb=/tmp/cs-new:lmdb
#
# BINARY is a compare-stores build (one per herojobs version); STORE is ourdb or lmdb. The
# databases (N records, default 1,000,000: COMPARE_N) are built once by the first binary and
# kept in $COMPARE_DATA/open-ab-*. Each round runs every LABEL once, the starting one
# rotating; it prints each LABEL's median (ms) and its median per-round ratio to the first.
#
# The binaries are copied first, all at once: a cold process's time depends on how its
# executable sits in the page cache, and the same binary copied at another time measured up
# to 1.3x slower per process, more than most changes being measured.
set -euo pipefail

N=${1:?usage: open-ab.sh N LABEL=BINARY:STORE ...}
shift
[ $# -ge 1 ] || { echo "open-ab.sh: give at least one LABEL=BINARY:STORE" >&2; exit 2; }
RECORDS=${COMPARE_N:-1000000}
DATA=${COMPARE_DATA:-/work/compare-data}
mkdir -p "$DATA"
WORK=$(mktemp -d "$DATA/open-ab-XXXXXX")
trap 'rm -rf "$WORK"' EXIT

labels=() bins=() stores=()
for spec in "$@"; do
  label=${spec%%=*} rest=${spec#*=}
  bin=${rest%%:*} store=${rest#*:}
  [ -x "$bin" ] || { echo "open-ab.sh: $bin is not an executable" >&2; exit 2; }
  case $store in ourdb | lmdb) ;; *) echo "open-ab.sh: store $store: ourdb or lmdb" >&2; exit 2 ;; esac
  copy="$WORK/bin-${#labels[@]}"
  cp "$bin" "$copy"
  labels+=("$label") bins+=("$copy") stores+=("$store")
done

# One database per store, built (and closed) by the first binary, kept for the children.
declare -A dbs
for store in $(printf '%s\n' "${stores[@]}" | sort -u); do
  COMPARE_KEEP=1 "${bins[0]}" "$store" open-get --n "$RECORDS" --opens 1 --dir "$WORK/$store" >/dev/null
  dbs[$store]=$(ls -d "$WORK/$store"/cmp-"$store"-open-get-*)
done

n=${#labels[@]}
for ((i = 1; i <= N; i++)); do
  key=$(((i * 7919) % (RECORDS - 1) + 1))
  for ((j = 0; j < n; j++)); do
    k=$(((i + j) % n))
    out=$("${bins[$k]}" "${stores[$k]}" open-once --n "$RECORDS" --key "$key" \
      --path "${dbs[${stores[$k]}]}" --read-txn get)
    echo "$i ${labels[$k]} $out"
  done
done | python3 -c '
import collections, json, statistics, sys
first = sys.argv[1]
times = collections.defaultdict(dict)
for line in sys.stdin:
    i, label, js = line.split(None, 2)
    times[label][int(i)] = json.loads(js)["open_get_ms"]
for label in sys.argv[1:]:
    t = times[label]
    ratios = [t[i] / times[first][i] for i in t if i in times[first]]
    print("%-10s median %.4f ms (min %.4f)  per-round ratio to %s: median %.3f"
          % (label, statistics.median(t.values()), min(t.values()), first,
             statistics.median(ratios)))
' "${labels[@]}"
