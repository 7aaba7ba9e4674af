#!/usr/bin/env bash
# The full kill matrix (issue 14): every migration's real binary SIGKILLed before and after
# every step and in the middle of the steps that last long enough, each kill followed by
# --resume (one in three by --rollback), checked against a clean run
# (examples/tests/kill_matrix.rs). `scripts/test.sh` runs one point per phase; this runs them
# all and prints the markdown tables RELIABILITY.md holds (per point, then per migration and
# phase).
#
# usage: scripts/kill-matrix.sh [MIGRATION,...]   (e.g. cites_trade,s9_sales; default: all)
# environment: DATABASE_URL (a server to create throwaway databases in; default: a throwaway
#   cluster started here with scripts/pg.sh), CARGO_TARGET_DIR, KILL_MATRIX_TABLE (where the
#   per-point rows go; default a temp file).
# Needs PostgreSQL server binaries and dynalite (npm ci --prefix tools/dynalite), as test.sh.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export AWS_EC2_METADATA_DISABLED=true RUST_BACKTRACE=0

tmp="$(mktemp -d "${TMPDIR:-/tmp}/ferry-kill-matrix.XXXXXX")"
pg_dir=""
cleanup() {
    local status=$?
    [[ -n "$pg_dir" ]] && "$root/scripts/pg.sh" stop "$pg_dir" </dev/null >/dev/null 2>&1 || true
    rm -rf "$tmp"
    exit "$status"
}
trap cleanup EXIT

if [[ -z "${DATABASE_URL:-}" ]]; then
    pg_dir="$tmp/pg"
    DATABASE_URL="$("$root/scripts/pg.sh" start "$pg_dir" </dev/null)"
    export DATABASE_URL
fi
[[ -f "$root/tools/dynalite/node_modules/dynalite/cli.js" ]] ||
    { echo "kill-matrix.sh: dynalite missing: npm ci --prefix tools/dynalite" >&2; exit 1; }

rows="${KILL_MATRIX_TABLE:-$tmp/rows.md}"
: >"$rows"
export KILL_MATRIX=full KILL_MATRIX_OUT="$rows"
[[ $# -gt 0 ]] && export KILL_MATRIX_ONLY="$1"

started=$(date +%s)
status=0
# One test at a time: timed kill points are fractions of a clean run's step durations, which
# a second matrix competing for the two cores would stretch.
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run -p etl-examples --test kill_matrix --no-fail-fast -j 1 --no-tests=warn >&2 || status=$?
else
    cargo test -p etl-examples --test kill_matrix -- --test-threads=1 >&2 || status=$?
fi
secs=$(($(date +%s) - started))

echo "## Kill matrix: every point"
echo
echo "| migration | step (kind) | kill point | then | production at the kill | final exact | report reconciles | rows lost | result |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
cat "$rows"
echo
echo "## Kill matrix: per migration and phase"
echo
echo "| migration | phase (kind of step) | kills | resumed/rolled back exactly | production partial at the kill | reports reconcile | rows lost |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
# Fields of a row (split on " | "): 1 migration, 2 step (kind), 5 production at the kill,
# 6 exact, 7 reconciles, 8 rows lost.
awk -F' \\| ' '
    {
        m = $1; sub(/^\| /, "", m)
        k = $2; sub(/.*\(/, "", k); sub(/\)$/, "", k)
        key = m " | " k
        if (!(key in n)) order[++count] = key
        n[key]++
        if ($6 == "yes") exact[key]++
        if ($7 == "yes") rec[key]++
        if ($5 ~ /^(partial|PARTIAL)/) partial[key]++
        lost[key] += $8
    }
    END {
        for (i = 1; i <= count; i++) {
            key = order[i]
            printf "| %s | %d | %d | %d | %d | %d |\n", key, n[key], exact[key] + 0, partial[key] + 0, rec[key] + 0, lost[key]
        }
    }' "$rows"
echo
total=$(wc -l <"$rows")
failed=$(grep -c '| FAIL |$' "$rows" || true)
echo "$total kill points, $failed failed, in $((secs / 60)) min $((secs % 60)) s."
exit "$status"
