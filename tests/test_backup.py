"""pg_dump / pg_restore of the demo database gives back the same registry."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from carteco import backup
from tests.conftest import REGISTRY_CHECKSUM, create_database, drop_database


def _state(url: str) -> tuple[str, int, int]:
    eng = sa.create_engine(url)
    with eng.connect() as conn:
        digest = conn.execute(sa.text(REGISTRY_CHECKSUM)).scalar_one()
        territories = conn.execute(sa.text("SELECT count(*) FROM territories")).scalar_one()
        located = conn.execute(
            sa.text("SELECT count(*) FROM structures WHERE commune_code IS NOT NULL")
        ).scalar_one()
    eng.dispose()
    return digest, territories, located


def test_dump_and_restore_demo(database_url: str, demo_registry, tmp_path: Path) -> None:
    out = tmp_path / "carteco.dump"
    assert backup.dump(database_url, out) > 100_000
    target = create_database("carteco_restore")
    try:
        backup.restore(target, out)
        assert _state(target) == _state(database_url)
        assert _state(target)[2] > 200
    finally:
        drop_database(target)
