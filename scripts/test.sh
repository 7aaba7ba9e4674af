#!/usr/bin/env bash
# The ONE command that runs every test of ferry, on a fresh machine too:
#
#   1. installs what is missing: PostgreSQL server binaries (apt-get install -y postgresql, when
#      neither `initdb` on PATH nor /usr/lib/postgresql/*/bin/initdb exists), the rustfmt and
#      clippy components (rustup), dynalite (npm), chromium (apt-get: the report.html browser
#      test; FERRY_REQUIRE_CHROMIUM=1 is exported); uses cargo-nextest when present, else
#      `cargo test`;
#   2. cargo fmt --all -- --check
#   3. cargo clippy --workspace --all-targets -- -D warnings, and
#      RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps (every intra-doc link resolves)
#   4. starts ONE throwaway PostgreSQL cluster (scripts/pg.sh: initdb/pg_ctl on 127.0.0.1, as the
#      `postgres` OS user when root) and exports DATABASE_URL for everything below;
#   5. cargo nextest run --workspace   (or cargo test --workspace)
#   6. cargo test --workspace --doc
#   7. scripts/run-examples.sh         (each example once on its bundled sample)
#   8. always stops and deletes the cluster and the scratch dir (trap), prints a summary.
#
# Every step runs even if an earlier one failed (except when setup fails); the exit status is
# non-zero if any step failed. Debug builds only.
#
# usage: scripts/test.sh [-p PACKAGE]... [--no-examples] [--no-install] [--fail-fast]
#   -p PACKAGE     restrict fmt/clippy/tests/doc tests to these packages (default: --workspace)
#   --no-examples  skip scripts/run-examples.sh
#   --no-install   never install anything (fail instead)
#   --fail-fast    stop at the first failing step
# environment: FERRY_STEP_TIMEOUT (per cargo step, default 45m), FERRY_KEEP_TMP=1 (keep the
#   scratch dir and the cluster's data), FERRY_NO_NEXTEST=1 (use cargo test).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

packages=()
examples=1
install=1
fail_fast=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        -p | --package)
            packages+=(-p "$2")
            shift 2
            ;;
        --no-examples) examples=0 && shift ;;
        --no-install) install=0 && shift ;;
        --fail-fast) fail_fast=1 && shift ;;
        -h | --help)
            sed -n '2,28p' "$0"
            exit 0
            ;;
        *)
            echo "test.sh: unknown argument: $1 (see --help)" >&2
            exit 2
            ;;
    esac
done
if [[ ${#packages[@]} -gt 0 ]]; then
    scope=("${packages[@]}")
    fmt_scope=("${packages[@]}")
else
    scope=(--workspace)
    fmt_scope=(--all)
fi

export AWS_EC2_METADATA_DISABLED=true
export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"
step_timeout="${FERRY_STEP_TIMEOUT:-45m}"
started_at=$(date +%s)

log() { echo "[test.sh $(date +%H:%M:%S)] $*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

# ---------------------------------------------------------------------------------------------
# Scratch dir, cluster, cleanup
# ---------------------------------------------------------------------------------------------
FERRY_TMP="$(mktemp -d "${TMPDIR:-/tmp}/ferry-test.XXXXXX")"
export FERRY_TMP
pg_dir="$FERRY_TMP/pg"
pg_started=0

cleanup() {
    local status=$?
    if [[ $pg_started -eq 1 ]]; then
        log "stopping the test cluster in $pg_dir"
        local keep=()
        [[ -n "${FERRY_KEEP_TMP:-}" ]] && keep=(--keep-data)
        if ! "$root/scripts/pg.sh" stop "$pg_dir" "${keep[@]}" </dev/null; then
            # Fallback: SIGINT to the postmaster is a "fast" shutdown.
            local pid
            pid="$(head -n1 "$pg_dir/postmaster.pid" 2>/dev/null || true)"
            if [[ -n "$pid" ]]; then
                log "pg.sh stop failed; sending SIGINT to postmaster $pid"
                kill -INT "$pid" 2>/dev/null || true
                for _ in $(seq 1 50); do
                    kill -0 "$pid" 2>/dev/null || break
                    sleep 0.2
                done
            fi
        fi
    fi
    if [[ -n "${FERRY_KEEP_TMP:-}" ]]; then
        log "kept the scratch dir $FERRY_TMP"
    else
        rm -rf "$FERRY_TMP"
    fi
    exit "$status"
}
# A long step runs in the background and is waited for, so that Ctrl-C / SIGTERM reach this
# script at once (not after the step): the step is then terminated and the trap cleans up.
child=""
on_signal() {
    if [[ -n "$child" ]]; then
        kill -TERM "$child" 2>/dev/null || true
        wait "$child" 2>/dev/null || true
    fi
    exit "$1"
}
trap cleanup EXIT
trap 'on_signal 130' INT
trap 'on_signal 143' TERM

# ---------------------------------------------------------------------------------------------
# Steps and summary
# ---------------------------------------------------------------------------------------------
results=()
failures=0

# step NAME CMD...: run CMD, record ok/FAILED and wall time.
step() {
    local name="$1" start status
    shift
    log "step: $name: $*"
    start=$(date +%s)
    set +e
    "$@"
    status=$?
    set -e
    local secs=$(($(date +%s) - start))
    if [[ $status -eq 0 ]]; then
        results+=("$(printf 'ok      %5ss  %s' "$secs" "$name")")
    else
        results+=("$(printf 'FAILED  %5ss  %s  (exit %s: %s)' "$secs" "$name" "$status" "$*")")
        failures=$((failures + 1))
        if [[ $fail_fast -eq 1 ]]; then
            summary
            exit 1
        fi
    fi
    return 0
}

skip() {
    results+=("$(printf 'skipped %5s   %s  (%s)' "" "$1" "$2")")
}

summary() {
    local total=$(($(date +%s) - started_at))
    echo
    echo "==================================== test.sh summary ===================================="
    printf '  %s\n' "${results[@]}"
    echo "  ---------------------------------------------------------------------------------------"
    if [[ $failures -eq 0 ]]; then
        echo "  ALL PASSED in $((total / 60))m$((total % 60))s"
    else
        echo "  $failures STEP(S) FAILED (total $((total / 60))m$((total % 60))s); scroll up to the step's output"
    fi
    echo "========================================================================================="
}

# with_timeout CMD...: run CMD with the per-step time limit (timeout passes SIGTERM on to CMD).
with_timeout() {
    local status=0
    timeout -k 30s "$step_timeout" "$@" &
    child=$!
    wait "$child" || status=$?
    child=""
    return "$status"
}

# ---------------------------------------------------------------------------------------------
# 1. Install what is missing
# ---------------------------------------------------------------------------------------------
as_root() {
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root to run: $* (run as root, install sudo, or install it yourself)"
    fi
}

have_pg_server() {
    local d
    # Same lookup as etl_testkit::pg_bin_dir: a PATH dir with initdb+pg_ctl+postgres, or Debian's dir.
    local IFS=:
    for d in $PATH; do
        [[ -n "$d" && -x "$d/initdb" && -x "$d/pg_ctl" && -x "$d/postgres" ]] && return 0
    done
    for d in /usr/lib/postgresql/*/bin; do
        [[ -x "$d/initdb" && -x "$d/pg_ctl" && -x "$d/postgres" ]] && return 0
    done
    return 1
}

install_pg_server() {
    command -v apt-get >/dev/null 2>&1 ||
        die "PostgreSQL server binaries (initdb, pg_ctl, postgres) are missing and there is no apt-get: install the PostgreSQL server (e.g. dnf install postgresql-server) and put initdb on PATH"
    log "installing PostgreSQL server binaries: apt-get update && apt-get install -y postgresql"
    # Keep the package from starting its own cluster service during the install (we start our
    # own clusters): a temporary policy-rc.d that denies service starts, unless one exists.
    local policy=/usr/sbin/policy-rc.d added_policy=0
    if [[ $(id -u) -eq 0 && ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && added_policy=1
    fi
    local status=0
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q </dev/null &&
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql </dev/null ||
        status=$?
    [[ $added_policy -eq 1 ]] && rm -f "$policy"
    [[ $status -eq 0 ]] || die "apt-get install -y postgresql failed (exit $status)"
    have_pg_server || die "installed postgresql but still no initdb/pg_ctl/postgres in /usr/lib/postgresql/*/bin"
}

setup() {
    if ! command -v cargo >/dev/null 2>&1 && [[ -x "${HOME:-}/.cargo/bin/cargo" ]]; then
        export PATH="${HOME:-}/.cargo/bin:$PATH"
    fi
    command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust (https://rustup.rs) or put ~/.cargo/bin on PATH"

    if ! have_pg_server; then
        [[ $install -eq 1 ]] || die "PostgreSQL server binaries missing (apt-get install -y postgresql) and --no-install given"
        install_pg_server
    fi
    command -v runuser >/dev/null 2>&1 || [[ -x /usr/sbin/runuser || -x /sbin/runuser || $(id -u) -ne 0 ]] ||
        die "running as root needs runuser (util-linux) to run PostgreSQL as the postgres user"

    local comp
    for comp in rustfmt clippy; do
        local probe=(cargo fmt --version)
        [[ $comp == clippy ]] && probe=(cargo clippy --version)
        if ! "${probe[@]}" >/dev/null 2>&1; then
            [[ $install -eq 1 ]] || die "the $comp component is missing and --no-install given"
            command -v rustup >/dev/null 2>&1 || die "the $comp component is missing and there is no rustup to add it"
            log "installing the $comp component: rustup component add $comp"
            rustup component add "$comp" || die "rustup component add $comp failed"
        fi
    done

    # --- dynalite (issue 4: sink-dynamodb tests, s9_sales example): pinned in tools/dynalite ---
    if [[ ! -f "$root/tools/dynalite/node_modules/dynalite/cli.js" ]]; then
        [[ $install -eq 1 ]] || die "dynalite missing and --no-install given: run npm ci --prefix tools/dynalite"
        command -v npm >/dev/null 2>&1 || die "npm not found: install Node >= 20 with npm, then run: npm ci --prefix tools/dynalite"
        log "installing dynalite: npm ci --prefix tools/dynalite"
        npm ci --prefix "$root/tools/dynalite" --no-audit --no-fund </dev/null || die "npm ci --prefix tools/dynalite failed"
    fi
    # --- end dynalite ---

    # --- chromium (issue 15: etl-core's report_html test renders report.html headless) ---
    if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
        [[ $install -eq 1 ]] || die "chromium missing and --no-install given: apt-get install -y --no-install-recommends chromium"
        command -v apt-get >/dev/null 2>&1 || die "chromium not found and there is no apt-get: install Chromium and put chromium on PATH"
        log "installing chromium: apt-get update && apt-get install -y --no-install-recommends chromium"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q </dev/null &&
            as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium </dev/null ||
            die "apt-get install -y chromium failed"
    fi
    export FERRY_REQUIRE_CHROMIUM=1 # the report_html test fails instead of skipping
    # --- end chromium ---

    if [[ -z "${FERRY_NO_NEXTEST:-}" ]] && cargo nextest --version >/dev/null 2>&1; then
        use_nextest=1
    else
        use_nextest=0
        log "cargo-nextest not available: falling back to cargo test"
    fi
    log "cargo: $(cargo --version); rustc: $(rustc --version)"
    log "PostgreSQL: $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | tr '\n' ' ')$(command -v initdb || true)"
    log "scratch dir: $FERRY_TMP; target dir: ${CARGO_TARGET_DIR:-$root/target}"
}

use_nextest=0
setup_start=$(date +%s)
setup
results+=("$(printf 'ok      %5ss  %s' "$(($(date +%s) - setup_start))" "setup (install what is missing)")")

# ---------------------------------------------------------------------------------------------
# 2-3. Format and lints
# ---------------------------------------------------------------------------------------------
fmt_args=(--check)
[[ "${CARGO_TERM_COLOR:-}" == never ]] && fmt_args+=(--color never)
step "cargo fmt --check" cargo fmt "${fmt_scope[@]}" -- "${fmt_args[@]}"
step "cargo clippy -D warnings" with_timeout cargo clippy "${scope[@]}" --all-targets -- -D warnings
step "cargo doc -D warnings" with_timeout env RUSTDOCFLAGS="-D warnings" cargo doc "${scope[@]}" --no-deps --quiet

# ---------------------------------------------------------------------------------------------
# 4. One throwaway cluster for every test
# ---------------------------------------------------------------------------------------------
start_cluster() {
    # Build ferry-pg once and run a private copy from now on: starting and (in the trap) stopping
    # then never wait for a cargo lock held by another build sharing the target dir.
    local built
    built="$("$root/scripts/pg.sh" bin)" || return 1
    mkdir -p "$FERRY_TMP/bin" && cp "$built" "$FERRY_TMP/bin/ferry-pg" || return 1
    export FERRY_PG_BIN="$FERRY_TMP/bin/ferry-pg"
    pg_started=1 # from here on, the trap stops whatever may have started
    DATABASE_URL="$("$root/scripts/pg.sh" start "$pg_dir" </dev/null)" || return 1
    [[ -n "$DATABASE_URL" ]] || return 1
    export DATABASE_URL
    log "DATABASE_URL=$DATABASE_URL"
}
step "start PostgreSQL (scripts/pg.sh start)" start_cluster

if [[ -z "${DATABASE_URL:-}" || $pg_started -eq 0 ]] || ! "$root/scripts/pg.sh" url "$pg_dir" >/dev/null 2>&1; then
    skip "tests" "no PostgreSQL cluster"
    skip "doc tests" "no PostgreSQL cluster"
    skip "examples" "no PostgreSQL cluster"
else
    # -----------------------------------------------------------------------------------------
    # 5-7. Tests, doc tests, examples
    # -----------------------------------------------------------------------------------------
    if [[ $use_nextest -eq 1 ]]; then
        step "cargo nextest run" with_timeout cargo nextest run "${scope[@]}" --no-fail-fast --no-tests=warn
    else
        step "cargo test" with_timeout cargo test "${scope[@]}" --no-fail-fast --lib --bins --tests
    fi
    step "cargo test --doc" with_timeout cargo test "${scope[@]}" --doc --no-fail-fast
    if [[ $examples -eq 1 ]]; then
        step "examples (scripts/run-examples.sh)" with_timeout "$root/scripts/run-examples.sh"
    else
        skip "examples" "--no-examples"
    fi
fi

summary
[[ $failures -eq 0 ]]
