#!/usr/bin/env bash
# Runs every example once on its bundled sample (debug build). Called by scripts/test.sh, which
# exports DATABASE_URL (a throwaway cluster) and FERRY_TMP; runnable on its own too (examples
# then start their own cluster via etl_testkit::database_url_or_start, or use $DATABASE_URL).
#
# To add an example, add ONE line between the markers below, of the form
#     run cargo run --example NAME -- ARGS...
# Write outputs under "$TMP" (a scratch directory, deleted afterwards unless FERRY_KEEP_TMP=1).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

own_tmp=""
if [[ -n "${FERRY_TMP:-}" ]]; then
    TMP="$FERRY_TMP/examples"
else
    own_tmp="$(mktemp -d "${TMPDIR:-/tmp}/ferry-examples.XXXXXX")"
    TMP="$own_tmp"
fi
mkdir -p "$TMP"
export TMP
cleanup() {
    if [[ -n "$own_tmp" && -z "${FERRY_KEEP_TMP:-}" ]]; then rm -rf "$own_tmp"; fi
}
trap cleanup EXIT

export AWS_EC2_METADATA_DISABLED=true
ran=0
failed=()
results=()
# run CMD...: print the command, run it, record pass/fail and wall time; never aborts the list.
run() {
    local start end status
    ran=$((ran + 1))
    echo "==> example: $*"
    start=$(date +%s)
    set +e
    "$@" </dev/null
    status=$?
    set -e
    end=$(date +%s)
    if [[ $status -eq 0 ]]; then
        results+=("ok     $((end - start))s  $*")
    else
        results+=("FAILED $((end - start))s  $*  (exit $status)")
        failed+=("$*")
    fi
}

# fresh_db NAME: with DATABASE_URL set, (re)create database NAME on that server and print its
# URL, so each example starts from an empty database; without it, print nothing (the example
# then starts its own throwaway cluster).
fresh_db() {
    if [[ -z "${DATABASE_URL:-}" ]]; then return 0; fi
    psql "$DATABASE_URL" -qX -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1" >/dev/null
    echo "${DATABASE_URL%/*}/$1"
}

# ======================= EXAMPLES: one `run cargo run --example ...` line each =================
# e.g. run cargo run --example cites_trade -- --report-dir "$TMP/cites"
run cargo run --example gen_cites -- --files 2 --rows-per-file 500 --out "$TMP/gen_cites"
DATABASE_URL="$(fresh_db ex_cites_trade)" run cargo run --example cites_trade -- --report-dir "$TMP/cites_trade"
DATABASE_URL="$(fresh_db ex_cites_arctic)" run cargo run --example cites_arctic -- --report-dir "$TMP/cites_arctic"
# culturebridge (issue 5): bundled Bubble test server, 300 users, bcrypt cost 4
DATABASE_URL="$(fresh_db ex_culturebridge)" run cargo run --example culturebridge -- --users 300 --bcrypt-cost 4 --requests-per-minute 60000 --export-dir "$TMP/culturebridge/export" --report-dir "$TMP/culturebridge/reports"
# s9_sales (issue 4): DATABASE_URL is its S9 source, so unset: own throwaway PostgreSQL + local dynalite, 2,000 generated sales, every phase
DATABASE_URL= run cargo run --example s9_sales -- --sales 2000 --data-dir "$TMP/s9/data" --report-dir "$TMP/s9/reports"
DATABASE_URL="$(fresh_db ex_partitioning)" run cargo run --example observations_partitioning -- --report-dir "$TMP/partitioning"
# a user's own migration on the run layer (README "Your own migration")
DATABASE_URL="$(fresh_db ex_cities)" run cargo run --example cities -- --report-dir "$TMP/cities"
# the CITES migration as a job file, run by the `ferry` command (issue 15)
DATABASE_URL="$(fresh_db ex_cites_job)" run cargo run -p ferry-cli --bin ferry -- run examples/jobs/cites_trade.toml --report-dir "$TMP/cites_job"
# ======================= END EXAMPLES ==========================================================

echo
if [[ $ran -eq 0 ]]; then
    echo "run-examples: no examples registered yet (add lines to scripts/run-examples.sh)"
    exit 0
fi
echo "run-examples: $ran run, ${#failed[@]} failed"
printf '  %s\n' "${results[@]}"
[[ ${#failed[@]} -eq 0 ]]
