#!/usr/bin/env bash
# main (this tree) against the wave-1 code (ee9cb8f), every HTTP bench side by side.
#
#   bash bench/compare_wave1.sh                  # 3 interleaved repetitions, default sizes
#   REPS=5 bash bench/compare_wave1.sh --n 1000000 --requests 200 --tiles 450
#
# Sets up /tmp/old (a git worktree at ee9cb8f) and /tmp/old-deps (the packages wave-1 imports
# that main dropped: folium and its branca/xyzservices, psycopg-pool, rtree), then runs
# bench/compare_wave1.py, which prints the table of medians and ratios (main ÷ wave-1).
# Extra arguments go to bench/compare_wave1.py (see its --help).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OLD="${OLD:-/tmp/old}"
OLD_REV="${OLD_REV:-ee9cb8f}"
OLD_DEPS="${OLD_DEPS:-/tmp/old-deps}"
PY="$ROOT/.venv/bin/python"

if [ ! -e "$OLD/.git" ]; then
  git -C "$ROOT" worktree add --detach "$OLD" "$OLD_REV"
fi
if [ ! -d "$OLD_DEPS/folium" ]; then
  "$PY" -m pip install -q --target "$OLD_DEPS" --no-deps \
    "folium>=0.17" branca xyzservices "psycopg-pool>=3.2" "rtree>=1.2"
fi
echo "machine: $(nproc) cores, $(uptime)"
cd "$ROOT"
"$PY" -m bench.compare_wave1 --old "$OLD" --old-pythonpath "$OLD_DEPS" --reps "${REPS:-3}" "$@"
echo "machine after: $(uptime)"
