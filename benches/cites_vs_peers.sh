#!/usr/bin/env bash
# CITES load: ferry vs PostgreSQL's own COPY, psql \copy and pgloader — same generated input,
# same PostgreSQL, one run, interleaved, median of N runs each.
#
#   benches/cites_vs_peers.sh [--files F] [--rows R] [--runs N] [--parallel P] [--keep]
#
#   --files F     generated files (default 4)
#   --rows R      rows per file (default 500000)
#   --runs N      runs of each method, interleaved (default 3); the median is reported
#   --parallel P  ferry's --parallel (default: number of cores)
#   --only LIST   comma list of methods to run (copy,copy_indexed,psql,pgloader,ferry,job,
#                 ferry_base; default all but ferry_base)
#   --baseline BIN  also run BIN (a cites_trade binary built from another commit) as method
#                 `ferry_base`, interleaved with the others: a refactor is compared with the code
#                 before it in the same run (e.g. git worktree add /tmp/old <commit>; cargo build
#                 --release there; --baseline .../release/examples/cites_trade)
#   --keep        keep the cluster, the data and the logs (printed at the end)
#
# Methods (every one loads the same rows into a table without indexes, logged):
#   copy      server-side COPY peer FROM '<file>' (FORMAT csv, HEADER)   — the practical limit
#   copy_indexed  the same into a table with the indexes the staging table ends with (a uuid
#             primary key filled by gen_random_uuid(), and indexes on year, record_id, taxon):
#             the limit for "rows in a staging table with its indexes", ferry's whole run
#   psql      psql -c "\copy peer FROM '<file>' (FORMAT csv, HEADER)"
#   pgloader  pgloader (Debian package) loading all files into the same table
#   ferry     cargo's release build of `cites_trade --no-switchover`: parse, type, map species,
#             row rules, binary COPY into cites_trade_records_staging, then (reported apart)
#             the index build and the validation queries. `load` is the load phase alone.
#   job       the same migration declared as a job file: `ferry run examples/jobs/cites_trade.toml
#             --stop-before switch` (release build of crates/cli); the same rows (checked)
# Peak RSS is the client process's (for `copy`, psql is only a messenger: its RSS is shown).
# Installs pgloader and GNU time with apt-get when missing. Release builds only (run by hand).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
files=4 rows=500000 runs=3 parallel="$(nproc)" keep=0 only="copy,copy_indexed,psql,pgloader,ferry,job"
baseline=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --files) files="$2"; shift 2 ;;
        --rows) rows="$2"; shift 2 ;;
        --runs) runs="$2"; shift 2 ;;
        --parallel) parallel="$2"; shift 2 ;;
        --only) only="$2"; shift 2 ;;
        --baseline) baseline="$2"; only="$only,ferry_base"; shift 2 ;;
        --keep) keep=1; shift ;;
        -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
        *) echo "unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
log() { echo "[cites_vs_peers $(date +%H:%M:%S)] $*" >&2; }

need_apt() {
    if ! command -v "$1" >/dev/null 2>&1 || [[ "$1" == time && ! -x /usr/bin/time ]]; then
        log "installing $2 (apt-get)"
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2") >/dev/null ||
            { echo "could not install $2: run apt-get install -y $2" >&2; exit 1; }
    fi
}
need_apt pgloader pgloader
need_apt /usr/bin/time time
command -v psql >/dev/null || need_apt psql postgresql-client

log "building release binaries (first time: 15-30 min on 2 cores)"
target="${CARGO_TARGET_DIR:-$root/target}"
(cd "$root" && cargo build --release -q -p etl-examples --example cites_trade --example gen_cites)
if [[ ",$only," == *,job,* ]]; then (cd "$root" && cargo build --release -q -p ferry-cli --bin ferry); fi
bin="$target/release/examples"

work="$(mktemp -d "${TMPDIR:-/tmp}/ferry-peers.XXXXXX")"
chmod 755 "$work"
pg="$work/pg"
cleanup() {
    if [[ $keep -eq 0 ]]; then
        "$root/scripts/pg.sh" stop "$pg" >/dev/null 2>&1 || true
        rm -rf "$work"
    else
        log "kept $work (stop the cluster with: scripts/pg.sh stop $pg)"
    fi
}
trap cleanup EXIT

url="$("$root/scripts/pg.sh" start "$pg")"
log "PostgreSQL at $url ($(psql "$url" -Atc 'show server_version'); fsync=$(psql "$url" -Atc 'show fsync'))"
data="$work/data"
mkdir -p "$data"
"$bin/gen_cites" --files "$files" --rows-per-file "$rows" --bad-row-rate 0 --out "$data" \
    --species-csv "$data/species.csv" >&2
chmod -R a+rX "$data"
total_rows=$((files * rows))
bytes=$(cat "$data"/trade_db_*.csv | wc -c)
log "input: $files files x $rows rows = $total_rows rows, $((bytes / 1048576)) MiB"

cols="record_id text, year integer, appendix text, taxon text, class text, order_name text,
  family text, genus text, term text, quantity numeric, unit text, importer text, exporter text,
  origin text, purpose text, source text, reporter_type text, import_permit text,
  export_permit text, origin_permit text"
psql "$url" -qX -c "DROP TABLE IF EXISTS peer; CREATE TABLE peer ($cols)"
psql "$url" -qX -c "DROP TABLE IF EXISTS peer_ix; CREATE TABLE peer_ix (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), $cols);
  CREATE INDEX ON peer_ix (year); CREATE INDEX ON peer_ix (record_id); CREATE INDEX ON peer_ix (taxon)"

fields="record_id, year, appendix, taxon, class, order_name, family, genus, term,
  quantity [null if blanks], unit, importer, exporter, origin, purpose, source, reporter_type,
  import_permit, export_permit, origin_permit"
cat > "$work/pgloader.load" <<LOAD
LOAD CSV
     FROM ALL FILENAMES MATCHING ~/trade_db_.*\.csv$/ IN DIRECTORY '$data'
     HAVING FIELDS ($fields)
     INTO $url
     TARGET TABLE peer
     WITH skip header = 1,
          fields optionally enclosed by '"',
          fields escaped by double-quote,
          fields terminated by ',';
LOAD

# timed NAME CMD...: run CMD under GNU time, append "NAME wall_s peak_rss_kib" to results
results="$work/results.txt"
: > "$results"
timed() {
    local name="$1"; shift
    local t="$work/time.$name"
    /usr/bin/time -f "%e %M" -o "$t" "$@" >"$work/$name.log" 2>&1 ||
        { log "$name failed: see $work/$name.log"; tail -5 "$work/$name.log" >&2; exit 1; }
    echo "$name $(cat "$t")" >> "$results"
}
truncate_peer() { psql "$url" -qX -c "TRUNCATE peer" ; psql "$url" -qX -c "CHECKPOINT"; }
check_rows() {
    local n
    n=$(psql "$url" -AtX -c "SELECT count(*) FROM $2")
    [[ "$n" == "$3" ]] || { log "$1 loaded $n rows into $2, expected $3"; exit 1; }
}

run_copy() {
    truncate_peer
    local sql=""
    for f in "$data"/trade_db_*.csv; do sql+="COPY peer FROM '$f' (FORMAT csv, HEADER); "; done
    timed copy psql "$url" -qX -c "$sql"
    check_rows copy peer "$total_rows"
}
run_copy_indexed() {
    psql "$url" -qX -c "TRUNCATE peer_ix" -c "CHECKPOINT"
    local sql=""
    for f in "$data"/trade_db_*.csv; do
        sql+="COPY peer_ix (record_id, year, appendix, taxon, class, order_name, family, genus, term, quantity, unit, importer, exporter, origin, purpose, source, reporter_type, import_permit, export_permit, origin_permit) FROM '$f' (FORMAT csv, HEADER); "
    done
    timed copy_indexed psql "$url" -qX -c "$sql"
    check_rows copy_indexed peer_ix "$total_rows"
}
run_psql() {
    truncate_peer
    local args=()
    for f in "$data"/trade_db_*.csv; do args+=(-c "\\copy peer FROM '$f' (FORMAT csv, HEADER)"); done
    timed psql psql "$url" -qX "${args[@]}"
    check_rows psql peer "$total_rows"
}
run_pgloader() {
    truncate_peer
    timed pgloader pgloader --no-ssl-cert-verification "$work/pgloader.load"
    check_rows pgloader peer "$total_rows"
}
# ferry_with NAME BINARY: one --no-switchover run of a cites_trade binary
ferry_with() {
    local name="$1" exe="$2"
    psql "$url" -qX -c "DROP TABLE IF EXISTS cites_trade_records_staging" -c "CHECKPOINT" 2>/dev/null || true
    rm -rf "$work/$name-report"
    timed "$name" env DATABASE_URL="$url" "$exe" --input "$data" \
        --species-csv "$data/species.csv" --no-switchover --parallel "$parallel" -q \
        --report-dir "$work/$name-report"
    local loaded load_s
    loaded=$(python3 -c "import json;print(json.load(open('$work/$name-report/report.json'))['totals']['loaded'])")
    load_s=$(python3 -c "import json;print(json.load(open('$work/$name-report/report.json'))['extra']['phases']['load_s'])")
    check_rows "$name" cites_trade_records_staging "$loaded"
    if [[ "$name" == ferry ]]; then
        ferry_sum=$(psql "$url" -AtX -c "SELECT sum(hashtextextended(t::text, 0)) FROM cites_trade_records_staging t")
    fi
    echo "${name}_load $load_s 0" >> "$results"
    echo "${name}_loaded $loaded 0" >> "$results"
}
run_ferry() { ferry_with ferry "$bin/cites_trade"; }
# The job file, stopped before its switch like --no-switchover; its staging table must hold
# the same rows as the example's (count and content checksum, when both ran).
run_job() {
    psql "$url" -qX -c "DROP TABLE IF EXISTS cites_trade_records_staging" -c "CHECKPOINT" 2>/dev/null || true
    rm -rf "$work/job-report"
    timed job env DATABASE_URL="$url" CITES_DIR="$data" CITES_SPECIES="$data/species.csv" \
        "$target/release/ferry" -q run "$root/examples/jobs/cites_trade.toml" --stop-before switch \
        --parallel "$parallel" --report-dir "$work/job-report"
    local loaded load_s sum
    loaded=$(python3 -c "import json;print(json.load(open('$work/job-report/report.json'))['totals']['loaded'])")
    load_s=$(python3 -c "import json;print(json.load(open('$work/job-report/report.json'))['extra']['phases']['load_s'])")
    check_rows job cites_trade_records_staging "$loaded"
    sum=$(psql "$url" -AtX -c "SELECT sum(hashtextextended(t::text, 0)) FROM cites_trade_records_staging t")
    if [[ -n "${ferry_sum:-}" && "$sum" != "$ferry_sum" ]]; then
        log "the job's staging table differs from the example's (checksum $sum vs $ferry_sum)"; exit 1
    fi
    echo "job_load $load_s 0" >> "$results"
    echo "job_loaded $loaded 0" >> "$results"
}
run_ferry_base() { ferry_with ferry_base "$baseline"; }

for r in $(seq 1 "$runs"); do
    for m in ${only//,/ }; do
        log "run $r/$runs: $m"
        "run_$m"
    done
done

python3 - "$results" "$total_rows" "$bytes" <<'PY'
import statistics, sys
path, rows, nbytes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
res = {}
for line in open(path):
    name, a, b = line.split()
    res.setdefault(name, []).append((float(a), int(float(b))))
med = {k: statistics.median(x for x, _ in v) for k, v in res.items()}
rss = {k: max(y for _, y in v) for k, v in res.items()}
loaded = int(med.pop("ferry_loaded", rows)) if "ferry_loaded" in med else rows
base_loaded = med.pop("ferry_base_loaded", None)
job_loaded = med.pop("job_loaded", None)
print(f"\n{rows:,} rows, {nbytes/1048576:.0f} MiB of CSV; median of {len(res.get('copy', res.get('ferry', [[0]])))} runs\n")
print(f"| method | wall s | rows/s | MB/s | peak RSS MiB |")
print(f"| --- | ---: | ---: | ---: | ---: |")
label = {"copy": "server-side COPY (limit)", "copy_indexed": "server-side COPY into the same table with its 4 indexes", "psql": "psql \\copy", "pgloader": "pgloader",
         "ferry": "ferry cites_trade --no-switchover (whole run)", "ferry_load": "ferry load phase",
         "ferry_base": "baseline binary, whole run (--baseline)", "ferry_base_load": "baseline binary, load phase",
         "job": "ferry run examples/jobs/cites_trade.toml --stop-before switch (whole run)", "job_load": "job file, load phase"}
for k in ["copy", "copy_indexed", "psql", "pgloader", "ferry", "ferry_load", "job", "job_load", "ferry_base", "ferry_base_load"]:
    if k not in med:
        continue
    w = med[k]
    r = rows / w if w else 0
    mem = f"{rss[k]/1024:.0f}" if rss.get(k) else "-"
    print(f"| {label[k]} | {w:.2f} | {r:,.0f} | {nbytes/1e6/w:.0f} | {mem} |")
def ratio(a, b):
    if a in med and b in med:
        print(f"{a}/{b} rows/s ratio: {med[b]/med[a]:.2f}")
print()
ratio("ferry", "copy"); ratio("ferry_load", "copy"); ratio("ferry", "copy_indexed"); ratio("ferry", "pgloader"); ratio("ferry_load", "pgloader")
ratio("ferry", "ferry_base"); ratio("ferry_load", "ferry_base_load")
ratio("job", "ferry"); ratio("job_load", "ferry_load")
if job_loaded is not None and int(job_loaded) != loaded:
    print(f"WARNING: the job loaded {int(job_loaded):,} rows, the example {loaded:,}")
if base_loaded is not None and int(base_loaded) != loaded:
    print(f"WARNING: the baseline loaded {int(base_loaded):,} rows, this build {loaded:,}")
if "ferry" in med:
    print(f"ferry loaded {loaded:,} of {rows:,} rows (the rest: unmatched species, filtered and counted)")
PY
