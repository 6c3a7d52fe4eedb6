"""The API behind PgBouncer in transaction mode (no session state relied on)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from api.factory import create_app
from carteco import db
from tests.conftest import free_port


def test_api_through_pgbouncer_transaction_mode(settings, demo_registry) -> None:
    pgbouncer = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    assert Path(pgbouncer).exists(), "pgbouncer missing: scripts/setup.sh installs it"
    u = make_url(settings.database_url)
    port = free_port()
    work = Path(tempfile.mkdtemp(prefix="carteco-pgbouncer-"))
    os.chmod(work, 0o777)
    ini = work / "pgbouncer.ini"
    ini.write_text(
        f"""[databases]
{u.database} = host={u.host} port={u.port} dbname={u.database} user={u.username}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
auth_type = trust
auth_file = {work}/users.txt
pool_mode = transaction
default_pool_size = 4
max_client_conn = 100
unix_socket_dir =
logfile = {work}/pgbouncer.log
pidfile = {work}/pgbouncer.pid
""",
        encoding="utf-8",
    )
    (work / "users.txt").write_text(f'"{u.username}" ""\n', encoding="utf-8")
    cmd = [pgbouncer, str(ini)]
    if os.geteuid() == 0:  # pgbouncer refuses to run as root
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                psycopg.connect(
                    host="127.0.0.1",
                    port=port,
                    user=u.username,
                    dbname=u.database,
                    prepare_threshold=None,
                ).close()
                break
            except psycopg.OperationalError:
                assert time.monotonic() < deadline, (work / "pgbouncer.log").read_text()
                time.sleep(0.1)
        url = f"postgresql+psycopg://{u.username}@127.0.0.1:{port}/{u.database}"
        app = create_app(settings.model_copy(update={"database_url": url, "pgbouncer": True}))
        with TestClient(app) as c:
            # Enough requests for psycopg to prepare statements if it were allowed to (> 5).
            for _ in range(12):
                r = c.get("/collections/structures/items?limit=5")
                assert r.status_code == 200, r.text
                assert c.get("/healthz").status_code == 200
            assert c.get("/readyz").status_code == 200
        # Through the pooler the session settings are set per transaction.
        eng = db.make_engine(settings.model_copy(update={"pgbouncer": True}), url)
        with eng.connect() as conn:
            jit = conn.exec_driver_sql("SHOW jit").scalar_one()
            timeout = conn.exec_driver_sql("SHOW statement_timeout").scalar_one()
        eng.dispose()
        assert (jit, timeout) == ("off", "30s")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)
