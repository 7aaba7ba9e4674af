#!/usr/bin/env bash
# The property tests of the CSV decoder (crates/source-csv/tests/it/props.rs: the decoder
# against the `csv` crate on random and mutated inputs), run long.
#
# scripts/test.sh runs them with 64 cases each (a fraction of a second); this runs
# PROPTEST_CASES of each (default 200000, a few minutes in a debug build).
#
# usage: scripts/proptest-long.sh [CASES]
#   CASES   cases per property (default: $PROPTEST_CASES, else 200000)
# A failure prints the minimal failing input (and the mutated bytes, escaped); add it to
# crates/source-csv/tests/corpus/ with its decided outcome once fixed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
cases="${1:-${PROPTEST_CASES:-200000}}"
echo "[proptest-long] $cases cases per property" >&2
start=$(date +%s)
PROPTEST_CASES="$cases" cargo test -p etl-source-csv --test it props:: -- --nocapture
echo "[proptest-long] passed in $(($(date +%s) - start)) s" >&2
