#!/usr/bin/env bash
# Run every test (lint, types, pytest against a real throwaway PostGIS database).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The shared rate-limit tests need a Redis on 127.0.0.1:6379: start a throwaway one if none.
if ! (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then
  if command -v redis-server >/dev/null; then
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
  else
    echo "test: no Redis on 127.0.0.1:6379 and no redis-server to start: tests/test_ratelimit.py will fail" >&2
  fi
fi
export PATH="$PWD/.venv/bin:$PATH"
ruff check carteco api tiles geodata tests bench
ruff format --check carteco api tiles geodata tests bench
mypy
# loadfile: a module runs whole on one worker, so its module-scoped data is never interleaved.
# The whole run has a budget (a normal run takes under 10 minutes on 2 cores): past it pytest
# is interrupted (SIGINT), which still prints what failed and where each worker was.
echo "test: pytest starts at $(date -u +%H:%M:%S), load $(cut -d' ' -f1-3 /proc/loadavg)," \
  "free disk $(df -h --output=avail . | tail -1 | tr -d ' ')"
timeout --signal=INT --kill-after=120 "${CARTECO_TEST_BUDGET_S:-3000}" \
  pytest -n "${CARTECO_TEST_WORKERS:-2}" --dist loadfile "$@"
