"""The tile cache in PostgreSQL: size-bounded (least recently used evicted), invalidated by
triggers on structures.

The invalidation itself happens in the database (migration 0005_tiles): a write to
`structures` deletes the cached tiles covering the old and new positions at every zoom and
bumps `tile_cache_state.generation`. A render stores its tile only if the generation it read
with the data is still current, under a share lock, so a render racing a write is not cached.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tiles.layers import TileLayer
from tiles.mvt import NO_FILTER, TileFilter, check_tile, etag_of, grid_available, tile_query

_GET = sa.text(
    "SELECT data, etag, used_at < clock_timestamp() - make_interval(secs => :touch) AS stale "
    "FROM tile_cache "
    "WHERE layer = :layer AND z = :z AND x = :x AND y = :y AND filter_key = :key"
)
# Recency for LRU eviction, refreshed only when stale: a hot tile costs one write a minute.
_TOUCH = sa.text(
    "UPDATE tile_cache SET used_at = clock_timestamp() "
    "WHERE layer = :layer AND z = :z AND x = :x AND y = :y AND filter_key = :key"
)
_STORE = sa.text(
    """
    INSERT INTO tile_cache (layer, filter_key, z, x, y, data, etag)
    SELECT :layer, :key, :z, :x, :y, :data, :etag
      FROM tile_cache_state WHERE generation = :gen
       FOR SHARE
    ON CONFLICT DO NOTHING
    """
)
_EVICT = sa.text(
    """
    DELETE FROM tile_cache WHERE ctid IN (
        SELECT ctid FROM tile_cache ORDER BY used_at DESC OFFSET :keep)
    """
)
# The tile query (a shipped .sql file, values bound) wrapped with the cache generation.
_WITH_GENERATION = "SELECT (SELECT generation FROM tile_cache_state) AS gen, (/*tile*/) AS data"
# Check the size bound every this many stores (a count on every store would cost more).
EVICT_EVERY = 256


@dataclass(frozen=True)
class Tile:
    """A rendered tile, its ETag and whether it came from the cache."""

    data: bytes
    etag: str
    cached: bool


class TileCache:
    """Reads and stores tiles in `tile_cache`, keeping the `max_tiles` most recently used."""

    def __init__(
        self,
        engine: Engine,
        max_tiles: int = 100_000,
        enabled: bool = True,
        touch_after_s: float = 60.0,
    ) -> None:
        self.engine = engine
        self.max_tiles = max_tiles
        self.enabled = enabled
        self.touch_after_s = touch_after_s
        self._stores = 0
        self._lock = threading.Lock()
        # Checked once: a database migrated before the cluster grid existed renders from points.
        self._use_grid: bool | None = None

    def get(self, layer: TileLayer, z: int, x: int, y: int, filt: TileFilter = NO_FILTER) -> Tile:
        """The tile from the cache, or rendered in PostGIS (and stored)."""
        check_tile(layer, z, x, y)
        key = {"layer": layer.id, "z": z, "x": x, "y": y, "key": filt.key}
        with self.engine.connect() as conn:
            if self._use_grid is None:
                self._use_grid = grid_available(conn)
                conn.commit()
            sql, params = tile_query(layer, z, x, y, filt, use_grid=self._use_grid)
            if self.enabled:
                row = conn.execute(_GET, {**key, "touch": self.touch_after_s}).first()
                if row is not None:
                    if row.stale:
                        conn.execute(_TOUCH, key)
                        conn.commit()
                    return Tile(bytes(row.data), row.etag, True)
            # The generation is read in the same statement (same snapshot) as the data.
            row = conn.execute(
                sa.text(_WITH_GENERATION.replace("/*tile*/", sql)),
                params,
            ).one()
            data = bytes(row.data)
            etag = etag_of(data)
            if self.enabled:
                conn.execute(_STORE, {**key, "data": data, "etag": etag, "gen": row.gen})
                conn.commit()
                self._maybe_evict()
            return Tile(data, etag, False)

    def _maybe_evict(self) -> None:
        with self._lock:
            self._stores += 1
            if self._stores % EVICT_EVERY:
                return
        with self.engine.begin() as conn:
            conn.execute(_EVICT, {"keep": self.max_tiles})

    def evict(self) -> int:
        """Trim the cache to its size bound now; the number of tiles removed."""
        with self.engine.begin() as conn:
            return conn.execute(_EVICT, {"keep": self.max_tiles}).rowcount

    def clear(self) -> int:
        """Drop every cached tile."""
        with self.engine.begin() as conn:
            return conn.execute(sa.text("DELETE FROM tile_cache")).rowcount
