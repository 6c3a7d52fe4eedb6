"""Reads served by a real streaming replica; writes on the primary reach it."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import sqlalchemy as sa
from fastapi.testclient import TestClient

from api.factory import create_app
from carteco import db
from carteco.demo import DEMO_SOURCES
from carteco.embedded import EmbeddedCluster
from carteco.importer import run_import
from carteco.importer.mapping import Mapping
from carteco.sectors import sync_sectors
from carteco.settings import Settings
from geodata.loader import load_all
from tests.conftest import free_port


def test_reads_go_to_a_streaming_replica() -> None:
    root = Path("/tmp") / f"carteco-replica-{os.getpid()}"
    settings = Settings(database_url=None, data_dir=root / "primary", embedded_port=free_port())
    primary = db.embedded_cluster(settings)
    replica = EmbeddedCluster(root=root / "replica" / "postgres", port=free_port())
    try:
        url = db.resolve_url(settings)
        db.upgrade(url)
        eng = sa.create_engine(url)
        with eng.begin() as conn:
            sync_sectors(conn)
            load_all(conn)
        replica_url = primary.make_replica(replica)
        app = create_app(
            settings.model_copy(
                update={"database_url": url, "database_replica_urls": [replica_url]}
            )
        )
        rep = sa.create_engine(replica_url)
        with rep.connect() as conn:
            assert conn.execute(sa.text("SELECT pg_is_in_recovery()")).scalar_one() is True
        with TestClient(app) as client:
            # The map's data comes from the replica: it answers while the primary is empty…
            assert client.get("/collections/structures/items?limit=100").json()["features"] == []
            coop = next(d for d in DEMO_SOURCES if d.source.startswith("supermarches"))
            report = run_import(eng, coop.path, coop.source, Mapping.from_file(coop.mapping_path))
            assert report.created == 17
            # …and an import on the primary appears there (streaming, asynchronous).
            deadline = time.monotonic() + 10
            while True:
                n = len(client.get("/collections/structures/items?limit=100").json()["features"])
                if n == 17 or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            assert n == 17
            # The queries did run on the replica, not the primary.
            engine_used = app.state.read_cycle.__next__()
            with engine_used.connect() as conn:
                assert conn.execute(sa.text("SELECT pg_is_in_recovery()")).scalar_one() is True
        with rep.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM structures")).scalar_one() == 17
            # A replica refuses writes: they can only go to the primary.
            try:
                conn.execute(sa.text("DELETE FROM structures"))
                raise AssertionError("the replica accepted a write")
            except sa.exc.InternalError as exc:
                assert "read-only transaction" in str(exc.orig)
        rep.dispose()
        eng.dispose()
    finally:
        replica.stop()
        primary.stop()
        shutil.rmtree(root, ignore_errors=True)
