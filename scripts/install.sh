#!/usr/bin/env bash
# Prepare this checkout on Debian 12: system packages, the Python virtualenv and Azurite.
# Safe to run again: each step is skipped when its result is already in place.
# Usage: scripts/install.sh [--quiet]   (--quiet prints only on failure)
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
QUIET=0
[ "${1:-}" = "--quiet" ] && QUIET=1
mkdir -p "$ROOT/.cache"
LOG="$ROOT/.cache/install.log"
: >"$LOG"

say() { [ "$QUIET" = 1 ] || echo "install.sh: $*"; }

run() {
    if [ "$QUIET" = 1 ]; then
        "$@" >>"$LOG" 2>&1 || { echo "install.sh: failed: $*" >&2; tail -n 40 "$LOG" >&2; return 1; }
    else
        "$@"
    fi
}

as_root() {
    if [ "$(id -u)" = 0 ]; then
        run env DEBIAN_FRONTEND=noninteractive "$@"
    elif command -v sudo >/dev/null 2>&1; then
        run sudo env DEBIAN_FRONTEND=noninteractive "$@"
    else
        echo "install.sh: installing system packages needs root or sudo: $*" >&2
        return 1
    fi
}

system_packages() {
    local missing=()
    command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
    if [ ! -x .venv/bin/python ] && ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
        missing+=(python3-venv)
    fi
    # A Node.js from another source (NodeSource) brings its own npm; Debian's needs the npm package.
    command -v node >/dev/null 2>&1 || missing+=(nodejs)
    command -v npm >/dev/null 2>&1 || missing+=(npm)
    [ "${#missing[@]}" = 0 ] && return 0
    say "installing ${missing[*]}"
    as_root apt-get update
    as_root apt-get install -y --no-install-recommends "${missing[@]}"
}

python_env() {
    if [ ! -x .venv/bin/python ]; then
        say "creating .venv"
        run python3 -m venv .venv
    fi
    local stamp=.venv/.batchyard-pyproject.sha256
    local want
    want=$(sha256sum pyproject.toml | cut -d' ' -f1)
    if [ -x .venv/bin/batchyard ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
        return 0
    fi
    say "installing the project into .venv"
    run .venv/bin/python -m pip install --disable-pip-version-check -q -e '.[dev]'
    echo "$want" >"$stamp"
}

azurite() {
    if [ -x node_modules/.bin/azurite-blob ] && cmp -s package-lock.json node_modules/.batchyard-package-lock.json; then
        return 0
    fi
    say "installing Azurite into node_modules"
    run npm ci --no-audit --no-fund
    cp package-lock.json node_modules/.batchyard-package-lock.json
}

system_packages
python_env
azurite
say "ready"
