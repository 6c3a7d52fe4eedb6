"""The embedded default: Carteco creates, serves from, and stops its own PostgreSQL cluster."""

import os
import shutil
from pathlib import Path

import sqlalchemy as sa
from fastapi.testclient import TestClient

from api.factory import create_app
from carteco import db
from carteco.settings import Settings
from tests.conftest import free_port


def test_embedded_cluster_lifecycle() -> None:
    # Not under pytest's tmp (mode 700 as root): the cluster runs as the `postgres` user.
    root = Path("/tmp") / f"carteco-embedded-{os.getpid()}"
    settings = Settings(database_url=None, data_dir=root, embedded_port=free_port())
    cluster = db.embedded_cluster(settings)
    try:
        url = db.resolve_url(settings)
        assert cluster.running()
        assert f":{settings.embedded_port}/" in url
        db.upgrade(url)
        app = create_app(settings.model_copy(update={"database_url": url}))
        with TestClient(app) as client:
            r = client.get("/healthz")
        assert r.status_code == 200 and r.json()["postgis"].startswith("3")
        eng = sa.create_engine(url)
        with eng.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM structures")).scalar_one() == 0
        eng.dispose()
        # A second start reuses the running cluster.
        assert db.resolve_url(settings) == url
    finally:
        cluster.stop()
        assert not cluster.running()
        shutil.rmtree(root, ignore_errors=True)
