"""BAN-compatible geocoding API (api-adresse shapes) and the location correction endpoint."""

from __future__ import annotations

import tempfile
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, File, Form, Header, Query, Request, UploadFile
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy.engine import Connection

from api.deps import get_conn, get_engine
from api.errors import Problem
from carteco.geocoding.backends import LocalBackend
from carteco.geocoding.csvfile import CsvInputError, geocode_csv
from carteco.geocoding.engine import RESULT_TYPES, LocalGeocoder
from carteco.importer.validate import in_france

ATTRIBUTION = "BAN"
LICENCE = "ETALAB-2.0"


def _collection(query: dict[str, Any], features: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "type": "FeatureCollection",
        "version": "draft",
        "features": features,
        "attribution": ATTRIBUTION,
        "licence": LICENCE,
        **query,
        "limit": query.get("limit"),
    }


def ban_router() -> APIRouter:
    """Routes /search/, /reverse/, /search/csv/ (mounted under /ban)."""
    router = APIRouter(tags=["géocodage"])

    @router.get("/search/")
    def search(
        conn: Annotated[Connection, Depends(get_conn)],
        q: Annotated[str, Query(min_length=1, max_length=500)],
        limit: Annotated[int, Query(ge=1, le=50)] = 5,
        postcode: Annotated[str | None, Query(pattern=r"^\d{5}$")] = None,
        citycode: Annotated[str | None, Query(pattern=r"^[0-9][0-9AB][0-9]{3}$")] = None,
        type: Annotated[str | None, Query()] = None,
        lat: Annotated[float | None, Query(ge=-90, le=90)] = None,
        lon: Annotated[float | None, Query(ge=-180, le=180)] = None,
    ) -> JSONResponse:
        """Geocode one address (api-adresse /search/)."""
        if type is not None and type not in RESULT_TYPES:
            raise Problem(400, f"type : attendu parmi {', '.join(RESULT_TYPES)}")
        if (lat is None) != (lon is None):
            raise Problem(400, "lat et lon vont ensemble")
        if not any(c.isalnum() for c in q):
            raise Problem(400, "q : au moins un caractère alphanumérique est attendu")
        res = LocalGeocoder(conn).search(
            q, limit=limit, postcode=postcode, citycode=citycode, type=type, lat=lat, lon=lon
        )
        body = _collection({"query": q, "limit": limit}, [r.feature() for r in res])
        if postcode or citycode:
            body["filters"] = {
                k: v for k, v in (("postcode", postcode), ("citycode", citycode)) if v
            }
        return JSONResponse(body)

    @router.get("/reverse/")
    def reverse(
        conn: Annotated[Connection, Depends(get_conn)],
        lon: Annotated[float, Query(ge=-180, le=180)],
        lat: Annotated[float, Query(ge=-90, le=90)],
        limit: Annotated[int, Query(ge=1, le=50)] = 1,
        type: Annotated[str | None, Query()] = None,
    ) -> JSONResponse:
        """Nearest addresses (api-adresse /reverse/)."""
        res = LocalGeocoder(conn).reverse(lon, lat, limit=limit)
        if type:
            res = [r for r in res if r.type == type]
        return JSONResponse(_collection({"limit": limit}, [r.feature() for r in res]))

    @router.post("/search/csv/")
    def search_csv(
        request: Request,
        data: Annotated[UploadFile, File(description="Fichier CSV")],
        columns: Annotated[list[str] | None, Form()] = None,
        postcode: Annotated[str | None, Form()] = None,
        citycode: Annotated[str | None, Form()] = None,
        result_columns: Annotated[list[str] | None, Form()] = None,
    ) -> StreamingResponse:
        """Geocode a CSV (api-adresse /search/csv/): result columns appended, order kept."""
        backend = LocalBackend(get_engine(request))
        # Spooled to disk beyond 8 MB: memory stays flat on big files.
        out = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)  # noqa: SIM115
        try:
            stats = geocode_csv(
                data.file, out, backend, columns or None, postcode, citycode,
                result_names=result_columns or None,
            )  # fmt: skip
        except CsvInputError as exc:
            out.close()
            raise Problem(400, str(exc)) from exc
        out.seek(0)
        name = (data.filename or "data.csv").rsplit(".", 1)[0] + ".geocoded.csv"
        charset = "windows-1252" if stats.encoding == "cp1252" else "utf-8"

        def chunks() -> Any:
            try:
                while block := out.read(64 * 1024):
                    yield block
            finally:
                out.close()

        return StreamingResponse(
            chunks(),
            media_type=f"text/csv; charset={charset}",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    return router


class LocationBody(BaseModel):
    """A corrected location: a point, or an address to geocode."""

    lon: float | None = Field(default=None, ge=-180, le=180)
    lat: float | None = Field(default=None, ge=-90, le=90)
    address: str | None = Field(default=None, max_length=500)
    reason: str | None = Field(default=None, max_length=500)


def location_router() -> APIRouter:
    """PATCH /structures/{id}/location (token required)."""
    router = APIRouter(tags=["géocodage"])

    @router.patch("/structures/{structure_id}/location")
    def patch_location(
        request: Request,
        structure_id: int,
        body: LocationBody,
        authorization: Annotated[str | None, Header()] = None,
        if_match: Annotated[str | None, Header()] = None,
    ) -> JSONResponse:
        """Move a structure by hand (precision manual); the previous point goes to history."""
        from carteco.geocoding.registry import set_manual_location

        engine = get_engine(request)
        token = _bearer(authorization)
        with engine.begin() as conn:
            tok = _check_token(conn, token)
            who = f"token:{tok.name}"
            if if_match is not None:
                # Optional optimistic locking, same ETag (the version) as the features API.
                current = conn.execute(
                    sa.text("SELECT version FROM structures WHERE id = :id"), {"id": structure_id}
                ).scalar()
                if current is not None and if_match.strip().removeprefix("W/").strip('"') != str(
                    current
                ):
                    raise Problem(412, "la structure a changé depuis votre lecture ; relisez-la")
            score: float | None = None
            if body.address:
                res = LocalGeocoder(conn).search(body.address, limit=1)
                if not res:
                    raise Problem(400, f"adresse introuvable : {body.address}")
                lon, lat, score = res[0].lon, res[0].lat, res[0].score
            elif body.lon is not None and body.lat is not None:
                lon, lat = body.lon, body.lat
                if not in_france(lon, lat):
                    raise Problem(400, "point hors de France")
            else:
                raise Problem(400, "attendu : lon et lat, ou address")
            row = set_manual_location(
                conn, structure_id, lon, lat, by=who, score=score,
                reason=body.reason or "correction manuelle",
            )  # fmt: skip
            if row is not None:
                from carteco.auth import audit

                audit(conn, tok, "structure.location", f"structures/{structure_id}",
                      {"lon": lon, "lat": lat, "address": body.address})  # fmt: skip
        if row is None:
            raise Problem(404, f"structure {structure_id} introuvable")
        row["located_at"] = row["located_at"].isoformat()
        return JSONResponse(row, headers={"ETag": f'"{row["version"]}"'})

    return router


def _bearer(authorization: str | None) -> str | None:
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return None


def _check_token(conn: Connection, token: str | None) -> Any:
    """The token's identity through carteco.auth (the one token system), scope `edit`."""
    from carteco.auth import AuthError, verify_token

    try:
        return verify_token(conn, token, "edit")
    except AuthError as exc:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        raise Problem(exc.status, exc.message, headers=headers) from exc
