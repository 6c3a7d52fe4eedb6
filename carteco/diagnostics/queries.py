"""The diagnostic's one query module: every query of `indicators` and `report` is a file of
`sql/`, loaded here; the report's map geometries are read by the functions below."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

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


class BasemapFrame(NamedTuple):
    """The frame of a département's maps: a box in EPSG:4326 (the SRID of the outlines and
    stations it selects, so their indexed columns are compared as they are) and its size."""

    xmin: float
    ymin: float
    xmax: float
    ymax: float
    size: float  # the département's extent's larger side, in degrees

    def box(self) -> dict[str, float]:
        """The box as the bound parameters of the basemap queries."""
        return {"xmin": self.xmin, "ymin": self.ymin, "xmax": self.xmax, "ymax": self.ymax}

    def tolerance(self) -> float:
        """The simplification tolerance of the outlines drawn in this frame (degrees)."""
        return self.size / BASEMAP_DETAIL


def basemap_frame(conn: Connection, dep: str) -> BasemapFrame | None:
    """The frame of `dep`'s maps, computed once for the basemap queries; None when the
    département is not loaded."""
    row = conn.execute(
        sql("report_basemap_frame.sql"), {"d": dep, "margin": BASEMAP_MARGIN}
    ).first()
    return None if row is None else BasemapFrame(*row)


def basemap_communes(conn: Connection, dep: str, frame: BasemapFrame) -> Sequence[Row[Any]]:
    """Communes in `frame` (`dep`'s maps): code, name, population, own (in `dep`), label
    point (lon, lat) and, for other départements' communes, a simplified outline `g`."""
    params = {"d": dep, **frame.box(), "tolerance": frame.tolerance()}
    return conn.execute(sql("report_basemap_communes.sql"), params).all()


def basemap_departements(conn: Connection, dep: str, frame: BasemapFrame) -> Sequence[Row[Any]]:
    """The other départements in `frame` (`dep`'s maps): outline `g` and label point."""
    params = {"d": dep, **frame.box(), "tolerance": frame.tolerance()}
    return conn.execute(sql("report_basemap_departements.sql"), params).all()


def basemap_stations(conn: Connection, frame: BasemapFrame) -> Sequence[Row[Any]]:
    """Stations (name, mode, line, lon, lat) in `frame`."""
    return conn.execute(sql("report_basemap_stations.sql"), frame.box()).all()
