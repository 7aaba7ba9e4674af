#!/usr/bin/env bash
# Start/stop a throwaway PostgreSQL cluster in DIR, exactly as etl-testkit's TempPostgres does
# (initdb -A trust -U postgres, 127.0.0.1 on a free port, durability off; as root it runs the
# server as the OS user `postgres` through runuser). A thin wrapper over the `ferry-pg` binary
# of crates/testkit, built on first use.
#
#   scripts/pg.sh start DIR              initdb DIR if needed, start (or reuse) it, print its URL
#   scripts/pg.sh url DIR                print the URL of the server running on DIR (exit 1 if none)
#   scripts/pg.sh stop DIR [--keep-data] stop it and delete DIR (unless --keep-data)
#
# The URL is the only thing on stdout: DATABASE_URL=$(scripts/pg.sh start /tmp/pg)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ $# -lt 2 ]]; then
    echo "usage: $0 start DIR | url DIR | stop DIR [--keep-data]" >&2
    exit 2
fi
exec cargo run --quiet --manifest-path "$root/Cargo.toml" -p etl-testkit --bin ferry-pg -- "$@" </dev/null
