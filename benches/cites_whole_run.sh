#!/usr/bin/env bash
# The whole CITES migration, every step timed: `cites_trade` (release build) against
# BASELINE (a cites_trade binary built from another commit), interleaved, each run into a
# database of its own on one throwaway cluster, same generated input.
#
#   benches/cites_whole_run.sh --baseline BIN [--files F] [--rows R] [--runs N] [-- EXTRA ARGS]
#
#   --baseline BIN  the other binary (e.g. git worktree add /tmp/old <commit>; cargo build
#                   --release -p etl-examples --example cites_trade there)
#   --files F       generated files (default 10)
#   --rows R        rows per file (default 500000)
#   --runs N        runs of each binary, interleaved (default 2)
#   EXTRA ARGS      passed to both runs (default: --no-backup)
#
# Prints one line per run and step (`binary run step seconds`) and the median per step.
# Release builds only; run by hand on a quiet machine.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
files=10 rows=500000 runs=2 baseline="" extra=(--no-backup)
while [[ $# -gt 0 ]]; do
    case "$1" in
        --baseline) baseline="$2"; shift 2 ;;
        --files) files="$2"; shift 2 ;;
        --rows) rows="$2"; shift 2 ;;
        --runs) runs="$2"; shift 2 ;;
        --) shift; extra=("$@"); break ;;
        *) echo "unknown option $1 (see the header of $0)" >&2; exit 2 ;;
    esac
done
[[ -x "$baseline" ]] || { echo "--baseline BIN: a cites_trade binary is needed" >&2; exit 2; }
log() { echo "[$(date +%T)] $*" >&2; }

target="${CARGO_TARGET_DIR:-$root/target}"
(cd "$root" && cargo build --release -q -p etl-examples --example cites_trade --example gen_cites)
bin="$target/release/examples"
work="$(mktemp -d "${TMPDIR:-/tmp}/ferry-whole.XXXXXX")"
trap '"$root/scripts/pg.sh" stop "$work/pg" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
url="$("$root/scripts/pg.sh" start "$work/pg")"
"$bin/gen_cites" --files "$files" --rows-per-file "$rows" --bad-row-rate 0 --out "$work/data" \
    --species-csv "$work/data/species.csv" >/dev/null
log "input: $files x $rows rows; cluster $url"

results="$work/results.txt"
for i in $(seq 1 "$runs"); do
    for which in ferry baseline; do
        exe="$bin/cites_trade"; [[ $which == baseline ]] && exe="$baseline"
        db="run_${which}_$i"
        psql "$url" -qXc "CREATE DATABASE $db"
        psql "$url" -qXc "CHECKPOINT"
        log "$which run $i"
        DATABASE_URL="${url%/*}/$db" "$exe" --input "$work/data" --species-csv "$work/data/species.csv" \
            -q --report-dir "$work/rep_$db" "${extra[@]}" >/dev/null
        python3 - "$work/rep_$db/report.json" "$which" "$i" >> "$results" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
total = 0.0
for s in r["steps"]:
    d = s.get("seconds") or 0.0
    total += d
    print(sys.argv[2], sys.argv[3], s["name"], f"{d:.2f}")
print(sys.argv[2], sys.argv[3], "TOTAL", f"{total:.2f}")
PY
        psql "$url" -qXc "DROP DATABASE $db"
    done
done
cat "$results"
python3 - "$results" <<'PY'
import sys, statistics, collections
t = collections.defaultdict(list)
order = []
for line in open(sys.argv[1]):
    b, _, step, s = line.split()
    if step not in order:
        order.append(step)
    t[(b, step)].append(float(s))
print("| step | ferry s | baseline s |\n| --- | ---: | ---: |")
for step in order:
    f, b = t.get(("ferry", step), [0]), t.get(("baseline", step), [0])
    print(f"| {step} | {statistics.median(f):.2f} | {statistics.median(b):.2f} |")
PY
