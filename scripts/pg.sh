#!/usr/bin/env bash
# Start/stop a throwaway PostgreSQL cluster in DIR, exactly as etl-testkit's TempPostgres does
# (initdb -A trust -U postgres, 127.0.0.1 on a free port, durability off; as root it runs the
# server as the OS user `postgres` through runuser). A thin wrapper over the `ferry-pg` binary
# of crates/testkit, built on first use.
#
#   scripts/pg.sh start DIR              initdb DIR if needed, start (or reuse) it, print its URL
#   scripts/pg.sh url DIR                print the URL of the server running on DIR (exit 1 if none)
#   scripts/pg.sh stop DIR [--keep-data] stop it and delete DIR (unless --keep-data)
#   scripts/pg.sh bin                    build ferry-pg and print the path of the binary
#
# The URL is the only thing on stdout: DATABASE_URL=$(scripts/pg.sh start /tmp/pg)
# If FERRY_PG_BIN names an executable, it is used as is (no cargo, no build lock): scripts/test.sh
# sets it so that its cleanup never waits for another cargo process.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
usage="usage: $0 start DIR | url DIR | stop DIR [--keep-data] | bin"
[[ $# -ge 1 ]] || { echo "$usage" >&2; exit 2; }

bin="${FERRY_PG_BIN:-}"
if [[ -z "$bin" || ! -x "$bin" ]]; then
    # The JSON build messages name the executable (wherever CARGO_TARGET_DIR is).
    bin="$(cargo build --quiet --manifest-path "$root/Cargo.toml" -p etl-testkit --bin ferry-pg \
        --message-format=json-render-diagnostics </dev/null |
        grep -o '"executable":"[^"]*ferry-pg"' | tail -n1 | sed 's/^"executable":"//; s/"$//')"
    [[ -n "$bin" && -x "$bin" ]] || { echo "pg.sh: could not build the ferry-pg binary (crates/testkit)" >&2; exit 1; }
fi
if [[ "$1" == bin ]]; then
    echo "$bin"
    exit 0
fi
[[ $# -ge 2 ]] || { echo "$usage" >&2; exit 2; }
exec "$bin" "$@" </dev/null
