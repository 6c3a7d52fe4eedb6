#!/usr/bin/env bash
# Set everything up, load the Île-de-France demo and serve the map at http://127.0.0.1:8000/carte
# (embedded PostgreSQL cluster unless CARTECO_DATABASE_URL is set).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/carteco demo "$@"
