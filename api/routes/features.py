"""OGC API – Features (Parts 1, 2 and 3) at the root: landing page, collections, items.

Handlers are sync (the pooled engine runs in the thread pool); features are GeoJSON text built
by PostGIS and sent as raw bytes. Query parameters arrive parsed and checked, as request
objects built by the dependencies of `api/params.py` (an unknown or invalid one is a 400).
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

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, Response
from sqlalchemy.engine import Connection, Engine
from starlette.background import BackgroundTask

from api.deps import get_conn, get_engine, get_settings
from api.errors import Problem, run_db
from api.params import (
    SUPPORTED_CRS,
    ItemQuery,
    ItemsQuery,
    collection_param,
    feature_id_param,
    item_query,
    items_query,
    json_or_html,
    ogc_parameters,
)
from api.responses import GEOJSON, html, json_bytes
from api.streaming import CursorStreamingResponse, content_disposition
from api.urls import public_base
from carteco import export as exp
from carteco.collections import COLLECTIONS, Collection
from carteco.features import collection_extent, feature, items_page, loaded_levels
from carteco.filters import CRS84
from carteco.gogocarto import gogocarto_meta, gogocarto_stream
from carteco.registry import registry_summary
from carteco.settings import Settings

OPENAPI_MEDIA = "application/vnd.oai.openapi+json;version=3.0"
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


# -- parameter handling ------------------------------------------------------------------------


def _wants_gzip(request: Request) -> bool:
    """True when the client accepts gzip."""
    return "gzip" in request.headers.get("accept-encoding", "").lower()


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
    request: Request, engine: Engine, conn: Connection, settings: Settings, q: ItemsQuery
) -> Response:
    """A whole (filtered) collection as a file: streamed GeoJSON/CSV, or GPKG/FlatGeobuf."""
    c, fmt, where, binds, limit, out = q.collection, q.fmt, q.where, q.binds, q.limit, q.output
    crs_uri = q.crs_uri
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
        fmt: str = Depends(json_or_html),
    ) -> Response:
        root = public_base(request)
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
    def conformance(request: Request, fmt: str = Depends(json_or_html)) -> Response:
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
        fmt: str = Depends(json_or_html),
    ) -> Response:
        root = public_base(request)
        levels = loaded_levels(conn)
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
        request: Request,
        conn: Connection = Depends(get_conn),
        c: Collection = Depends(collection_param),
        fmt: str = Depends(json_or_html),
    ) -> Response:
        doc = collection_doc(c, public_base(request), collection_extent(conn, c))
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
        request: Request,
        c: Collection = Depends(collection_param),
        fmt: str = Depends(json_or_html),
    ) -> Response:
        doc = queryables_doc(c, public_base(request))
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
        request: Request,
        conn: Connection = Depends(get_conn),
        engine: Engine = Depends(get_engine),
        st: Settings = Depends(get_settings),
        q: ItemsQuery = Depends(items_query),
    ) -> Response:
        c = q.collection
        if q.fmt == "gogocarto":
            return CursorStreamingResponse(
                gogocarto_stream(engine, c, q.where, q.binds, q.limit, meta=gogocarto_meta(st)),
                gzip=_wants_gzip(request),
                media_type="application/json",
                headers={
                    "Content-Disposition": content_disposition("elements.json"),
                    "Link": exp.licence_link(st.data_licence, st.data_attribution),
                },
            )
        if q.download:
            return download_response(request, engine, conn, st, q)
        assert q.limit is not None  # a page always has one
        page = run_db(
            items_page,
            conn,
            c,
            q.where,
            q.binds,
            limit=q.limit,
            offset=q.offset,
            sortby=q.sortby,
            out=q.output,
            after=q.after,
        )
        root = public_base(request)
        links = _links_for_page(
            root, c.id, q.params, q.offset, q.limit, page.has_next, page.last_id
        )
        headers = {"Content-Crs": f"<{q.crs_uri}>"}
        if q.fmt == "html":
            return html(
                request,
                "ogc_items.html",
                collection=c,
                features=json.loads(page.features),
                page=page,
                links=links,
                offset=q.offset,
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
        request: Request,
        conn: Connection = Depends(get_conn),
        q: ItemQuery = Depends(item_query),
        featureId: str = Depends(feature_id_param),  # noqa: N803 - the OGC path parameter
    ) -> Response:
        c = q.collection
        found = None
        if "\x00" not in featureId:
            found = feature(conn, c, featureId, q.output)
        if found is None:
            raise Problem(404, f"aucun objet {featureId} dans la collection {c.id}")
        text, facts = found
        root = public_base(request)
        href = f"{root}/collections/{c.id}/items/{featureId}"
        links = [
            {"rel": "self", "type": GEOJSON, "href": href},
            {"rel": "alternate", "type": "text/html", "href": href + "?f=html"},
            {"rel": "collection", "type": "application/json", "href": f"{root}/collections/{c.id}"},
        ]
        headers = {"Content-Crs": f"<{q.crs_uri}>"}
        if "version" in facts:
            headers["ETag"] = f'"{facts["version"]}"'
        if facts.get("updated_at") is not None:
            headers["Last-Modified"] = format_datetime(facts["updated_at"], usegmt=True)
        if q.fmt == "html":
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
