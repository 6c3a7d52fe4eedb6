"""Shared helpers of the features API tests: the demo registry loaded once per module."""

from __future__ import annotations

import sqlalchemy as sa

from tests.conftest import REGISTRY_TABLES


def load_demo(engine: sa.Engine) -> int:
    """Empty the registry and import the three IDF demo files; return the structure count."""
    from carteco.demo import DEMO_SOURCES
    from carteco.importer import run_import
    from carteco.importer.mapping import Mapping

    with engine.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {', '.join(REGISTRY_TABLES)} RESTART IDENTITY CASCADE"))
    for d in DEMO_SOURCES:
        report = run_import(
            engine,
            d.path,
            source=d.source,
            mapping=Mapping.from_file(d.mapping_path),
            skip_invalid=d.skip_invalid,
        )
        assert report.status == "succeeded", report.as_dict()
    with engine.begin() as conn:
        conn.execute(sa.text("ANALYZE structures"))
        return int(conn.execute(sa.text("SELECT count(*) FROM structures")).scalar_one())
