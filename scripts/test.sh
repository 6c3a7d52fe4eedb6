#!/usr/bin/env bash
# Run every test (lint, types, pytest against a real throwaway PostGIS database).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
ruff check carteco api tiles geodata tests bench
ruff format --check carteco api tiles geodata tests bench
mypy
# loadfile: a module runs whole on one worker, so its module-scoped data is never interleaved.
pytest -n "${CARTECO_TEST_WORKERS:-2}" --dist loadfile "$@"
