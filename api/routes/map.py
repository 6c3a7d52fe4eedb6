"""The public map (/carte), its embeddable version (/embed, /carte/integrer) and the
collectivité view (/territoires/{level}/{code}), all on Carteco's own vector tiles."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.engine import Connection

from api.deps import get_conn
from api.errors import Problem
from api.templating import TEMPLATES
from api.urls import public_base
from carteco import carte
from carteco.collections import get_collection
from carteco.families import FAMILY_LABELS
from carteco.filters import FilterLimits, compile_filter
from carteco.history import PARAM as AS_OF
from carteco.history import cutoff, parse_as_of
from carteco.registry import registry_summary
from carteco.sectors import load_taxonomy
from carteco.settings import Settings
from carteco.stats import territory_stats
from carteco.territory_levels import LEVEL_COLUMNS
from tiles.filters import normalise_params, parse_territory

# The page's default view: Île-de-France, where the shipped data lives.
DEFAULT_VIEW = {"lon": 2.42, "lat": 48.80, "zoom": 8.3}


def _has_route(request: Request, path: str) -> bool:
    """Whether the app serves `path` (e.g. the optional /ban/search/), from its OpenAPI paths."""
    state = request.app.state
    paths = getattr(state, "carteco_paths", None)
    if paths is None:
        try:
            paths = set(request.app.openapi().get("paths", {}))
        except Exception:  # noqa: BLE001 - an optional feature must not break the map page
            paths = set()
        state.carteco_paths = paths
    return path in paths


def _locked_territory(conn: Connection, value: str | None) -> dict[str, Any] | None:
    if not value:
        return None
    level, code = parse_territory(value)  # TerritoryParamError: a 400 via api/errors.py
    terr = carte.territory(conn, level, code)
    if terr is None:
        raise Problem(404, f"territoire inconnu : {level} {code}")
    return terr


def map_config(
    request: Request,
    conn: Connection,
    *,
    embed: bool = False,
    locked: dict[str, Any] | None = None,
    preset: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Everything the map script needs, passed once as JSON in the page."""
    settings: Settings = request.app.state.settings
    sectors = carte.sector_tree(conn)
    return {
        "embed": embed,
        "basemap": settings.basemap_style_url,
        "pmtiles": settings.map_pmtiles_url,
        "structuresTiles": "/collections/structures/tiles/WebMercatorQuad/{z}/{y}/{x}",
        "territoryTiles": "/collections/{layer}/tiles/WebMercatorQuad/{z}/{y}/{x}",
        "sectors": sectors,
        "families": [{"code": k, "label": v} for k, v in FAMILY_LABELS.items()],
        "territories": [] if locked else carte.territory_choices(conn),
        "locked": (
            {
                "level": locked["level"],
                "code": locked["code"],
                "name": locked["name"],
                "bbox": locked["bbox"],
                "outline": locked["outline"],
            }
            if locked
            else None
        ),
        "preset": preset or {},
        "ban": _has_route(request, "/ban/search/") or _has_route(request, "/ban/search"),
        "view": DEFAULT_VIEW,
        "attribution": settings.data_attribution,
    }


def _filters(request: Request) -> tuple[str, dict[str, Any]]:
    params = dict(request.query_params)
    # FilterError and TerritoryParamError: a 400 via api/errors.py.
    norm = normalise_params(params)
    if params.get("bbox"):
        norm["bbox"] = params["bbox"]
    collection = get_collection("structures")
    assert collection is not None
    limits = FilterLimits.from_settings(request.app.state.settings)
    return compile_filter(collection, norm, limits)


def _check_filters(request: Request, conn: Connection) -> None:
    """Refuse the filters of a map link that name no sector, family or territory (400 / 404)."""
    _filters(request)
    if request.query_params.get(AS_OF):
        parse_as_of(request.query_params[AS_OF])  # AsOfError: a 400 (the tiles would refuse it)
    _locked_territory(conn, request.query_params.get("territoire"))


def download_links(level: str, code: str) -> list[dict[str, str]]:
    """Links to the features API downloads of one territory's structures."""
    if level in ("commune", "departement", "epci", "ept"):
        query = urlencode({level: code})
    else:
        # The code is a checked territory code (letters and digits only).
        query = urlencode({"filter": f"{LEVEL_COLUMNS[level]} = '{code}'"})
    base = "/collections/structures/items?limit=10000&" + query
    return [
        {"label": "GeoJSON", "href": base + "&f=geojson", "type": "application/geo+json"},
        {"label": "CSV", "href": base + "&f=csv", "type": "text/csv"},
        {"label": "GeoPackage", "href": base + "&f=gpkg", "type": "application/geopackage+sqlite3"},
        # What a collectivité's GIS works in: metres, ready for distances and areas in QGIS.
        {
            "label": "GeoPackage Lambert-93",
            "href": base + "&f=gpkg&crs=EPSG:2154",
            "type": "application/geopackage+sqlite3",
        },
    ]


def _bar(
    label: str, value: float | None, vmax: float, color: str, note: str = ""
) -> dict[str, Any]:
    """A chart bar; a missing value (no population…) is drawn as "non disponible", not 0."""
    return {
        "label": label,
        "value": value,
        "width": 0 if value is None or vmax <= 0 else round(300 * value / vmax, 1),
        "color": color,
        "note": note,
    }


def stats_charts(stats: dict[str, Any]) -> dict[str, Any]:
    """Bars (widths in px on a 300 px scale) for the collectivité view's inline SVG charts."""
    taxonomy = {n.code: n for n in load_taxonomy().nodes}
    own = stats["figures"]

    def colour(code: str) -> str:
        top = taxonomy.get(code.split(".")[0])
        return top.color if top else "#777777"

    def label(code: str) -> str:
        node = taxonomy.get(code)
        return node.label if node else code

    sectors = sorted(own["by_sector"].items(), key=lambda kv: -kv[1]["structures"])
    vmax = max((v["structures"] for _, v in sectors), default=0)
    by_sector = [_bar(label(k), v["structures"], vmax, colour(k)) for k, v in sectors]
    comparison_rows: list[tuple[str, float | None, str]] = [
        (own["name"], own.get("per_10000"), "#1a5e20")
    ]
    for p in stats["parents"]:
        comparison_rows.append((p["name"], p.get("per_10000"), "#7d8776"))
    sib = stats.get("siblings_average")
    if sib:
        comparison_rows.append(
            (f"Moyenne des voisins ({sib['territories']})", sib.get("per_10000"), "#b0b8a8")
        )
    cmax = max((r[1] for r in comparison_rows if r[1] is not None), default=0)
    comparison = [_bar(n, v, cmax, c) for n, v, c in comparison_rows]
    nearest = stats["parents"][0] if stats["parents"] else None
    table = []
    for k, v in sectors:
        table.append(
            {
                "code": k,
                "label": label(k),
                "n": v["structures"],
                "per_10000": v.get("per_10000"),
                "parent": (nearest or {}).get("by_sector", {}).get(k, {}).get("per_10000"),
                "siblings": (sib or {}).get("by_sector", {}).get(k, {}).get("per_10000"),
            }
        )
    return {
        "by_sector": by_sector,
        "comparison": comparison,
        "table": table,
        "nearest": nearest,
    }


def map_router() -> APIRouter:
    """`/carte`, `/embed`, `/carte/integrer`, `/territoires/{level}/{code}` and their JSON."""
    router = APIRouter(tags=["carte"])

    @router.get("/carte", response_class=HTMLResponse, summary="Carte des structures")
    def carte_page(request: Request, conn: Connection = Depends(get_conn)) -> HTMLResponse:
        # An unknown sector, family or territory in the link: the same visible French error
        # page as /embed, never a map silently emptied by a filter that matches nothing.
        _check_filters(request, conn)
        return TEMPLATES.TemplateResponse(
            request,
            "carte.html",
            {"config": map_config(request, conn), "summary": registry_summary(conn)},
        )

    @router.get("/embed", response_class=HTMLResponse, summary="Carte à intégrer (iframe)")
    def embed_page(
        request: Request,
        secteur: str | None = None,
        famille: str | None = None,
        territoire: str | None = None,
        lang: str = "fr",
        conn: Connection = Depends(get_conn),
    ) -> HTMLResponse:
        if lang != "fr":
            raise Problem(400, "lang : seule la langue fr est disponible")
        locked = _locked_territory(conn, territoire)
        preset = {k: v for k, v in {"secteur": secteur, "famille": famille}.items() if v}
        _check_filters(request, conn)  # refuse an unknown sector or family now, not tile by tile
        config = map_config(request, conn, embed=True, locked=locked, preset=preset)
        # Frame headers (CSP frame-ancestors from settings.frame_ancestors) come from the
        # service middleware, which sets them on every HTML page.
        return TEMPLATES.TemplateResponse(request, "embed.html", {"config": config})

    @router.get("/carte/integrer", response_class=HTMLResponse, summary="Intégrer la carte")
    def integrer(request: Request, conn: Connection = Depends(get_conn)) -> HTMLResponse:
        return TEMPLATES.TemplateResponse(
            request,
            "carte_integrer.html",
            # The snippet's iframe points at the public URL, never at a Host header.
            {"config": map_config(request, conn), "base": public_base(request)},
        )

    @router.get("/carte/structures/{structure_id}.json", summary="Fiche d'une structure")
    def fiche(structure_id: int, conn: Connection = Depends(get_conn)) -> dict[str, Any]:
        card = carte.structure_card(conn, structure_id)
        if card is None:
            raise Problem(404, f"aucune structure active n°{structure_id}")
        return card

    @router.get("/carte/recherche", summary="Recherche de lieux et de structures")
    def recherche(
        q: str = Query(..., min_length=1, max_length=100),
        lon: float | None = Query(None, ge=-180, le=180, description="centre de la vue"),
        lat: float | None = Query(None, ge=-90, le=90, description="centre de la vue"),
        conn: Connection = Depends(get_conn),
    ) -> dict[str, Any]:
        # The view centre (both or neither) breaks ties between equally good matches.
        return carte.search(conn, q, lon=lon, lat=lat)

    @router.get("/carte/liste", summary="Structures dans la vue (liste accessible)")
    def liste(
        request: Request,
        limit: int = Query(100, ge=1, le=500),
        conn: Connection = Depends(get_conn),
    ) -> dict[str, Any]:
        where, binds = _filters(request)
        day = request.query_params.get(AS_OF)
        as_of = cutoff(parse_as_of(day)) if day else None  # the map at a past date
        return carte.structures_in_view(conn, where, binds, limit, as_of)

    @router.get(
        "/territoires/{level}/{code}",
        response_class=HTMLResponse,
        summary="Vue collectivité : structures et statistiques d'un territoire",
    )
    def territoire_page(
        level: str, code: str, request: Request, conn: Connection = Depends(get_conn)
    ) -> HTMLResponse:
        if level not in LEVEL_COLUMNS:
            raise Problem(404, f"niveau de territoire inconnu : {level}")
        terr = carte.territory(conn, level, code)
        if terr is None:
            raise Problem(404, f"territoire inconnu : {level} {code}")
        stats = territory_stats(conn, level, code)
        config = map_config(request, conn, locked=terr)
        return TEMPLATES.TemplateResponse(
            request,
            "territoire.html",
            {
                "t": terr,
                "stats": stats,
                "charts": stats_charts(stats) if stats else None,
                "config": config,
                "downloads": download_links(level, code),
                "family_labels": FAMILY_LABELS,
                "embed_url": f"/embed?territoire={level}:{code}",
            },
        )

    return router
