"""Liveness and readiness."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter, Depends
from sqlalchemy.engine import Engine

from api.deps import get_engine
from api.errors import Problem
from carteco import registry


def health_router() -> APIRouter:
    """`/healthz`: the process answers and the database responds."""
    router = APIRouter(tags=["santé"])

    @router.get("/healthz", summary="État du service et de la base")
    def healthz(engine: Engine = Depends(get_engine)) -> dict[str, object]:
        try:
            with engine.connect() as conn:
                n, postgis = registry.health(conn)
        except sa.exc.SQLAlchemyError as exc:
            raise Problem(
                503, "la base de données ne répond pas", headers={"Retry-After": "5"}
            ) from exc
        return {"status": "ok", "database": "ok", "postgis": postgis, "structures": n}

    return router
