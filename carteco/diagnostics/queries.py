"""The diagnostic's one query module: every query of `indicators` and `report` is a file of
`sql/`, loaded here; the report's map geometries are read by the functions below."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

SQL_DIR = Path(__file__).parent / "sql"


@cache
def sql(name: str) -> sa.TextClause:
    """The statement of `sql/<name>` (read once)."""
    return sa.text((SQL_DIR / name).read_text(encoding="utf-8"))


def commune_outlines(conn: Connection, dep: str) -> Sequence[Row[Any]]:
    """(code, GeoJSON text `g`) of every commune outline of département `dep`."""
    return conn.execute(sql("report_commune_outlines.sql"), {"d": dep}).all()


def departement_outline(conn: Connection, dep: str) -> str | None:
    """GeoJSON text of the outline of département `dep`, or None when it is not loaded."""
    value = conn.execute(sql("report_departement_outline.sql"), {"d": dep}).scalar()
    return str(value) if value is not None else None


def qpv_outlines(conn: Connection, dep: str) -> Sequence[Row[Any]]:
    """(code, name, commune_code, GeoJSON text `g`) of every QPV of département `dep`."""
    return conn.execute(sql("report_qpv_outlines.sql"), {"d": dep}).all()


def priced_local_sales(conn: Connection, dep: str) -> Sequence[Row[Any]]:
    """Located sales of premises with a price per m² in département `dep`, by date."""
    return conn.execute(sql("report_priced_sales.sql"), {"d": dep}).all()


# The basemap's frame: the département's extent widened by this share of its size on each side,
# and outlines simplified to this fraction of that size (a few pixels on a report map).
BASEMAP_MARGIN = 0.12
BASEMAP_DETAIL = 1200


def basemap_communes(conn: Connection, dep: str) -> Sequence[Row[Any]]:
    """Communes in the frame of `dep`'s maps: code, name, population, own (in `dep`), label
    point (lon, lat) and, for other départements' communes, a simplified outline `g`."""
    params = {"d": dep, "margin": BASEMAP_MARGIN, "detail": BASEMAP_DETAIL}
    return conn.execute(sql("report_basemap_communes.sql"), params).all()


def basemap_departements(conn: Connection, dep: str) -> Sequence[Row[Any]]:
    """The other départements in the frame of `dep`'s maps: outline `g` and label point."""
    params = {"d": dep, "margin": BASEMAP_MARGIN, "detail": BASEMAP_DETAIL}
    return conn.execute(sql("report_basemap_departements.sql"), params).all()


def basemap_stations(conn: Connection, dep: str) -> Sequence[Row[Any]]:
    """Stations (name, mode, line, lon, lat) in the frame of `dep`'s maps."""
    params = {"d": dep, "margin": BASEMAP_MARGIN}
    return conn.execute(sql("report_basemap_stations.sql"), params).all()
