#!/usr/bin/env bash
# Install what is missing, then run the whole stack in the foreground: scripts/up.sh [batchyard up flags]
set -euo pipefail

cd "$(dirname "$0")/.."
./scripts/install.sh
exec .venv/bin/batchyard up "$@"
