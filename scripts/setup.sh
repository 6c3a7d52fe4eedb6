#!/usr/bin/env bash
# Idempotent setup on Debian 12 (as root) or any machine with PostgreSQL + PostGIS binaries:
# system packages (PostGIS, GDAL, Chromium for browser tests), a virtualenv with Carteco.
# Set CARTECO_SKIP_APT=1 to skip the system packages.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
if [ "${CARTECO_SKIP_APT:-0}" != "1" ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  pgver=$(ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -1)
  pgver=${pgver:-15}
  [ -x "/usr/lib/postgresql/$pgver/bin/initdb" ] || need_apt+=("postgresql-$pgver")
  [ -f "/usr/share/postgresql/$pgver/extension/postgis.control" ] || need_apt+=("postgresql-$pgver-postgis-3")
  command -v ogrinfo >/dev/null || need_apt+=(gdal-bin)
  command -v chromium >/dev/null || need_apt+=(chromium)
  command -v node >/dev/null || need_apt+=(nodejs npm)
  [ -x /usr/sbin/pgbouncer ] || need_apt+=(pgbouncer)
  command -v wrk >/dev/null || need_apt+=(wrk)
  command -v redis-server >/dev/null || need_apt+=(redis-server)
  if [ ${#need_apt[@]} -gt 0 ]; then
    echo "setup: apt-get install ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
    # The Debian package starts a pgbouncer service on 6432: Carteco's tests start their own.
    if [[ " ${need_apt[*]} " == *" pgbouncer "* ]]; then
      (systemctl stop pgbouncer || service pgbouncer stop || pkill -x pgbouncer) >/dev/null 2>&1 || true
    fi
  fi
  # Installing PostGIS may upgrade (and so restart) PostgreSQL: make sure the server is up.
  if command -v pg_ctlcluster >/dev/null && [ -d "/etc/postgresql/$pgver/main" ]; then
    pg_ctlcluster --skip-systemctl-redirect "$pgver" main start 2>/dev/null || true
  fi
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.carteco-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/pip install -q --upgrade pip >/dev/null
  .venv/bin/pip install -q -e '.[dev]'
  touch "$stamp"
fi
echo "setup: ok ($(.venv/bin/python --version), $(.venv/bin/carteco --help >/dev/null && echo carteco))"
