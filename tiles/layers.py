"""The tiled layers: the structures (clustered at low zoom) and the territory outlines."""

from __future__ import annotations

from dataclasses import dataclass, field

from carteco.territory_levels import LEVELS

# Zooms up to this one draw clusters; above it, individual structures.
CLUSTER_MAXZOOM = 12
# Cells per tile side for clustering: 16 cells of 32 px on a 512 px tile.
CLUSTER_CELLS = 16
# A cluster cell is 512 / 16 = 32 px wide; tiles/sql/structures_*.sql keep each symbol inside
# its cell, moved in by its radius in carte.js (cluster of n: min(14.5, 9 + 2 log10 n) px plus
# 1.5 px of stroke; a single structure: 8 px), so symbols of two cells never overlap.
# Render buffer in MVT units (of 4096); the invalidation trigger uses the same fraction.
BUFFER = 64
EXTENT = 4096


@dataclass(frozen=True)
class TileLayer:
    """One collection served as vector tiles."""

    id: str
    title: str
    kind: str  # "structures", "territory", "labels" (place names) or "stations"
    minzoom: int
    maxzoom: int
    level: str | None = None
    fields: dict[str, str] = field(default_factory=dict)
    geometry: str = "point"


STRUCTURE_FIELDS = {
    "id": "Number",
    "count": "Number",
    "name": "String",
    "sector": "String",
    "sectors": "String",
    "precision": "String",
    "family": "String",
    "commune": "String",
}
TERRITORY_FIELDS = {"code": "String", "name": "String", "level": "String", "population": "Number"}
STATION_FIELDS = {"name": "String", "modes": "String", "lines": "String", "rank": "Number"}

# The basemap's place names (tiles/sql/labels.sql): the zoom each level appears at.
LABEL_ZOOMS = {"dep_max": 9, "commune_min": 8, "commune_all": 10, "min_pop": 20000, "arr_min": 11}

LAYERS: dict[str, TileLayer] = {
    layer.id: layer
    for layer in (
        TileLayer("structures", "Structures de l'ESS", "structures", 0, 16, None, STRUCTURE_FIELDS),
        # One outline layer per territory level (carteco/territory_levels.py).
        *(
            TileLayer(
                lv.collection,
                lv.tile_title,
                "territory",
                lv.minzoom,
                lv.maxzoom,
                lv.name,
                TERRITORY_FIELDS,
                "polygon",
            )
            for lv in LEVELS
        ),
        # The offline basemap's names and stations, from the shipped reference data.
        TileLayer("noms", "Noms de lieux", "labels", 5, 16, None, TERRITORY_FIELDS),
        TileLayer("gares", "Gares et stations", "stations", 11, 16, None, STATION_FIELDS),
    )
}


# The offline basemap's layers, in one tile at /tiles/fond/{z}/{x}/{y}.pbf and in the export.
BASEMAP_LAYER_IDS = ("departements", "communes", "arrondissements", "noms", "gares")


def get_layer(layer_id: str) -> TileLayer | None:
    """The tiled layer with this collection id, or None."""
    return LAYERS.get(layer_id)
