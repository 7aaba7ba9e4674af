#!/usr/bin/env bash
# Figures for BENCHMARKS.md (issue 4): items/s loading 100,000 S9 sales with their lines
# (~400,000 items) into a local dynalite, three ways in the same run, and peak RSS.
#
#   1. release build of the s9_sales example;
#   2. full migration with --sales N (throwaway PostgreSQL + dynalite, every phase) under
#      /usr/bin/time -v: load items/s from load_report.json, peak RSS of the whole run;
#   3. `s9_sales --bench` on the transformed items: ferry's sink (pipeline + ItemCheck +
#      DynamoLoad, concurrency C) vs a minimal concurrent writer (C calls in flight: the
#      server's ceiling) vs sequential 25-item calls (the seed's single-threaded batch_writer),
#      each into a fresh dynalite;
#   4. the same full run at N/4 sales, for peak RSS as the input grows (the ferry process's
#      own peak per phase from report.json, and the process tree's from /usr/bin/time, which
#      includes the PostgreSQL and dynalite it starts);
#   5. the three writers again on the N/4 items with LATENCIES ms added to every call by a
#      loopback proxy (DynamoDB is remote: concurrency pays off against the round trip, not
#      against a local server that is CPU-bound on 2 cores).
#
# usage: benches/s9_dynamodb.sh [SALES (default 100000)] [CONCURRENCY (default 32)]
#        LATENCIES="5 20 50" (default) or LATENCIES="" to skip step 5
# output: $OUT (default target/s9-bench)/{full-N,full-N4,bench}.{log,time}, and a summary.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
sales="${1:-100000}"
conc="${2:-32}"
out="${OUT:-$root/target/s9-bench}"
mkdir -p "$out"
export AWS_EC2_METADATA_DISABLED=true
[[ -f tools/dynalite/node_modules/dynalite/cli.js ]] || npm ci --prefix tools/dynalite --no-audit --no-fund
command -v /usr/bin/time >/dev/null || { echo "needs /usr/bin/time (apt-get install -y time)"; exit 1; }

cargo build --release -p etl-examples --example s9_sales
bin="${CARGO_TARGET_DIR:-$root/target}/release/examples/s9_sales"

full() { # full NAME SALES
    local dir="$out/$1"
    rm -rf "$dir" && mkdir -p "$dir"
    (cd "$dir" && /usr/bin/time -v -o "$dir.time" "$bin" --sales "$2" --concurrency "$conc" >"$dir.log" 2>&1) ||
        { echo "full run $1 failed: see $dir.log"; tail -20 "$dir.log"; exit 1; }
}
rss() { awk -F: '/Maximum resident set size/ {gsub(/ /,"",$2); printf "%.0f", $2/1024}' "$1"; }

full "full-$sales" "$sales"
quarter=$((sales / 4))
full "full-$quarter" "$quarter"
(cd "$out/full-$sales" && "$bin" --bench --concurrency "$conc" 2>/dev/null | grep '"method"') >"$out/bench.jsonl"
: >"$out/latency.jsonl"
for ms in ${LATENCIES-5 20 50}; do
    (cd "$out/full-$quarter" && "$bin" --bench --bench-latency-ms "$ms" --concurrency "$conc" 2>/dev/null | grep '"method"') >>"$out/latency.jsonl"
done

echo
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo), $(uname -sr); load avg $(cut -d' ' -f1-3 /proc/loadavg)"
echo "dynalite $(node -p "require('$root/tools/dynalite/node_modules/dynalite/package.json').version"), node $(node --version)"
python3 - "$out" "$sales" "$quarter" <<'PY'
import json, sys, pathlib
out, sales, quarter = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
rows = [json.loads(l) for l in (out / "bench.jsonl").read_text().splitlines() if l.strip()]
by = {r["method"]: r for r in rows}
print(f"\n| writer ({sales} sales + lines + buyers + producers) | in flight | items | seconds | items/s | vs ceiling |")
print("|---|---|---|---|---|---|")
for m, label in [("ferry", "ferry sink (pipeline, ItemCheck, DynamoLoad)"), ("ceiling", "minimal concurrent writer (ceiling)"), ("sequential", "sequential 25-item calls (seed's approach)")]:
    r = by[m]
    print(f"| {label} | {r['concurrency']} | {r['items']} | {r['seconds']} | {r['items_per_s']:.0f} | {r['items_per_s'] / by['ceiling']['items_per_s']:.2f}x |")
print(f"\nferry / sequential: {by['ferry']['items_per_s'] / by['sequential']['items_per_s']:.2f}x")
for name in (f"full-{sales}", f"full-{quarter}"):
    t = (out / f"{name}.time").read_text()
    rss = next(int(l.split(":")[1]) for l in t.splitlines() if "Maximum resident set size" in l) / 1024
    wall = next(l.split("):")[1].strip() for l in t.splitlines() if "Elapsed (wall clock)" in l)
    load = json.loads((out / name / "data/reports/load_report.json").read_text())["entities"]
    items = sum(e["loaded"] for e in load.values()); secs = sum(e["seconds"] for e in load.values())
    rep = json.loads((out / name / "data/reports/report.json").read_text())
    own = rep.get("extra", {}).get("peak_rss_mib") or rep.get("peak_rss_mib", {})
    print(f"{name}: whole migration wall {wall}, peak RSS of the process tree {rss:.0f} MiB; load phase {items} items in {secs:.1f} s = {items/secs:.0f} items/s")
    print(f"  ferry process peak RSS per phase (MiB): {own}")
lat = [json.loads(l) for l in (out / "latency.jsonl").read_text().splitlines() if l.strip()]
if lat:
    print(f"\n| added round trip ({quarter} sales) | ferry items/s | ceiling items/s | sequential items/s | ferry vs ceiling | ferry vs sequential |")
    print("|---|---|---|---|---|---|")
    for ms in sorted({r["latency_ms"] for r in lat}):
        b = {r["method"]: r for r in lat if r["latency_ms"] == ms}
        f, c, q = (b[m]["items_per_s"] for m in ("ferry", "ceiling", "sequential"))
        print(f"| {ms} ms | {f:.0f} | {c:.0f} | {q:.0f} | {f / c:.2f}x | {f / q:.2f}x |")
PY
