#!/bin/sh
# Runs `cella bench` in a release build, with every baseline it compares against:
# installs bubblewrap (the cold-start baseline, `bwrap --unshare-all --ro-bind / / /bin/true`)
# with apt when it is missing. Extra arguments go to `cella bench`, e.g.
#   scripts/bench.sh --sandbox-samples 50
set -eu
cd "$(dirname "$0")/.."
if ! command -v bwrap >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1; then
        echo "installing bubblewrap (the sandbox cold-start baseline)" >&2
        SUDO=""
        [ "$(id -u)" -eq 0 ] || SUDO="sudo"
        $SUDO apt-get update -qq
        $SUDO apt-get install -y -qq bubblewrap
    else
        echo "warning: bwrap is not installed and apt-get is missing: the cold-start baseline will be skipped" >&2
    fi
fi
exec cargo run --release -- bench "$@"
