#!/usr/bin/env bash
# A persistent local PostgreSQL cluster for development (kept between sessions, in
# target/ferry-dev-pg unless FERRY_DEV_PG_DIR says otherwise).
#
#   eval "$(scripts/dev-db.sh)"       start it (or find it running) and export DATABASE_URL
#   scripts/dev-db.sh stop            stop it, keep the data
#   scripts/dev-db.sh destroy         stop it and delete the data
#
# Like the test clusters it listens on 127.0.0.1 only, trusts every local connection and runs
# with fsync off: do not keep anything precious in it.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="${FERRY_DEV_PG_DIR:-$root/target/ferry-dev-pg}"
case "${1:-start}" in
    start)
        url="$("$root/scripts/pg.sh" start "$dir")"
        echo "export DATABASE_URL=$url"
        echo "# dev cluster in $dir; stop it with: scripts/dev-db.sh stop" >&2
        ;;
    stop) "$root/scripts/pg.sh" stop "$dir" --keep-data ;;
    destroy) "$root/scripts/pg.sh" stop "$dir" ;;
    url) "$root/scripts/pg.sh" url "$dir" ;;
    *)
        echo "usage: $0 [start|stop|destroy|url]" >&2
        exit 2
        ;;
esac
