"""PMTiles v3 export of the tiled layers, for static hosting or a CDN."""

from __future__ import annotations

import gzip
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from pmtiles.tile import Compression, TileType, zxy_to_tileid
from pmtiles.writer import Writer
from sqlalchemy.engine import Connection, Engine

from tiles.layers import BASEMAP_LAYER_IDS, LAYERS, TileLayer
from tiles.mvt import NO_FILTER, TileFilter, grid_available, render_tile, tms

# The structures and the offline basemap (outlines, place names, stations): what the map draws.
DEFAULT_LAYERS = ("structures", *BASEMAP_LAYER_IDS)


@dataclass(frozen=True)
class ExportReport:
    """What an export wrote."""

    path: Path
    tiles: int
    empty_skipped: int
    bytes: int
    minzoom: int
    maxzoom: int
    bounds: tuple[float, float, float, float]
    seconds: float = 0.0


Bounds = tuple[float, float, float, float]
# The registry's shape when it holds nothing yet: metropolitan France.
FRANCE = (-5.5, 41.0, 10.0, 51.5)


def _extent(conn: Connection, sql: str, params: dict[str, object]) -> Bounds | None:
    row = conn.execute(
        # `sql` is one of this module's constant queries (_EXTENT_SQL), never outside text.
        sa.text(f"SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM ({sql}) x"),  # noqa: S608
        params,
    ).one()
    return None if row[0] is None else (float(row[0]), float(row[1]), float(row[2]), float(row[3]))


# Extent of the data of each kind of tiled layer (a SELECT of one `e` box2d).
_EXTENT_SQL = {
    "structures": "SELECT ST_Extent(geom) AS e FROM structures "
    "WHERE geom IS NOT NULL AND status = 'active'",
    "territory": "SELECT ST_Extent(geom) AS e FROM territories WHERE level = :level",
    "labels": "SELECT ST_Extent(geom) AS e FROM territories "
    "WHERE level IN ('departement', 'commune', 'arrondissement')",
    "stations": "SELECT ST_Extent(geom) AS e FROM stations",
}


def layer_bounds(conn: Connection, layer: TileLayer) -> Bounds | None:
    """Extent (lon/lat) of one tiled layer's data, or None when it has none."""
    return _extent(conn, _EXTENT_SQL[layer.kind], {"level": layer.level})


def data_bounds(engine: Engine, layers: Sequence[TileLayer]) -> Bounds:
    """Extent of the data to export: the located structures when exported, else the layers'.

    Reference layers are national (overseas included) while the registry is regional: the
    structures decide, so an Île-de-France registry exports Île-de-France, not the globe.
    """
    with engine.connect() as conn:
        if any(la.kind == "structures" for la in layers):
            found = layer_bounds(conn, LAYERS["structures"])
            if found:
                return found
        boxes = [b for la in layers if (b := layer_bounds(conn, la))]
    if not boxes:
        return FRANCE
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


def territory_bounds(engine: Engine, level: str, code: str) -> Bounds:
    """Extent of one territory (export of a `--territoire`); ValueError when unknown."""
    with engine.connect() as conn:
        found = _extent(
            conn,
            "SELECT ST_Extent(geom) AS e FROM territories WHERE level = :level AND code = :code",
            {"level": level, "code": code},
        )
    if found is None:
        raise ValueError(f"territoire inconnu : {level}:{code}")
    return found


def export_pmtiles(
    engine: Engine,
    out: Path,
    minzoom: int = 0,
    maxzoom: int = 12,
    layer_ids: Sequence[str] = DEFAULT_LAYERS,
    filt: TileFilter = NO_FILTER,
    progress: Callable[[int, int], None] | None = None,
    bbox: Bounds | None = None,
) -> ExportReport:
    """Render every non-empty tile of the layers over `bbox` (default: the data's extent)."""
    started = time.monotonic()
    if not 0 <= minzoom <= maxzoom <= 16:
        raise ValueError("zooms: 0 ≤ minzoom ≤ maxzoom ≤ 16")
    layers = []
    for lid in layer_ids:
        if lid not in LAYERS:
            raise ValueError(f"unknown layer {lid!r} (layers: {', '.join(LAYERS)})")
        layers.append(LAYERS[lid])
    if bbox is not None and not (
        -180 <= bbox[0] < bbox[2] <= 180 and -85 <= bbox[1] < bbox[3] <= 85
    ):
        raise ValueError("bbox : ouest,sud,est,nord en degrés (ouest < est, sud < nord)")
    w, s, e, n = bbox if bbox is not None else data_bounds(engine, layers)
    coords = sorted(
        ((t.z, t.x, t.y) for t in tms().tiles(w, s, e, n, list(range(minzoom, maxzoom + 1)))),
        key=lambda zxy: zxy_to_tileid(*zxy),
    )
    written = skipped = 0
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".part")
    with engine.connect() as conn, tmp.open("wb") as f:
        use_grid = grid_available(conn)
        writer = Writer(f)
        for i, (z, x, y) in enumerate(coords):
            # Serialized MVT tiles concatenate into one tile holding every layer.
            data = b"".join(
                render_tile(
                    conn, la, z, x, y, filt if la.kind == "structures" else NO_FILTER, use_grid
                )
                for la in layers
                if la.minzoom <= z <= la.maxzoom
            )
            if data:
                writer.write_tile(zxy_to_tileid(z, x, y), gzip.compress(data, mtime=0))
                written += 1
            else:
                skipped += 1
            if progress:
                progress(i + 1, len(coords))
        if written == 0:
            raise ValueError("nothing to export: every tile is empty")
        writer.finalize(
            {
                "tile_type": TileType.MVT,
                "tile_compression": Compression.GZIP,
                "min_lon_e7": int(w * 1e7),
                "min_lat_e7": int(s * 1e7),
                "max_lon_e7": int(e * 1e7),
                "max_lat_e7": int(n * 1e7),
                "center_zoom": min(max(minzoom, 8), maxzoom),
                "center_lon_e7": int((w + e) / 2 * 1e7),
                "center_lat_e7": int((s + n) / 2 * 1e7),
            },
            {
                "name": "Carteco",
                "format": "pbf",
                "attribution": "Carteco — CRESS et contributeurs",
                "vector_layers": [
                    {
                        "id": la.id,
                        "description": la.title,
                        "minzoom": max(la.minzoom, minzoom),
                        "maxzoom": min(la.maxzoom, maxzoom),
                        "fields": la.fields,
                    }
                    for la in layers
                ],
                "filter": filt.key or None,
            },
        )
    tmp.replace(out)
    return ExportReport(
        out,
        written,
        skipped,
        out.stat().st_size,
        minzoom,
        maxzoom,
        (w, s, e, n),
        time.monotonic() - started,
    )
