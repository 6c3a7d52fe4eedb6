"""The schema migrates up, down to nothing, and up again, on a real PostGIS database."""

import sqlalchemy as sa

from carteco import db
from tests.conftest import create_database, drop_database


def _tables(url: str) -> set[str]:
    eng = sa.create_engine(url)
    with eng.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        ).scalars()
        out = set(rows) - {"spatial_ref_sys"}
    eng.dispose()
    return out


def test_upgrade_downgrade_upgrade() -> None:
    url = create_database("carteco_migr")
    try:
        db.upgrade(url)
        tables = _tables(url)
        assert {"structures", "territories", "sectors", "import_runs", "stations"} <= tables
        eng = sa.create_engine(url)
        with eng.connect() as conn:
            assert db.current_revisions(conn) == db.head_revisions(url)
        eng.dispose()
        db.downgrade(url, "base")
        assert _tables(url) == {"alembic_version"}
        db.upgrade(url)
        assert "structures" in _tables(url)
    finally:
        drop_database(url)
