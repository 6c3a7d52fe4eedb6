"""BAN-compatible geocoding API (api-adresse shapes) and the location correction endpoint."""

from __future__ import annotations

import tempfile
import threading
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy.engine import Connection, Engine
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from api.deps import AuthFirstRoute, client_of, get_conn, require
from api.errors import Problem
from api.routes.writes import check_version, expected_version, field_problem
from api.streaming import content_disposition
from carteco.auth import Token, audit
from carteco.geocoding.backends import LocalBackend
from carteco.geocoding.csvfile import CsvStats, geocode_csv
from carteco.geocoding.engine import RESULT_TYPES, LocalGeocoder
from carteco.geocoding.registry import set_manual_location
from carteco.settings import Settings
from carteco.structure_fields import FieldError, cell_error, point_error

ATTRIBUTION = "BAN"
LICENCE = "ETALAB-2.0"


# Read by the route itself once a place is free (see BatchGate): documented here.
CSV_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["data"],
                    "properties": {
                        "data": {
                            "type": "string",
                            "format": "binary",
                            "description": "Fichier CSV",
                        },
                        "columns": {"type": "array", "items": {"type": "string"}},
                        "postcode": {"type": "string"},
                        "citycode": {"type": "string"},
                        "result_columns": {"type": "array", "items": {"type": "string"}},
                    },
                }
            }
        },
    }
}
# Seconds a refused client is told to wait: about one job of a few thousand rows.
BATCH_RETRY_AFTER_S = 5


class BatchGate:
    """How many CSV jobs run at once: `total` in the process, `per_client` per address.

    Per worker process (a job is CPU and one pooled connection of this process). Past either
    bound, the batch route alone answers 503 or 429 with Retry-After; reads never queue here.
    """

    def __init__(self, total: int, per_client: int) -> None:
        self.total = max(1, total)
        self.per_client = max(1, per_client)
        self.running = 0
        self.by_client: dict[str, int] = {}
        self.lock = threading.Lock()

    def enter(self, client: str) -> None:
        """Take a place for `client`, or raise the 429 / 503 problem."""
        retry = {"Retry-After": str(BATCH_RETRY_AFTER_S)}
        with self.lock:
            if self.by_client.get(client, 0) >= self.per_client:
                raise Problem(
                    429,
                    f"{self.per_client} géocodage(s) CSV à la fois par client ; "
                    "attendez la fin du précédent",
                    headers=retry,
                )
            if self.running >= self.total:
                raise Problem(
                    503, "géocodage CSV saturé ; réessayez dans un instant", headers=retry
                )
            self.running += 1
            self.by_client[client] = self.by_client.get(client, 0) + 1

    def leave(self, client: str) -> None:
        """Give `client`'s place back."""
        with self.lock:
            self.running -= 1
            left = self.by_client.get(client, 1) - 1
            if left > 0:
                self.by_client[client] = left
            else:
                self.by_client.pop(client, None)


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
        postcode: Annotated[str | None, Query(pattern=r"^[0-9]{5}$")] = None,
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

    @router.post(
        "/search/csv/",
        openapi_extra=CSV_BODY,
        response_class=StreamingResponse,
        responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}},
    )
    async def search_csv(request: Request) -> StreamingResponse:
        """Geocode a CSV (api-adresse /search/csv/): result columns appended, order kept."""
        st: Settings = request.app.state.settings
        gate: BatchGate = request.app.state.batch_gate
        client = client_of(request)
        # A place is taken before the upload is read: a full queue costs the client nothing.
        gate.enter(client)
        # Until the job's thread owns the place (and the upload), this coroutine gives them
        # back; after, the thread does, when it really ends: a request cut by the timeout
        # must not free a place while its geocoding still runs.
        handed_over = False
        form = None
        try:
            form = await request.form(max_files=1, max_fields=20)
            data = form.get("data")
            if not isinstance(data, UploadFile):
                raise Problem(400, "data : un fichier CSV est attendu (multipart/form-data)")
            columns = [c for c in form.getlist("columns") if isinstance(c, str) and c]
            result_columns = [c for c in form.getlist("result_columns") if isinstance(c, str) and c]
            postcode, citycode = form.get("postcode"), form.get("citycode")
            if not isinstance(postcode, str | None) or not isinstance(citycode, str | None):
                raise Problem(400, "postcode, citycode : des noms de colonnes sont attendus")
            # Its own small pool: batch work never takes a connection reads need.
            backend = LocalBackend(request.app.state.batch_engine)
            # Spooled to disk beyond 8 MB: memory stays flat on big files.
            out = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)  # noqa: SIM115
            src = data.file

            def job() -> CsvStats:
                try:
                    return geocode_csv(
                        src,
                        out,
                        backend,
                        columns or None,
                        postcode or None,
                        citycode or None,
                        max_rows=st.ban_csv_max_rows,
                        result_names=result_columns or None,
                    )
                except BaseException:
                    out.close()
                    raise
                finally:
                    src.close()
                    gate.leave(client)

            handed_over = True
            # A CsvInputError is a 400 via api/errors.py.
            stats = await run_in_threadpool(job)
            name = (data.filename or "data.csv").rsplit(".", 1)[0] + ".geocoded.csv"
        finally:
            if not handed_over:
                if form is not None:
                    await form.close()
                gate.leave(client)
        out.seek(0)
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
            headers={"Content-Disposition": content_disposition(name)},
        )

    return router


class LocationBody(BaseModel):
    """A corrected location: a point, or an address to geocode."""

    lon: float | None = Field(default=None, ge=-180, le=180)
    lat: float | None = Field(default=None, ge=-90, le=90)
    address: str | None = Field(default=None, max_length=500)
    reason: str | None = Field(default=None, max_length=500)


def location_router() -> APIRouter:
    """PATCH /structures/{id}/location (token required, checked before the body is read)."""
    router = APIRouter(tags=["géocodage"], route_class=AuthFirstRoute)

    @router.patch("/structures/{structure_id}/location")
    def patch_location(
        request: Request,
        structure_id: int,
        body: LocationBody,
        tok: Annotated[Token, Depends(require("edit"))],
        if_match: Annotated[str | None, Header()] = None,
    ) -> JSONResponse:
        """Move a structure by hand (precision manual); the previous point goes to history."""
        engine: Engine = request.app.state.engine
        # Same rules as every write: If-Match required (no lost update), shared field checks.
        expected = expected_version(request)
        errors = [
            FieldError(name, text, reason)
            for name, text in (("address", body.address), ("reason", body.reason))
            if text and (reason := cell_error(text))
        ]
        if errors:
            raise field_problem(errors)
        with engine.begin() as conn:
            who = f"token:{tok.name}"
            check_version(conn, structure_id, expected)
            score: float | None = None
            if body.address:
                res = LocalGeocoder(conn).search(body.address, limit=1)
                if not res:
                    raise Problem(400, f"adresse introuvable : {body.address}")
                lon, lat, score = res[0].lon, res[0].lat, res[0].score
            elif body.lon is not None and body.lat is not None:
                lon, lat = body.lon, body.lat
                reason = point_error(lon, lat)
                if reason:
                    raise field_problem([FieldError("lon/lat", f"{lon}, {lat}", reason)])
            else:
                raise Problem(400, "attendu : lon et lat, ou address")
            row = set_manual_location(
                conn, structure_id, lon, lat, by=who, score=score,
                reason=body.reason or "correction manuelle",
            )  # fmt: skip
            if row is not None:
                audit(conn, tok, "structure.location", f"structures/{structure_id}",
                      {"lon": lon, "lat": lat, "address": body.address})  # fmt: skip
        if row is None:
            raise Problem(404, f"structure {structure_id} introuvable")
        row["located_at"] = row["located_at"].isoformat()
        return JSONResponse(row, headers={"ETag": f'"{row["version"]}"'})

    return router
