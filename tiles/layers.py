"""The tiled layers: the structures (clustered at low zoom) and the territory outlines."""

from __future__ import annotations

from dataclasses import dataclass, field

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
        TileLayer("regions", "Régions", "territory", 0, 12, "region", TERRITORY_FIELDS, "polygon"),
        TileLayer(
            "departements",
            "Départements",
            "territory",
            0,
            14,
            "departement",
            TERRITORY_FIELDS,
            "polygon",
        ),
        TileLayer("epci", "EPCI", "territory", 5, 14, "epci", TERRITORY_FIELDS, "polygon"),
        TileLayer(
            "ept",
            "Établissements publics territoriaux",
            "territory",
            7,
            14,
            "ept",
            TERRITORY_FIELDS,
            "polygon",
        ),
        TileLayer(
            "communes", "Communes", "territory", 7, 16, "commune", TERRITORY_FIELDS, "polygon"
        ),
        TileLayer(
            "arrondissements",
            "Arrondissements municipaux",
            "territory",
            9,
            16,
            "arrondissement",
            TERRITORY_FIELDS,
            "polygon",
        ),
        TileLayer(
            "qpv",
            "Quartiers prioritaires",
            "territory",
            9,
            16,
            "qpv",
            TERRITORY_FIELDS,
            "polygon",
        ),
    )
}


def get_layer(layer_id: str) -> TileLayer | None:
    """The tiled layer with this collection id, or None."""
    return LAYERS.get(layer_id)
