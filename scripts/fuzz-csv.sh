#!/usr/bin/env bash
# Fuzz the CSV decoder with cargo-fuzz (libFuzzer) for a bounded time: any bytes after a
# fixed header, typed columns, decoded whole and in 3-byte pieces with batches of 2 — no
# panic, the same rows and rejects both ways (crates/source-csv/fuzz/).
#
# Needs a nightly toolchain (`rustup toolchain list`) and a C++ compiler; installs
# cargo-fuzz from crates.io when missing. Seeds the corpus with tests/corpus/*.csv (their
# header lines dropped).
#
# usage: scripts/fuzz-csv.sh [SECONDS]    (default 60)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
secs="${1:-60}"
if ! rustup toolchain list | grep -q '^nightly'; then
    echo "[fuzz-csv] no nightly toolchain installed (rustup toolchain install nightly)" >&2
    exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "[fuzz-csv] installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi
fuzz_dir="$root/crates/source-csv/fuzz"
seeds="$fuzz_dir/corpus/csv_decode"
mkdir -p "$seeds"
for f in "$root"/crates/source-csv/tests/corpus/*.csv; do
    tail -n +2 "$f" >"$seeds/$(basename "$f")"
done
cd "$fuzz_dir"
cargo +nightly fuzz run csv_decode -- -max_total_time="$secs" -max_len=4096
