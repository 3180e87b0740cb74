#!/usr/bin/env bash
# Everything CI checks: lint, types, import contracts and the test suite. Extra arguments go to pytest.
set -euo pipefail

cd "$(dirname "$0")/.."
./scripts/install.sh --quiet
.venv/bin/ruff check controller nodeagent batchyard tests bench
.venv/bin/mypy controller nodeagent batchyard bench
.venv/bin/lint-imports
# pytest exits 5 when it collects nothing; with set -e that fails the script, as it should.
.venv/bin/pytest -q "$@"
