"""MVT rendering in PostGIS (ST_AsMVT on ST_TileEnvelope), tile-grid checks via morecantile."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import morecantile
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from carteco.errors import CartecoError
from tiles.layers import BUFFER, CLUSTER_CELLS, CLUSTER_MAXZOOM, EXTENT, TileLayer

SQL_DIR = Path(__file__).parent / "sql"
TMS_ID = "WebMercatorQuad"
MVT_MEDIA_TYPE = "application/vnd.mapbox-vector-tile"
# The cluster grid (tile_grid) holds z14 and z16 cells: with 16 cells per tile side, z14
# serves zooms 0–10 and z16 zooms 11–12.
GRID_ZOOMS = (14, 16)
# Half the length of the Web Mercator square's side, in metres.
ORIGIN = 20037508.342789244


class TileRangeError(CartecoError, ValueError):
    """A tile outside the tile matrix set or the layer's zoom range (HTTP 404)."""

    kind = "not_found"


@dataclass(frozen=True)
class TileFilter:
    """A compiled filter on structures: an SQL fragment on alias `s`, its bound values, a key."""

    sql: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    key: str = ""
    # `as_of`: SQL of the structures as they stood then (carteco/history.py), replacing the
    # table in the tile queries; its instant is bound among `params`.
    source: str = ""

    def __bool__(self) -> bool:
        return bool(self.sql or self.source)


NO_FILTER = TileFilter()


@lru_cache(maxsize=1)
def tms() -> morecantile.TileMatrixSet:
    """The WebMercatorQuad tile matrix set."""
    return morecantile.tms.get(TMS_ID)


@lru_cache(maxsize=8)
def _sql(name: str) -> str:
    return (SQL_DIR / name).read_text(encoding="utf-8")


def check_tile(layer: TileLayer, z: int, x: int, y: int) -> None:
    """Raise TileRangeError when z/x/y is outside the grid or the layer's zooms."""
    if z < layer.minzoom or z > layer.maxzoom:
        raise TileRangeError(
            f"niveau {z} hors de la plage de la couche {layer.id} "
            f"({layer.minzoom} à {layer.maxzoom})"
        )
    matrix = tms().matrix(z)
    if not (0 <= x < matrix.matrixWidth and 0 <= y < matrix.matrixHeight):
        raise TileRangeError(
            f"tuile {z}/{y}/{x} hors de la grille (ligne et colonne de 0 à "
            f"{matrix.matrixWidth - 1})"
        )


def tile_size_m(z: int) -> float:
    """Side of a tile at zoom z, in Web Mercator metres."""
    return 2 * ORIGIN / (1 << z)


def grid_available(conn: Connection) -> bool:
    """Whether the database has the cluster grid (migration 0005 with tile_grid.z)."""
    return bool(
        conn.execute(
            sa.text(
                "SELECT EXISTS (SELECT 1 FROM information_schema.columns "
                "WHERE table_name = 'tile_grid' AND column_name = 'z')"
            )
        ).scalar_one()
    )


def tile_query(
    layer: TileLayer,
    z: int,
    x: int,
    y: int,
    filt: TileFilter = NO_FILTER,
    use_grid: bool = True,
) -> tuple[str, dict[str, Any]]:
    """The SQL text and bound values rendering one tile (one bytea column)."""
    params: dict[str, Any] = {"z": z, "x": x, "y": y, "margin": BUFFER / EXTENT}
    if layer.kind == "structures":
        if z <= CLUSTER_MAXZOOM and not filt and use_grid:
            # Unfiltered clusters: sum the precomputed cluster grid instead of every point.
            gz = next(g for g in GRID_ZOOMS if z <= g - 4)
            sql = _sql("structures_grid.sql")
            params.update(gz=gz, shift=gz - z, cshift=gz - z - 4)
        elif z <= CLUSTER_MAXZOOM:
            sql = _sql("structures_clusters.sql")
            params["cell"] = tile_size_m(z) / CLUSTER_CELLS
        else:
            sql = _sql("structures_points.sql")
        # The fragment comes from the filter compiler: parameterised, identifiers allow-listed.
        sql = sql.replace("/*filter*/", (" AND (" + filt.sql + ")") if filt.sql else "")
        if filt.source:
            # A past date: the clusters and points of the registry as it stood then.
            sql = sql.replace("FROM structures t", f"FROM {filt.source} t")
            sql = sql.replace("LEFT JOIN structures s", f"LEFT JOIN {filt.source} s")
        params.update(filt.params)
    else:
        sql = _sql("territories.sql").replace("/*filter*/", "")
        params.update(layer=layer.id, level=layer.level, tolerance=360.0 / (1 << z) / 1024)
    return sql, params


def render_tile(
    conn: Connection,
    layer: TileLayer,
    z: int,
    x: int,
    y: int,
    filt: TileFilter = NO_FILTER,
    use_grid: bool | None = None,
) -> bytes:
    """Render one MVT tile in PostGIS (b'' when empty)."""
    check_tile(layer, z, x, y)
    if use_grid is None:
        use_grid = grid_available(conn)
    sql, params = tile_query(layer, z, x, y, filt, use_grid=use_grid)
    return bytes(conn.execute(sa.text(sql), params).scalar_one())


def etag_of(data: bytes) -> str:
    """A strong ETag for a tile body."""
    return '"' + hashlib.blake2b(data, digest_size=12).hexdigest() + '"'


def tiles_covering(lon: float, lat: float, maxzoom: int) -> list[tuple[int, int, int]]:
    """(z, x, y) of the tile holding a point at each zoom 0..maxzoom."""
    return [(t.z, t.x, t.y) for t in (tms().tile(lon, lat, z) for z in range(maxzoom + 1))]
