"""Land-access diagnostics: GET /diagnostics/foncier/{dep} (HTML report) and its .json figures."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.engine import Connection

from api.deps import get_conn
from api.errors import Problem
from carteco.diagnostics.indicators import Options, departement_info, foncier_indicators
from carteco.diagnostics.report import build_report, to_json
from carteco.territory_levels import DEPARTEMENT_CODE

_DEP = DEPARTEMENT_CODE


def _check(conn: Connection, dep: str, min_sales: int) -> str:
    dep = dep.upper()
    if not _DEP.match(dep):
        raise Problem(400, f"code de département invalide : {dep!r} (ex. 93, 31, 2A, 974)")
    if not 1 <= min_sales <= 1000:
        raise Problem(400, "min_sales doit être compris entre 1 et 1000")
    if departement_info(conn, dep) is None:
        raise Problem(404, f"département inconnu : {dep}")
    return dep


def diagnostics_router() -> APIRouter:
    """The land diagnostic of a département, as a report page and as JSON."""
    router = APIRouter(prefix="/diagnostics", tags=["diagnostics"])

    # The .json route first: "{dep}" alone would also match "93.json".
    @router.get("/foncier/{dep}.json", summary="Indicateurs du diagnostic foncier (JSON)")
    def foncier_json(
        dep: str, min_sales: int = 5, conn: Connection = Depends(get_conn)
    ) -> Response:
        dep = _check(conn, dep, min_sales)
        doc = foncier_indicators(conn, dep, Options(min_sales=min_sales))
        return Response(to_json(doc), media_type="application/json")

    @router.get(
        "/foncier/{dep}", response_class=HTMLResponse, summary="Rapport du diagnostic foncier"
    )
    def foncier_html(
        dep: str, min_sales: int = 5, conn: Connection = Depends(get_conn)
    ) -> HTMLResponse:
        dep = _check(conn, dep, min_sales)
        _doc, _layers, html = build_report(conn, dep, Options(min_sales=min_sales))
        return HTMLResponse(html)

    return router
