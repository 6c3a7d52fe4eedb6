"""The tiled layers: the structures (clustered at low zoom) and the territory outlines."""

from __future__ import annotations

from dataclasses import dataclass, field

from carteco.territory_levels import LEVELS

# Zooms up to this one draw clusters; above it, individual structures.
CLUSTER_MAXZOOM = 12
# Cells per tile side for clustering: 16 cells of 32 px on a 512 px tile.
CLUSTER_CELLS = 16
# Render buffer in MVT units (of 4096); the invalidation trigger uses the same fraction.
BUFFER = 64
EXTENT = 4096


@dataclass(frozen=True)
class TileLayer:
    """One collection served as vector tiles."""

    id: str
    title: str
    kind: str  # "structures" or "territory"
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
    )
}


def get_layer(layer_id: str) -> TileLayer | None:
    """The tiled layer with this collection id, or None."""
    return LAYERS.get(layer_id)
