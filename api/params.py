"""Request parameters, parsed once: FastAPI dependencies that build typed request objects.

Like tipg's `dependencies.py`: a route declares what it reads (`ItemsQuery`, `NearbyQuery`…)
and gets it checked, so its handler makes one core call and formats the answer. Query strings
are read against an allow-list per endpoint: an unknown, repeated or invalid parameter is a 400
problem (never FastAPI's 422). The OpenAPI descriptions of the same parameters live here too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import Body, Depends, Request
from sqlalchemy.engine import Connection

from api.deps import get_conn, get_settings, int_param
from api.errors import Problem
from carteco import export as exp
from carteco.collections import COLLECTIONS, Collection, get_collection
from carteco.features import Output, in_polygon, in_territory, parse_properties, polygon_validity
from carteco.filters import (
    CRS84,
    EPSG2154,
    EPSG4326,
    FILTER_PARAMS,
    SIMPLE_FILTERS,
    FilterLimits,
    compile_filter,
    equality_params,
    parse_crs,
)
from carteco.history import PARAM as AS_OF
from carteco.history import cutoff, parse_as_of
from carteco.settings import Settings
from carteco.stats import LEVEL_ALIASES, LEVELS, territory
from carteco.text import ascii_float
from tiles.filters import normalise_params, tile_filter
from tiles.mvt import TileFilter

SUPPORTED_CRS = [CRS84, EPSG4326, EPSG2154]
ITEMS_PARAMS = {
    "f",
    "limit",
    "offset",
    "after",
    "crs",
    "sortby",
    "properties",
    *FILTER_PARAMS,
}
ITEMS_FORMATS = ("json", "geojson", "html", "csv", "gpkg", "fgb")
# A collection with a history (structures) also reads `as_of` and exports to GoGoCarto.
HISTORY_FORMATS = (*ITEMS_FORMATS, "gogocarto")
STRUCTURES = COLLECTIONS["structures"]
# The filters of the structure queries of api/routes/territories.py.
FILTERS = (
    ITEMS_PARAMS - {"f", "crs", "sortby", "after"}
    | set(SIMPLE_FILTERS)
    | equality_params(STRUCTURES)
)
MAX_RADIUS_M = 50_000
MAX_NEAREST = 1000
MAX_POLYGON_BYTES = 1_000_000
MAX_POLYGON_VERTICES = 20_000


# -- reading a query string --------------------------------------------------------------------


def query_params(request: Request, allowed: set[str]) -> dict[str, str]:
    """Single-valued query parameters, refusing unknown or repeated ones with a 400."""
    out: dict[str, str] = {}
    for key, value in request.query_params.multi_items():
        no_nul(key, value)
        if key not in allowed:
            raise Problem(
                400,
                f"paramètre inconnu : {key}",
                errors=[{"parameter": key, "reason": "paramètre inconnu"}],
            )
        if key in out:
            raise Problem(400, f"paramètre répété : {key}")
        out[key] = value
    return out


def no_nul(name: str, *values: str) -> None:
    """Refuse NUL characters (PostgreSQL text cannot hold them) with a 400."""
    if any("\x00" in v for v in (name, *values)):
        raise Problem(400, f"{name} : caractère NUL interdit")


def negotiate(request: Request, params: dict[str, str], formats: tuple[str, ...]) -> str:
    """The output format: `f` first, then the Accept header; 400 for an unknown `f`."""
    f = params.get("f")
    if f is not None:
        if f not in formats:
            raise Problem(
                400,
                f"format inconnu : {f} (possibles : {', '.join(formats)})",
                errors=[{"parameter": "f", "reason": "format inconnu"}],
            )
        return f
    accept = request.headers.get("accept", "")
    if "text/html" in accept and "json" not in accept.split("text/html")[0]:
        return "html"
    return formats[0]


def parse_limit(params: dict[str, str], settings: Settings, default: int | None) -> int | None:
    """`limit` between 1 and max_features (a larger value is capped, as the standard allows)."""
    raw = params.get("limit")
    if raw is None:
        return default
    expected = f"entier de 1 à {settings.max_features} attendu"
    return min(int_param(raw, "limit", 1, 2**63 - 1, expected), settings.max_features)


def parse_offset(params: dict[str, str]) -> int:
    """`offset` ≥ 0."""
    raw = params.get("offset", "0")
    return int_param(raw, "offset", 0, 999_999_999, "entier positif ou nul attendu")


def float_param(params: dict[str, str], name: str, lo: float, hi: float) -> float:
    """A required ASCII decimal number in [lo, hi], else a 400."""
    raw = params.get(name)
    value = ascii_float(raw) if raw is not None else None
    if value is None or not lo <= value <= hi:
        raise Problem(
            400,
            f"{name} : nombre entre {lo} et {hi} attendu",
            errors=[{"parameter": name, "reason": "nombre attendu"}],
        )
    return value


def collection_or_404(cid: str) -> Collection:
    """The collection, or a 404 problem."""
    c = get_collection(cid)
    if c is None:
        raise Problem(404, f"collection inconnue : {cid}")
    return c


def as_of_param(params: dict[str, str]) -> datetime | None:
    """The instant of `as_of=YYYY-MM-DD` (end of that day, UTC), None when absent.

    An AsOfError (malformed or future date) becomes a 400 in api/errors.py.
    """
    day = params.get(AS_OF)
    return cutoff(parse_as_of(day)) if day else None


def territory_level(level: str, code: str = "") -> str:
    """The canonical territory level of a path (aliases accepted), or a 404 problem."""
    no_nul("code", code)
    lv = LEVEL_ALIASES.get(level)
    if lv is None:
        raise Problem(404, f"niveau de territoire inconnu : {level} ({', '.join(LEVELS)})")
    return lv


# -- request objects of the OGC API ------------------------------------------------------------


async def json_or_html(request: Request) -> str:
    """Dependency: `f` alone (json or html, else the Accept header) — documents and pages."""
    return negotiate(request, query_params(request, {"f"}), ("json", "html"))


async def no_query(request: Request) -> None:
    """Dependency: an endpoint that takes no query parameter (any is a 400)."""
    query_params(request, set())


async def collection_param(collectionId: str) -> Collection:  # noqa: N803 - the OGC path parameter
    """Dependency: the path's collection, or a 404."""
    return collection_or_404(collectionId)


@dataclass(frozen=True)
class ItemsQuery:
    """`/collections/{id}/items`: a page, or with a download format the whole (filtered) set."""

    collection: Collection
    fmt: str
    params: dict[str, str]  # as received: links repeat them
    where: str
    binds: dict[str, Any]
    properties: tuple[str, ...] | None
    crs_uri: str
    srid: int
    swap: bool
    limit: int | None  # a download without `limit` takes every object
    offset: int = 0
    after: Any = None
    # `as_of`: the registry as it stood then (the collection already reads that state).
    as_of: datetime | None = None

    @property
    def download(self) -> bool:
        """A file (GeoJSON, CSV, GeoPackage, FlatGeobuf) rather than a page."""
        return self.fmt in exp.FORMATS

    @property
    def sortby(self) -> str | None:
        """The `sortby` parameter as given."""
        return self.params.get("sortby")

    @property
    def output(self) -> Output:
        """What the features carry: CRS, axis order (pages only), properties."""
        # Downloads are x/y in both CRS (CRS84 and Lambert-93 are east, north).
        swap = False if self.download else self.swap
        return Output(srid=self.srid, swap=swap, properties=self.properties)


async def items_query(
    request: Request,
    c: Collection = Depends(collection_param),
    st: Settings = Depends(get_settings),
) -> ItemsQuery:
    """Dependency: the checked parameters of an items request (400 / 404 problems)."""
    allowed = (
        ITEMS_PARAMS | (set(SIMPLE_FILTERS) if c.simple_filters else set()) | equality_params(c)
    )
    if c.history:
        allowed |= {AS_OF}
    params = query_params(request, allowed)
    fmt = negotiate(request, params, HISTORY_FORMATS if c.history else ITEMS_FORMATS)
    as_of = as_of_param(params)
    c = c.at(as_of)  # the collection as it stood then (itself without as_of)
    # A FilterError becomes a 400 with errors[] in api/errors.py.
    where, binds = compile_filter(c, params, FilterLimits.from_settings(st))
    props = parse_properties(c, params.get("properties"))
    crs_uri, srid, swap = parse_crs(params.get("crs"), "crs")
    head = (c, fmt, params, where, binds, props, crs_uri, srid, swap)
    if fmt in exp.FORMATS or fmt == "gogocarto":
        limit = parse_limit(params, st, None) if "limit" in params else None
        if fmt == "geojson" and crs_uri != CRS84:
            raise Problem(400, exp.GEOJSON_CRS84)
        return ItemsQuery(*head, limit, as_of=as_of)
    limit = parse_limit(params, st, st.default_limit) or st.default_limit
    offset = parse_offset(params)
    after: Any = params.get("after")
    if after is not None and c.id_type == "integer":
        after = int_param(after, "after", 0, 2**63 - 1, "identifiant entier attendu")
    return ItemsQuery(*head, limit, offset, after, as_of)


async def feature_id_param(featureId: str) -> str:  # noqa: N803 - the OGC path parameter
    """Dependency: the path's feature id, as given (declared after the collection's)."""
    return featureId


@dataclass(frozen=True)
class ItemQuery:
    """`/collections/{id}/items/{featureId}`: format, CRS and properties of one feature."""

    collection: Collection
    fmt: str
    crs_uri: str
    output: Output


async def item_query(request: Request, c: Collection = Depends(collection_param)) -> ItemQuery:
    """Dependency: the checked parameters of a single-feature request."""
    params = query_params(request, {"f", "crs", "properties"})
    fmt = negotiate(request, params, ("json", "geojson", "html"))
    crs_uri, srid, swap = parse_crs(params.get("crs"), "crs")
    props = parse_properties(c, params.get("properties"))
    return ItemQuery(c, fmt, crs_uri, Output(srid=srid, swap=swap, properties=props))


# -- request objects of the territory queries --------------------------------------------------


@dataclass(frozen=True)
class StructuresQuery:
    """A filtered page of structures (a territory's, or within a polygon)."""

    params: dict[str, str]  # as received: links repeat them
    where: str
    binds: dict[str, Any]
    properties: tuple[str, ...] | None
    limit: int
    offset: int

    @property
    def output(self) -> Output:
        """The properties asked for, CRS84."""
        return Output(properties=self.properties)


def _filters(
    params: dict[str, str], st: Settings
) -> tuple[str, dict[str, Any], tuple[str, ...] | None]:
    # A FilterError becomes a 400 with errors[] in api/errors.py.
    where, binds = compile_filter(STRUCTURES, params, FilterLimits.from_settings(st))
    props = parse_properties(STRUCTURES, params.get("properties"))
    return where, binds, props


def _page(params: dict[str, str], st: Settings) -> tuple[int, int]:
    limit = parse_limit(params, st, st.default_limit) or st.default_limit
    return limit, parse_offset(params)


@dataclass(frozen=True)
class TerritoryRef:
    """A territory of a path: canonical level, code, and the level as the path wrote it."""

    level: str
    code: str
    asked: str

    def unknown(self) -> Problem:
        """The 404 of a territory that does not exist."""
        return Problem(404, f"territoire inconnu : {self.asked} {self.code}")


async def as_of_query(request: Request) -> datetime | None:
    """Dependency: `as_of` alone (territory figures at a past date), None when absent."""
    return as_of_param(query_params(request, {AS_OF}))


async def territory_ref(level: str, code: str) -> TerritoryRef:
    """Dependency: the path's territory level (404 when unknown) and code."""
    return TerritoryRef(territory_level(level, code), code, level)


async def territory_geometry(request: Request) -> bool:
    """Dependency: `geometry=false` leaves the outline out (default: included)."""
    params = query_params(request, {"geometry"})
    return params.get("geometry", "true").lower() not in ("false", "0", "non")


def territory_structures_query(
    request: Request,
    conn: Connection = Depends(get_conn),
    st: Settings = Depends(get_settings),
    t: TerritoryRef = Depends(territory_ref),
) -> StructuresQuery:
    """Dependency: a known territory's structures, filtered (404 for an unknown territory)."""
    params = query_params(request, FILTERS)
    if territory(conn, t.level, t.code, geometry=False) is None:
        raise t.unknown()
    where, binds, props = _filters(params, st)
    where, binds = in_territory(where, binds, t.level, t.code)
    return StructuresQuery(params, where, binds, props, *_page(params, st))


@dataclass(frozen=True)
class NearbyQuery:
    """Structures around a point: within `radius` metres (at most `limit`), or the `nearest`."""

    lon: float
    lat: float
    where: str
    binds: dict[str, Any]
    output: Output
    radius: float | None = None
    limit: int = 0
    nearest: int = 0


async def nearby_query(request: Request, st: Settings = Depends(get_settings)) -> NearbyQuery:
    """Dependency: the checked point, radius or count, and filters of `/structures/nearby`."""
    params = query_params(request, FILTERS | {"lon", "lat", "radius", "nearest"})
    lon = float_param(params, "lon", -180, 180)
    lat = float_param(params, "lat", -90, 90)
    if ("radius" in params) == ("nearest" in params):
        raise Problem(400, "donnez soit radius (mètres), soit nearest (nombre)")
    where, binds, props = _filters(params, st)
    out = Output(properties=props)
    if "radius" in params:
        radius = float_param(params, "radius", 0, MAX_RADIUS_M)
        limit = parse_limit(params, st, st.max_features) or st.max_features
        return NearbyQuery(lon, lat, where, binds, out, radius=radius, limit=limit)
    n = int_param(params["nearest"], "nearest", 1, MAX_NEAREST)
    return NearbyQuery(lon, lat, where, binds, out, nearest=n)


def within_query(
    request: Request,
    geometry: dict[str, Any] = Body(
        ...,
        description="Polygon ou MultiPolygon GeoJSON (ou un Feature qui en porte un), CRS84.",
    ),
    conn: Connection = Depends(get_conn),
    st: Settings = Depends(get_settings),
) -> StructuresQuery:
    """Dependency: a checked polygon (size, vertices, validity) and the filters of a search."""
    params = query_params(request, FILTERS)
    size = int(request.headers.get("content-length") or 0)
    if size > MAX_POLYGON_BYTES:
        raise Problem(413, f"polygone trop volumineux ({MAX_POLYGON_BYTES} octets au plus)")
    if geometry.get("type") == "Feature":
        geometry = geometry.get("geometry") or {}
    if geometry.get("type") not in ("Polygon", "MultiPolygon"):
        raise Problem(400, "un Polygon ou MultiPolygon GeoJSON est attendu")
    text = json.dumps(geometry)
    no_nul("geometry", text.replace("\\u0000", "\x00"))
    if text.count(",") > MAX_POLYGON_VERTICES * 2:
        raise Problem(413, f"polygone trop détaillé ({MAX_POLYGON_VERTICES} sommets au plus)")
    validity = polygon_validity(conn, text)
    if validity is None:
        raise Problem(400, "géométrie GeoJSON illisible")
    valid, reason = validity
    if not valid:
        raise Problem(400, f"polygone invalide : {reason}")
    where, binds, props = _filters(params, st)
    where, binds = in_polygon(where, binds, text)
    return StructuresQuery(params, where, binds, props, *_page(params, st))


# -- OpenAPI parameter descriptions (OGC style) ------------------------------------------------


def _p(name: str, schema: dict[str, Any], description: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
        **extra,
    }


def ogc_parameters(settings: Settings, with_simple: bool = True) -> list[dict[str, Any]]:
    """The query parameters of `/items` as OpenAPI 3.0 objects (bbox, limit, datetime...)."""
    crs_schema = {"type": "string", "format": "uri", "enum": SUPPORTED_CRS, "default": CRS84}
    params = [
        _p(
            "f",
            {"type": "string", "enum": ["json", "geojson", "html", "csv", "gpkg", "fgb"]},
            "Format : json (page GeoJSON), html, ou un téléchargement complet "
            "(geojson, csv, gpkg, fgb).",
            style="form",
            explode=False,
        ),
        _p(
            "limit",
            {
                "type": "integer",
                "minimum": 1,
                "maximum": settings.max_features,
                "default": settings.default_limit,
            },
            "Nombre maximal d'objets par page.",
            style="form",
            explode=False,
        ),
        _p("offset", {"type": "integer", "minimum": 0, "default": 0}, "Décalage de pagination."),
        _p(
            "after",
            {"type": "string"},
            "Pagination par clé : objets d'identifiant supérieur (liens « next »).",
        ),
        _p(
            "bbox",
            {
                "type": "array",
                "minItems": 4,
                "maxItems": 6,
                "items": {"type": "number"},
            },
            "Emprise : minx,miny,maxx,maxy (ou 6 nombres avec l'altitude), en CRS84 "
            "sauf `bbox-crs`.",
            style="form",
            explode=False,
        ),
        _p("bbox-crs", crs_schema, "Système de coordonnées de `bbox`.", style="form"),
        _p(
            "datetime",
            {"type": "string"},
            "Instant ou intervalle RFC 3339 (`2024-01-01T00:00:00Z`, `2024-01-01/..`), "
            "sur la vie de la structure : celles ouvertes (opened_on) et pas encore fermées "
            "(closed_on) pendant l'intervalle ; une date inconnue ne sélectionne pas.",
            style="form",
            explode=False,
        ),
        _p(
            AS_OF,
            {"type": "string", "format": "date"},
            "Le registre tel qu'il était à la fin de ce jour (AAAA-MM-JJ, UTC ; structures "
            "seulement, pas de date future).",
            style="form",
            explode=False,
        ),
        _p(
            "crs",
            crs_schema,
            "Système de coordonnées des géométries renvoyées (téléchargements : GeoJSON en "
            "CRS84 seulement ; CSV, GeoPackage et FlatGeobuf aussi en Lambert-93).",
            style="form",
        ),
        _p("filter", {"type": "string"}, "Filtre CQL2 (texte ou JSON)."),
        _p(
            "filter-lang",
            {"type": "string", "enum": ["cql2-text", "cql2-json"], "default": "cql2-text"},
            "Langage du filtre.",
        ),
        _p("filter-crs", crs_schema, "Système de coordonnées des géométries du filtre."),
        _p(
            "sortby",
            {"type": "array", "items": {"type": "string"}},
            "Tri : `+nom,-updated_at`.",
            style="form",
            explode=False,
        ),
        _p(
            "properties",
            {"type": "array", "items": {"type": "string"}},
            "Propriétés à renvoyer.",
            style="form",
            explode=False,
        ),
    ]
    if with_simple:
        params += [
            _p("sector", {"type": "string"}, "Codes de secteur (liste, sous-secteurs inclus)."),
            _p("family", {"type": "string"}, "Familles de l'ESS (liste)."),
            _p("commune", {"type": "string"}, "Codes INSEE de communes (liste)."),
            _p("departement", {"type": "string"}, "Codes de départements (liste)."),
            _p("epci", {"type": "string"}, "SIREN d'EPCI (liste)."),
            _p("ept", {"type": "string"}, "Codes d'EPT (liste)."),
            _p("q", {"type": "string"}, "Recherche plein texte (nom et description)."),
        ]
    return params + queryable_parameters({p["name"] for p in params})


def queryable_parameters(taken: set[str]) -> list[dict[str, Any]]:
    """`<queryable>=<value>` equality parameters (Part 3 queryables-query-parameters class).

    One `items` operation serves every collection: each queryable is declared once, and
    a collection without it answers 400 (unknown parameter).
    """
    found: dict[str, tuple[str, set[str], list[str]]] = {}
    for c in COLLECTIONS.values():
        for name in equality_params(c):
            col = c.column(name)
            assert col is not None
            typ, ids, enum = found.setdefault(name, (col.type, set(), list(col.enum or ())))
            ids.add(c.id)
            if typ != col.type or list(col.enum or ()) != enum:
                found[name] = ("string", ids, [])  # differs between collections: plain text
    out = []
    for name in sorted(set(found) - taken):
        typ, ids, enum = found[name]
        schema: dict[str, Any] = {"type": typ}
        if enum:
            schema["enum"] = enum
        where = "toutes les collections" if len(ids) == len(COLLECTIONS) else ", ".join(sorted(ids))
        out.append(_p(name, schema, f"Égalité sur la propriété interrogeable `{name}` ({where})."))
    return out


# -- request objects of the Observatoire -------------------------------------------------------


@dataclass(frozen=True)
class CoverageQuery:
    """`/coverage`: sectors, a territory, radii in km, and the output format."""

    sectors: list[str]
    level: str
    code: str
    radii_km: list[float]
    f: str


COVERAGE_FORMATS = ("json", "csv", "geojson")


async def coverage_query(request: Request) -> CoverageQuery:
    """Dependency: `sector` (comma list), `territoire=niveau:code`, `radii` (km, comma list)."""
    params = query_params(request, {"sector", "territoire", "radii", "f"})
    sectors = [s.strip() for s in params.get("sector", "").split(",") if s.strip()]
    if not sectors:
        raise Problem(
            400,
            "sector : au moins un secteur est attendu (ex. sector=alimentation)",
            errors=[{"parameter": "sector", "reason": "obligatoire"}],
        )
    terr = params.get("territoire", "")
    level, sep, code = terr.partition(":")
    if not sep or not code:
        raise Problem(
            400,
            "territoire : niveau:code attendu (ex. territoire=departement:93)",
            errors=[{"parameter": "territoire", "reason": "niveau:code attendu"}],
        )
    level = territory_level(level, code)
    radii: list[float] = []
    for raw in params.get("radii", "1,2,5,10").split(","):
        value = ascii_float(raw.strip())
        if value is None:
            raise Problem(
                400,
                "radii : distances en km séparées par des virgules attendues",
                errors=[{"parameter": "radii", "reason": "nombre attendu"}],
            )
        radii.append(value)
    f = negotiate(request, params, COVERAGE_FORMATS)
    return CoverageQuery(sectors, level, code, radii, f)


async def panorama_format(request: Request) -> str:
    """Dependency: `f` of the panorama (json, csv or html; else the Accept header)."""
    return negotiate(request, query_params(request, {"f"}), ("json", "csv", "html"))


# ---------------------------------------------------------------- map pages and tiles


@dataclass(frozen=True)
class MapFilter:
    """The structures filter of a map page or its list: a compiled SQL condition and binds."""

    where: str
    binds: dict[str, Any]


def map_filter(request: Request) -> MapFilter:
    """The map's filters (secteur, famille, territoire, bbox…) compiled, or a 400 / 404."""
    params = dict(request.query_params)
    # FilterError and TerritoryParamError: a 400 via api/errors.py.
    norm = normalise_params(params)
    if params.get("bbox"):
        norm["bbox"] = params["bbox"]
    collection = get_collection("structures")
    assert collection is not None
    limits = FilterLimits.from_settings(request.app.state.settings)
    where, binds = compile_filter(collection, norm, limits)
    return MapFilter(where, binds)


def tile_request_filter(request: Request) -> TileFilter:
    """The compiled structures filter of a tile request, or a 400 with errors[]."""
    # FilterError and TerritoryParamError: a 400 with errors[] via api/errors.py.
    settings: Settings = request.app.state.settings
    return tile_filter(dict(request.query_params), FilterLimits.from_settings(settings))
