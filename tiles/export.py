"""PMTiles v3 export of the tiled layers, for static hosting or a CDN."""

from __future__ import annotations

import gzip
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from pmtiles.tile import Compression, TileType, zxy_to_tileid
from pmtiles.writer import Writer
from sqlalchemy.engine import Engine

from tiles.layers import LAYERS, TileLayer
from tiles.mvt import NO_FILTER, TileFilter, grid_available, render_tile, tms

DEFAULT_LAYERS = ("structures", "departements", "communes")


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


def data_bounds(engine: Engine, layers: Sequence[TileLayer]) -> tuple[float, float, float, float]:
    """Extent (lon/lat) of the located structures and the exported territory levels."""
    levels = [la.level for la in layers if la.level]
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(
                """
                SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM (
                  SELECT ST_Extent(g) AS e FROM (
                    SELECT geom AS g FROM structures WHERE geom IS NOT NULL AND status = 'active'
                    UNION ALL
                    SELECT geom FROM territories WHERE level = ANY(:levels)) u) x
                """
            ),
            {"levels": levels},
        ).one()
    if row[0] is None:
        return (-5.5, 41.0, 10.0, 51.5)  # metropolitan France when there is no data yet
    return (float(row[0]), float(row[1]), float(row[2]), float(row[3]))


def export_pmtiles(
    engine: Engine,
    out: Path,
    minzoom: int = 0,
    maxzoom: int = 12,
    layer_ids: Sequence[str] = DEFAULT_LAYERS,
    filt: TileFilter = NO_FILTER,
    progress: Callable[[int, int], None] | None = None,
) -> ExportReport:
    """Render every non-empty tile of the layers over the data extent into one PMTiles file."""
    if not 0 <= minzoom <= maxzoom <= 16:
        raise ValueError("zooms: 0 ≤ minzoom ≤ maxzoom ≤ 16")
    layers = []
    for lid in layer_ids:
        if lid not in LAYERS:
            raise ValueError(f"unknown layer {lid!r} (layers: {', '.join(LAYERS)})")
        layers.append(LAYERS[lid])
    w, s, e, n = data_bounds(engine, layers)
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
    return ExportReport(out, written, skipped, out.stat().st_size, minzoom, maxzoom, (w, s, e, n))
