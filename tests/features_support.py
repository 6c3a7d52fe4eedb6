"""Shared helper of the features API tests: the demo registry, with its structure count."""

from __future__ import annotations

import sqlalchemy as sa

from tests import conftest


def load_demo(engine: sa.Engine) -> int:
    """Load the demo registry (conftest.load_demo); return the structure count."""
    conftest.load_demo(engine)
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM structures")).scalar_one())
