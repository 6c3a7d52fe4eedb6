"""OGC API – Features (Parts 1, 2 and 3) at the root: landing page, collections, items.

Handlers are sync (the pooled engine runs in the thread pool); features are GeoJSON text built
by PostGIS and sent as raw bytes. Query parameters are parsed here, against an allow-list per
endpoint, so any unknown or invalid parameter is a 400 problem (never FastAPI's 422).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from datetime import UTC
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from sqlalchemy.engine import Connection, Engine
from starlette.background import BackgroundTask

from api.deps import get_conn, get_engine, get_settings, int_param
from api.errors import Problem
from api.streaming import CursorStreamingResponse, content_disposition
from api.templating import TEMPLATES
from api.urls import public_base
from carteco import export as exp
from carteco.collections import COLLECTIONS, Collection, get_collection
from carteco.duplicates import merged_structure
from carteco.features import Output, feature, items_page, parse_properties
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
from carteco.registry import registry_summary
from carteco.settings import Settings

GEOJSON = "application/geo+json"
OPENAPI_MEDIA = "application/vnd.oai.openapi+json;version=3.0"
SUPPORTED_CRS = [CRS84, EPSG4326, EPSG2154]
CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/html",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-2/1.0/conf/crs",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables-query-parameters",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/features-filter",
    "http://www.opengis.net/spec/ogcapi-features-5/1.0/conf/sortables",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
    "http://www.opengis.net/spec/cql2/1.0/conf/advanced-comparison-operators",
    "http://www.opengis.net/spec/cql2/1.0/conf/case-insensitive-comparison",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions-plus",
    "http://www.opengis.net/spec/cql2/1.0/conf/spatial-functions",
    "http://www.opengis.net/spec/cql2/1.0/conf/array-functions",
]

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


# -- parameter handling ------------------------------------------------------------------------


def _wants_gzip(request: Request) -> bool:
    """True when the client accepts gzip."""
    return "gzip" in request.headers.get("accept-encoding", "").lower()


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


def base_url(request: Request, settings: Settings) -> str:
    """The public root URL (setting `public_url`, else an allowed Host): see api.urls."""
    return public_base(request)


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


def collection_or_404(cid: str) -> Collection:
    """The collection, or a 404 problem."""
    c = get_collection(cid)
    if c is None:
        raise Problem(404, f"collection inconnue : {cid}")
    return c


def run_db(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a query; database refusals become 400/503 problems (never raw errors)."""
    try:
        return fn(*args, **kwargs)
    except sa.exc.DBAPIError as exc:
        name = type(exc.orig).__name__ if exc.orig is not None else ""
        if name == "QueryCanceled":
            raise Problem(
                503,
                "requête trop longue pour la base de données ; restreignez le filtre",
                headers={"Retry-After": "5"},
            ) from exc
        if isinstance(exc, sa.exc.OperationalError):
            raise
        raise Problem(400, "filtre ou géométrie refusé par la base de données") from exc


def json_bytes(obj: Any) -> bytes:
    """Compact UTF-8 JSON."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=str).encode()


def html(request: Request, template: str, **ctx: Any) -> HTMLResponse:
    """Render a French HTML page."""
    return TEMPLATES.TemplateResponse(request, template, ctx)


# -- documents ---------------------------------------------------------------------------------


def collection_doc(c: Collection, root: str, extent: list[float] | None) -> dict[str, Any]:
    """The `/collections/{id}` document."""
    href = f"{root}/collections/{c.id}"
    doc: dict[str, Any] = {
        "id": c.id,
        "title": c.title,
        "description": c.description,
        "itemType": "feature",
        "crs": SUPPORTED_CRS,
        "storageCrs": CRS84,
        "links": [
            {"rel": "self", "type": "application/json", "title": c.title, "href": href},
            {"rel": "alternate", "type": "text/html", "title": "HTML", "href": href + "?f=html"},
            {"rel": "items", "type": GEOJSON, "title": "Objets", "href": href + "/items"},
            {
                "rel": "items",
                "type": "text/html",
                "title": "Objets",
                "href": href + "/items?f=html",
            },
            {
                "rel": "http://www.opengis.net/def/rel/ogc/1.0/queryables",
                "type": "application/schema+json",
                "title": "Propriétés interrogeables",
                "href": href + "/queryables",
            },
        ]
        + [
            {
                "rel": "enclosure",
                "type": mime.split(";")[0],
                "title": f"Téléchargement ({fmt})",
                "href": f"{href}/items?f={fmt}",
            }
            for fmt, (mime, _) in exp.FORMATS.items()
        ],
    }
    if extent:
        doc["extent"] = {"spatial": {"bbox": [extent], "crs": CRS84}}
    return doc


def collection_extent(conn: Connection, c: Collection) -> list[float] | None:
    """Bounding box of a collection (estimated from statistics for structures)."""
    if c.table == "structures":
        sql = "SELECT ST_EstimatedExtent('public', 'structures', 'geom')::box2d::text"
        try:
            with conn.begin_nested():
                box = conn.execute(sa.text(sql)).scalar()
        except sa.exc.DBAPIError:
            box = None
        if not box:
            box = conn.execute(sa.text("SELECT ST_Extent(geom)::text FROM structures")).scalar()
    elif c.table == "territories":
        box = conn.execute(
            sa.text("SELECT ST_Extent(geom)::text FROM territories WHERE level = :l"),
            {"l": c.level},
        ).scalar()
    else:
        box = conn.execute(sa.text("SELECT ST_Extent(geom)::text FROM stations")).scalar()
    if not box:
        return None
    inner = box[box.index("(") + 1 : box.index(")")].replace(",", " ").split()
    return [round(float(v), 6) for v in inner]


def queryables_doc(c: Collection, root: str) -> dict[str, Any]:
    """JSON Schema of the queryables (Part 3)."""
    props: dict[str, Any] = {
        "geom": {
            "title": "Géométrie",
            "format": f"geometry-{c.geometry_type.lower()}",
            "x-ogc-role": "primary-geometry",
        }
    }
    for col in c.columns:
        if not col.queryable:
            continue
        if col.type == "array":
            p: dict[str, Any] = {"type": "array", "items": {"type": "string"}}
        elif col.type in ("date", "date-time"):
            p = {"type": "string", "format": col.type}
        else:
            p = {"type": col.type}
        if col.enum:
            p["enum"] = list(col.enum)
        p["title"] = col.title
        props[col.name] = p
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"{root}/collections/{c.id}/queryables",
        "type": "object",
        "title": c.title,
        "properties": props,
        "additionalProperties": False,
    }


def _links_for_page(
    root: str,
    cid: str,
    params: dict[str, str],
    offset: int,
    limit: int,
    has_next: bool,
    last_id: Any = None,
) -> list[dict[str, str]]:
    href = f"{root}/collections/{cid}/items"
    base = {k: v for k, v in params.items() if k not in ("offset", "f", "after")}
    # Without sortby, "next" pages by keyset (after=<last id>): constant cost per page.
    keyset = {"after": last_id} if last_id is not None and "sortby" not in params else {}

    def url(extra: dict[str, Any]) -> str:
        q = urlencode({**base, **extra})
        return href + ("?" + q if q else "")

    links = [
        {"rel": "self", "type": GEOJSON, "title": "Cette page", "href": url({"offset": offset})},
        {"rel": "alternate", "type": "text/html", "title": "HTML", "href": url({"f": "html"})},
        {"rel": "collection", "type": "application/json", "href": f"{root}/collections/{cid}"},
    ]
    if has_next:
        links.append(
            {
                "rel": "next",
                "type": GEOJSON,
                "title": "Page suivante",
                "href": url({**keyset, "offset": offset + limit, "limit": limit}),
            }
        )
    if offset > 0:
        links.append(
            {
                "rel": "prev",
                "type": GEOJSON,
                "title": "Page précédente",
                "href": url({"offset": max(0, offset - limit), "limit": limit}),
            }
        )
    return links


# -- downloads ---------------------------------------------------------------------------------


def download_response(
    request: Request,
    engine: Engine,
    conn: Connection,
    settings: Settings,
    c: Collection,
    fmt: str,
    where: str,
    binds: dict[str, Any],
    limit: int | None,
    out: Output,
    crs_uri: str = CRS84,
) -> Response:
    """A whole (filtered) collection as a file: streamed GeoJSON/CSV, or GPKG/FlatGeobuf."""
    fresh = exp.freshness(conn, c)
    etag = fresh.etag(c.id, fmt, str(request.url.query))
    headers = {
        "ETag": etag,
        "Content-Disposition": content_disposition(f"carteco-{c.id}.{exp.FORMATS[fmt][1]}"),
        "Link": exp.licence_link(settings.data_licence, settings.data_attribution),
        "Cache-Control": "public, max-age=60",
        "Content-Crs": f"<{crs_uri}>",
    }
    if fresh.last_modified is not None:
        headers["Last-Modified"] = format_datetime(fresh.last_modified, usegmt=True)
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    media = exp.FORMATS[fmt][0]
    if fmt == "geojson":
        meta = {
            "name": c.id,
            "licence": settings.data_licence,
            "attribution": settings.data_attribution,
        }
        body: Iterator[bytes] = exp.geojson_stream(
            engine, c, where, binds, out=out, limit=limit, meta=meta
        )
        return CursorStreamingResponse(
            body, gzip=_wants_gzip(request), media_type=media, headers=headers
        )
    if fmt == "csv":
        return CursorStreamingResponse(
            exp.csv_stream(engine, c, where, binds, limit, out),
            gzip=_wants_gzip(request),
            media_type=media,
            headers=headers,
        )
    tmpdir = Path(tempfile.mkdtemp(prefix="carteco-export-"))
    path = tmpdir / f"carteco-{c.id}.{exp.FORMATS[fmt][1]}"
    run_db(exp.write_ogr, engine, c, where, binds, fmt, path, limit, out)

    def cleanup() -> None:
        for p in tmpdir.iterdir():
            p.unlink(missing_ok=True)
        tmpdir.rmdir()

    return FileResponse(
        path,
        media_type=media,
        headers=headers,
        background=BackgroundTask(cleanup),
    )


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
            "sur la date de dernière modification.",
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


# -- the router --------------------------------------------------------------------------------


def features_router(settings: Settings | None = None) -> APIRouter:
    """OGC API Features: `/`, `/conformance`, `/collections[...]`."""
    settings = settings or Settings()
    router = APIRouter(tags=["OGC API Features"])
    collection_ids = list(COLLECTIONS)
    cid_param = {
        "name": "collectionId",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "enum": collection_ids},
    }

    @router.get(
        "/",
        summary="Page d'accueil (landing page)",
        openapi_extra={"parameters": ogc_parameters(settings)[:1]},
        response_class=Response,
    )
    def landing(
        request: Request,
        conn: Connection = Depends(get_conn),
        st: Settings = Depends(get_settings),
    ) -> Response:
        params = query_params(request, {"f"})
        fmt = negotiate(request, params, ("json", "html"))
        root = base_url(request, st)
        links = [
            {"rel": "self", "type": "application/json", "title": "Ce document", "href": root + "/"},
            {"rel": "alternate", "type": "text/html", "title": "HTML", "href": root + "/?f=html"},
            {
                "rel": "service-desc",
                "type": OPENAPI_MEDIA,
                "title": "Définition OpenAPI 3.0",
                "href": root + "/openapi.json",
            },
            {
                "rel": "service-doc",
                "type": "text/html",
                "title": "Documentation de l'API",
                "href": root + "/docs",
            },
            {
                "rel": "conformance",
                "type": "application/json",
                "title": "Classes de conformité",
                "href": root + "/conformance",
            },
            {
                "rel": "data",
                "type": "application/json",
                "title": "Collections",
                "href": root + "/collections",
            },
            {"rel": "alternate", "type": "text/html", "title": "Carte", "href": root + "/carte"},
        ]
        doc = {
            "title": "Carteco",
            "description": "Registre et carte des structures de l'économie sociale et solidaire.",
            "links": links,
        }
        if fmt == "html":
            return html(
                request, "ogc_landing.html", doc=doc, summary=registry_summary(conn), root=root
            )
        return Response(json_bytes(doc), media_type="application/json")

    @router.get(
        "/conformance",
        summary="Classes de conformité",
        openapi_extra={"parameters": ogc_parameters(settings)[:1]},
        response_class=Response,
    )
    def conformance(request: Request) -> Response:
        params = query_params(request, {"f"})
        fmt = negotiate(request, params, ("json", "html"))
        doc = {"conformsTo": CONFORMANCE}
        if fmt == "html":
            return html(request, "ogc_conformance.html", doc=doc)
        return Response(json_bytes(doc), media_type="application/json")

    @router.get(
        "/collections",
        summary="Liste des collections",
        openapi_extra={"parameters": ogc_parameters(settings)[:1]},
        response_class=Response,
    )
    def collections(
        request: Request,
        conn: Connection = Depends(get_conn),
        st: Settings = Depends(get_settings),
    ) -> Response:
        params = query_params(request, {"f"})
        fmt = negotiate(request, params, ("json", "html"))
        root = base_url(request, st)
        levels = set(conn.execute(sa.text("SELECT DISTINCT level FROM territories")).scalars())
        docs = [
            collection_doc(c, root, collection_extent(conn, c))
            for c in COLLECTIONS.values()
            if c.level is None or c.level in levels
        ]
        doc = {
            "links": [
                {"rel": "self", "type": "application/json", "href": root + "/collections"},
                {
                    "rel": "alternate",
                    "type": "text/html",
                    "href": root + "/collections?f=html",
                },
            ],
            "collections": docs,
            "crs": SUPPORTED_CRS,
        }
        if fmt == "html":
            return html(request, "ogc_collections.html", doc=doc, single=False)
        return Response(json_bytes(doc), media_type="application/json")

    @router.get(
        "/collections/{collectionId}",
        summary="Description d'une collection",
        openapi_extra={"parameters": [cid_param, *ogc_parameters(settings)[:1]]},
        response_class=Response,
    )
    def collection(
        collectionId: str,  # noqa: N803 - the OGC path parameter name
        request: Request,
        conn: Connection = Depends(get_conn),
        st: Settings = Depends(get_settings),
    ) -> Response:
        c = collection_or_404(collectionId)
        params = query_params(request, {"f"})
        fmt = negotiate(request, params, ("json", "html"))
        doc = collection_doc(c, base_url(request, st), collection_extent(conn, c))
        if fmt == "html":
            return html(request, "ogc_collections.html", doc={"collections": [doc]}, single=True)
        return Response(json_bytes(doc), media_type="application/json")

    @router.get(
        "/collections/{collectionId}/queryables",
        summary="Propriétés interrogeables (CQL2)",
        openapi_extra={"parameters": [cid_param, *ogc_parameters(settings)[:1]]},
        response_class=Response,
    )
    def queryables(
        collectionId: str,  # noqa: N803
        request: Request,
        st: Settings = Depends(get_settings),
    ) -> Response:
        c = collection_or_404(collectionId)
        params = query_params(request, {"f"})
        fmt = negotiate(request, params, ("json", "html"))
        doc = queryables_doc(c, base_url(request, st))
        if fmt == "html":
            return html(request, "ogc_queryables.html", doc=doc, collection=c)
        return Response(json_bytes(doc), media_type="application/schema+json")

    @router.get(
        "/collections/{collectionId}/items",
        summary="Objets d'une collection (GeoJSON, pages ou téléchargement)",
        openapi_extra={"parameters": [cid_param, *ogc_parameters(settings)]},
        response_class=Response,
    )
    def items(
        collectionId: str,  # noqa: N803
        request: Request,
        conn: Connection = Depends(get_conn),
        engine: Engine = Depends(get_engine),
        st: Settings = Depends(get_settings),
    ) -> Response:
        c = collection_or_404(collectionId)
        allowed = (
            ITEMS_PARAMS | (set(SIMPLE_FILTERS) if c.simple_filters else set()) | equality_params(c)
        )
        params = query_params(request, allowed)
        fmt = negotiate(request, params, ("json", "geojson", "html", "csv", "gpkg", "fgb"))
        # A FilterError becomes a 400 with errors[] in api/errors.py.
        where, binds = compile_filter(c, params, FilterLimits.from_settings(st))
        props = parse_properties(c, params.get("properties"))
        crs_uri, srid, swap = parse_crs(params.get("crs"), "crs")
        if fmt in exp.FORMATS:
            limit = parse_limit(params, st, None) if "limit" in params else None
            if fmt == "geojson" and crs_uri != CRS84:
                raise Problem(400, exp.GEOJSON_CRS84)
            # Downloads are x/y in both CRS (CRS84 and Lambert-93 are east, north).
            out = Output(srid=srid, properties=props)
            return download_response(
                request, engine, conn, st, c, fmt, where, binds, limit, out, crs_uri
            )
        limit = parse_limit(params, st, st.default_limit) or st.default_limit
        offset = parse_offset(params)
        out = Output(srid=srid, swap=swap, properties=props)
        after: Any = params.get("after")
        if after is not None and c.id_type == "integer":
            after = int_param(after, "after", 0, 2**63 - 1, "identifiant entier attendu")
        page = run_db(
            items_page,
            conn,
            c,
            where,
            binds,
            limit=limit,
            offset=offset,
            sortby=params.get("sortby"),
            out=out,
            after=after,
        )
        root = base_url(request, st)
        links = _links_for_page(root, c.id, params, offset, limit, page.has_next, page.last_id)
        headers = {"Content-Crs": f"<{crs_uri}>"}
        if fmt == "html":
            return html(
                request,
                "ogc_items.html",
                collection=c,
                features=json.loads(page.features),
                page=page,
                links=links,
                offset=offset,
                headers=headers,
            )
        meta: dict[str, Any] = {"numberReturned": page.number_returned}
        if page.number_matched is not None:
            meta["numberMatched"] = page.number_matched
        meta["timeStamp"] = None
        meta["links"] = links
        meta_text = json_bytes(meta).decode()
        meta_text = meta_text.replace('"timeStamp":null', '"timeStamp":"' + _now() + '"')
        body = '{"type":"FeatureCollection","features":' + page.features + "," + meta_text[1:]
        return Response(body.encode(), media_type=GEOJSON, headers=headers)

    @router.get(
        "/collections/{collectionId}/items/{featureId}",
        summary="Un objet",
        openapi_extra={
            "parameters": [
                cid_param,
                {"name": "featureId", "in": "path", "required": True, "schema": {"type": "string"}},
                *[p for p in ogc_parameters(settings) if p["name"] in ("f", "crs", "properties")],
            ]
        },
        response_class=Response,
    )
    def item(
        collectionId: str,  # noqa: N803
        featureId: str,  # noqa: N803
        request: Request,
        conn: Connection = Depends(get_conn),
        st: Settings = Depends(get_settings),
    ) -> Response:
        c = collection_or_404(collectionId)
        params = query_params(request, {"f", "crs", "properties"})
        fmt = negotiate(request, params, ("json", "geojson", "html"))
        crs_uri, srid, swap = parse_crs(params.get("crs"), "crs")
        props = parse_properties(c, params.get("properties"))
        found = None
        if "\x00" not in featureId:
            found = feature(conn, c, featureId, Output(srid=srid, swap=swap, properties=props))
        if found is None:
            into = merged_structure(conn, c.id, featureId)
            if into is not None:  # merged as a duplicate: the survivor, permanently
                query = f"?{request.url.query}" if request.url.query else ""
                target = f"{base_url(request, st)}/collections/{c.id}/items/{into}{query}"
                return Response(status_code=301, headers={"Location": target})
            raise Problem(404, f"aucun objet {featureId} dans la collection {c.id}")
        text, facts = found
        root = base_url(request, st)
        href = f"{root}/collections/{c.id}/items/{featureId}"
        links = [
            {"rel": "self", "type": GEOJSON, "href": href},
            {"rel": "alternate", "type": "text/html", "href": href + "?f=html"},
            {"rel": "collection", "type": "application/json", "href": f"{root}/collections/{c.id}"},
        ]
        headers = {"Content-Crs": f"<{crs_uri}>"}
        if "version" in facts:
            headers["ETag"] = f'"{facts["version"]}"'
        if facts.get("updated_at") is not None:
            headers["Last-Modified"] = format_datetime(facts["updated_at"], usegmt=True)
        if fmt == "html":
            return html(
                request,
                "ogc_items.html",
                collection=c,
                features=[json.loads(text)],
                page=None,
                links=links,
                offset=0,
                headers=headers,
            )
        body = text[:-1] + ',"links":' + json_bytes(links).decode() + "}"
        return Response(body.encode(), media_type=GEOJSON, headers=headers)

    return router


def _now() -> str:
    from datetime import datetime

    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
