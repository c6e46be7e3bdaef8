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
# databases (COMPARE_N records, default 1,000,000) are built once, by the first BINARY that
# keeps them (COMPARE_KEEP, in compare-stores since 2026-12-06: an older build can still be
# measured, just not first), in a temporary directory under $COMPARE_DATA removed at the
# end. Each round runs every LABEL once, the starting one rotating; it prints each LABEL's
# median (ms) and its median per-round ratio to the first, and fails if any child did.
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
  bin=${rest%:*} store=${rest##*:}
  [[ $label =~ ^[A-Za-z0-9_.-]+$ ]] || { echo "open-ab.sh: label '$label': letters, digits, _ . - only" >&2; exit 2; }
  [[ " ${labels[*]} " != *" $label "* ]] || { echo "open-ab.sh: label $label given twice" >&2; exit 2; }
  [ -x "$bin" ] || { echo "open-ab.sh: $bin is not an executable" >&2; exit 2; }
  case $store in ourdb | lmdb) ;; *) echo "open-ab.sh: store $store: ourdb or lmdb" >&2; exit 2 ;; esac
  copy="$WORK/bin-${#labels[@]}"
  cp "$bin" "$copy"
  labels+=("$label") bins+=("$copy") stores+=("$store")
done

# One database per store, built (and closed) by the first binary that keeps it.
declare -A dbs
for store in $(printf '%s\n' "${stores[@]}" | sort -u); do
  for bin in "${bins[@]}"; do
    COMPARE_KEEP=1 "$bin" "$store" open-get --n "$RECORDS" --opens 1 --dir "$WORK/$store" >/dev/null
    kept=$(find "$WORK/$store" -maxdepth 1 -name "cmp-$store-open-get-*" | head -n 1)
    if [ -n "$kept" ]; then
      dbs[$store]=$kept
      break
    fi
  done
  [ -n "${dbs[$store]:-}" ] || { echo "open-ab.sh: no BINARY keeps a database (COMPARE_KEEP)" >&2; exit 2; }
done

n=${#labels[@]}
for ((i = 1; i <= N; i++)); do
  key=$(((i * 7919) % RECORDS + 1))
  for ((j = 0; j < n; j++)); do
    k=$(((i + j) % n))
    out=$("${bins[$k]}" "${stores[$k]}" open-once --n "$RECORDS" --key "$key" \
      --path "${dbs[${stores[$k]}]}" --read-txn get)
    echo "$i ${labels[$k]} $out"
  done
done | python3 -c '
import collections, json, statistics, sys
rounds, first = int(sys.argv[1]), sys.argv[2]
times = collections.defaultdict(dict)
for line in sys.stdin:
    i, label, js = line.split(None, 2)
    times[label][int(i)] = json.loads(js)["open_get_ms"]
short = [l for l in sys.argv[2:] if len(times[l]) != rounds]
if short:
    sys.exit("open-ab.sh: a child failed; rounds incomplete for " + ", ".join(short))
for label in sys.argv[2:]:
    t = times[label]
    ratios = [t[i] / times[first][i] for i in t if i in times[first]]
    print("%-10s median %.4f ms (min %.4f)  per-round ratio to %s: median %.3f"
          % (label, statistics.median(t.values()), min(t.values()), first,
             statistics.median(ratios)))
' "$N" "${labels[@]}"
