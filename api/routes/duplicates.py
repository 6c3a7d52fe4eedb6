"""Duplicate moderation (scope « moderate »): candidate pairs, merges, keep-apart decisions.

Every decision is written to `audit_log` and remembered (`duplicate_decisions`), so a
re-import does not propose the pair again. A merge may carry `If-Match` with the ETag of the
structure kept: 412 when it changed since it was read.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from sqlalchemy.engine import Engine

from api.deps import bearer, get_engine, require
from api.errors import Problem
from api.routes.features import json_bytes
from api.routes.writes import expected_version, stale
from carteco.auth import Token, audit
from carteco.duplicates import DEFAULT_MIN_SCORE, keep_apart, list_duplicates, merge
from carteco.registry import lock_structure_version

__all__ = ["bearer", "duplicates_router"]
MAX_PAIRS = 1000


def duplicates_router() -> APIRouter:
    """`GET /duplicates`, `POST /duplicates/{a}/{b}/merge`, `POST …/keep-apart`."""
    router = APIRouter(tags=["doublons"])

    @router.get("/duplicates", summary="Paires de doublons candidates (portée « moderate »)")
    def get_duplicates(
        min_score: Annotated[float, Query(ge=0, le=1)] = DEFAULT_MIN_SCORE,
        territoire: Annotated[str | None, Query(max_length=40)] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAIRS)] = 100,
        token: Token = Depends(require("moderate")),
        engine: Engine = Depends(get_engine),
    ) -> Response:
        with engine.begin() as conn:
            pairs = list_duplicates(conn, min_score, territoire)
        body = {
            "count": len(pairs),
            "min_score": min_score,
            "pairs": [p.as_dict() for p in pairs[:limit]],
        }
        return Response(json_bytes(body), media_type="application/json")

    @router.post(
        "/duplicates/{a}/{b}/merge",
        summary="Fusionner b dans a, ou a dans b avec keep=b (If-Match facultatif ; « moderate »)",
    )
    def post_merge(
        a: int,
        b: int,
        request: Request,
        keep: int | None = None,
        token: Token = Depends(require("moderate")),
        engine: Engine = Depends(get_engine),
    ) -> Response:
        survivor = a if keep is None else keep
        if survivor not in (a, b):
            raise Problem(400, f"keep : {a} ou {b} attendu")
        other = b if survivor == a else a
        version = None
        if request.headers.get("if-match") is not None:
            version = expected_version(request)
        with engine.begin() as conn:
            if version is not None:
                current = lock_structure_version(conn, survivor)
                if current is not None and current != version:
                    raise stale(current)
            done = merge(conn, survivor, other, by=f"api:{token.name}")
            audit(conn, token, "merge", f"structures/{survivor}", done)
        return Response(json_bytes(done), media_type="application/json")

    @router.post(
        "/duplicates/{a}/{b}/keep-apart",
        summary="Garder deux structures séparées (portée « moderate »)",
    )
    def post_keep_apart(
        a: int,
        b: int,
        token: Token = Depends(require("moderate")),
        engine: Engine = Depends(get_engine),
    ) -> Response:
        with engine.begin() as conn:
            done = keep_apart(conn, a, b, by=f"api:{token.name}")
            audit(conn, token, "keep-apart", f"structures/{a}", done)
        return Response(json_bytes(done), media_type="application/json")

    return router
