#!/usr/bin/env bash
# Packages every publishable crate and verifies each tarball compiles on its own:
#   cargo package --workspace (minus the unpublished ones), workspace crates packaged
#   against each other through cargo's temporary local registry, third-party
#   dependencies from crates.io (needs the crates.io index: network or a warm cache).
#
# NOT part of CI (scripts/test.sh / .ci/run): every tarball is compiled again alone, with
# its own feature set, so this takes tens of minutes on 2 cores. Run it before a release
# or after touching a Cargo.toml.
#
# usage: scripts/package-check.sh [-j JOBS] [extra cargo package args...]
#   JOBS defaults to 1 (the machine is shared); CARGO_TARGET_DIR is honoured.
#   The tarballs land in $CARGO_TARGET_DIR/package (default target/package).
# exit: cargo's status (0: every crate packaged and compiled).
set -euo pipefail
cd "$(dirname "$0")/.."

jobs=1
if [[ ${1:-} == -j ]]; then jobs=$2; shift 2; fi

# publish = false: not packaged. Keep in step with the manifests (checked below).
unpublished=(etl-examples etl-benches etl-testkit)

# Every package with `publish = false` must be in the list above, and only those, so a
# new unpublished crate fails here rather than in the middle of the packaging.
mapfile -t declared < <(
    grep -l '^publish = false' crates/*/Cargo.toml examples/Cargo.toml benches/Cargo.toml 2>/dev/null |
        xargs -r grep -h -m1 '^name = ' | sed 's/name = "\(.*\)"/\1/' | sort
)
mapfile -t listed < <(printf '%s\n' "${unpublished[@]}" | sort)
if [[ "${declared[*]}" != "${listed[*]}" ]]; then
    echo "package-check: publish = false in: ${declared[*]}; listed here: ${listed[*]}" >&2
    exit 2
fi

exclude=()
for p in "${unpublished[@]}"; do exclude+=(--exclude "$p"); done

# cargo verifies each tarball against the others through a temporary local registry. It
# treats those crates as it treats any registry crate, as never changing while the version
# stays: their unpacked sources under $CARGO_HOME/registry/src/-<hash>/ (the hash is of the
# registry's path, the same for every run with this target dir) and their compiled
# artifacts are reused, so a second run would verify against the first run's code. Remove
# both for this workspace's crates first (their dependencies stay compiled).
cargo_home=${CARGO_HOME:-$HOME/.cargo}
mapfile -t packages < <(cargo metadata --no-deps --format-version 1 |
    python3 -c 'import json, sys
for p in json.load(sys.stdin)["packages"]: print(p["name"], p["version"])')
clean=()
for line in "${packages[@]}"; do
    read -r name version <<<"$line"
    if [[ " ${unpublished[*]} " == *" $name "* ]]; then continue; fi
    for d in "$cargo_home"/registry/src/-*/"$name-$version"; do
        if [[ -d $d ]]; then rm -rf -- "$d"; fi
    done
    clean+=(-p "$name")
done
cargo clean --quiet "${clean[@]}"

set -x
cargo package --workspace "${exclude[@]}" -j "$jobs" "$@"
