"""Faults: the database restarts under traffic; an import is killed halfway."""

from __future__ import annotations

import csv
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import sqlalchemy as sa
import uvicorn

from api.factory import create_app
from carteco import db
from carteco.importer.pipeline import reap_dead_runs
from carteco.settings import Settings
from tests.conftest import ROOT, free_port


def _serve(settings: Settings) -> tuple[uvicorn.Server, threading.Thread, str]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return server, thread, f"http://127.0.0.1:{port}"


def test_database_restart_gives_503_then_recovers() -> None:
    root = Path("/tmp") / f"carteco-fault-{os.getpid()}"
    settings = Settings(
        database_url=None, data_dir=root, embedded_port=free_port(), pool_timeout_s=2
    )
    cluster = db.embedded_cluster(settings)
    server = None
    try:
        url = db.resolve_url(settings)
        db.upgrade(url)
        server, thread, base = _serve(settings.model_copy(update={"database_url": url}))
        with httpx.Client(base_url=base, timeout=10) as c:
            assert c.get("/healthz").status_code == 200
            cluster.stop()
            t0 = time.monotonic()
            codes = [c.get("/healthz").status_code for _ in range(5)]
            assert set(codes) == {503}, codes  # an answer, not a hang or a 500
            assert time.monotonic() - t0 < 30
            r = c.get("/healthz")
            assert r.headers["content-type"].startswith("application/problem+json")
            assert r.headers["retry-after"]
            cluster.start()
            back = time.monotonic()
            while c.get("/healthz").status_code != 200:
                assert time.monotonic() - back < 5, "no recovery within 5 s"
                time.sleep(0.1)
            recovered = time.monotonic() - back
        print(f"\nrecovered {recovered:.2f} s after PostgreSQL came back, no worker restart")
    finally:
        if server is not None:
            server.should_exit = True
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def _registry_checksum(engine: sa.Engine) -> str:
    with engine.connect() as conn:
        return str(
            conn.execute(
                sa.text(
                    "SELECT md5(coalesce(string_agg(s::text, '|' ORDER BY id), '')) "
                    "FROM structures s"
                )
            ).scalar_one()
        )


def _big_csv(path: Path, n: int) -> None:
    rnd = random.Random(7)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "nom", "latitude", "longitude", "secteur"])
        for i in range(n):
            w.writerow(
                [
                    f"syn-{i}",
                    f"Structure synthétique {i}",
                    f"{48.6 + rnd.random() * 0.5:.6f}",
                    f"{2.0 + rnd.random() * 0.8:.6f}",
                    "Réemploi",
                ]
            )


def test_kill_import_halfway_leaves_registry_unchanged(
    database_url: str, demo_registry: sa.Engine, tmp_path: Path
) -> None:
    engine = demo_registry
    big = tmp_path / "synthetique_100k.csv"
    _big_csv(big, 100_000)
    before = _registry_checksum(engine)
    env = {**os.environ, "CARTECO_DATABASE_URL": database_url}
    proc = subprocess.Popen(
        [sys.executable, "-m", "carteco.cli", "import", str(big), "--source", "synthetique"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        with engine.connect() as conn:
            while True:
                assert proc.poll() is None, "the import finished before it could be killed"
                busy = conn.execute(
                    sa.text(
                        # This database only: the other test worker imports into its own.
                        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                        "AND datname = current_database() "
                        "AND query LIKE '%INSERT INTO structures%' AND pid <> pg_backend_pid()"
                    )
                ).scalar_one()
                conn.commit()
                if busy:
                    break
                assert time.monotonic() < deadline
                time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)  # kill -9, in the middle of writing
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    # PostgreSQL notices the dead client and rolls its transaction back.
    deadline = time.monotonic() + 20
    while True:
        with engine.connect() as conn:
            left = conn.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND query LIKE '%INSERT INTO structures%' AND pid <> pg_backend_pid()"
                )
            ).scalar_one()
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert _registry_checksum(engine) == before
    # The killed process's connections end when PostgreSQL notices the dead sockets; its run
    # lock goes with them, and only then can the reaper call the run dead.
    reaped, deadline = 0, time.monotonic() + 20
    while not reaped and time.monotonic() < deadline:
        reaped = reap_dead_runs(engine)
        time.sleep(0.2)
    assert reaped == 1
    with engine.connect() as conn:
        status = conn.execute(
            sa.text("SELECT status FROM import_runs WHERE source = 'synthetique'")
        ).scalar_one()
    assert status == "failed"
    # A rerun succeeds.
    res = subprocess.run(
        [sys.executable, "-m", "carteco.cli", "import", str(big), "--source", "synthetique"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,  # a safety net, not a timing check: a loaded machine is slow here
    )
    assert res.returncode == 0, res.stderr
    assert "créées 100000" in res.stdout.replace("\u202f", "")
