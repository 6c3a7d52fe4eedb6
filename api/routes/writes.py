"""The write API, guarded by tokens (`Authorization: Bearer`): imports, edits, closures.

Every write is recorded in `audit_log`. Edits need `If-Match` with the structure's ETag
(its version) so two editors never overwrite each other; DELETE closes a structure
(status `closed`), it never removes the row.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import Response
from sqlalchemy.engine import Engine

from api.deps import get_engine, get_settings
from api.errors import Problem
from api.routes.features import GEOJSON, base_url, json_bytes, no_nul
from carteco.auth import AuthError, Token, audit, verify_token
from carteco.collections import COLLECTIONS
from carteco.features import feature
from carteco.geocoding.registry import set_manual_location
from carteco.importer import ImportFileError, run_import
from carteco.importer.mapping import Mapping
from carteco.importer.validate import in_france
from carteco.models import ESS_FAMILIES, STATUSES
from carteco.sectors import load_taxonomy
from carteco.settings import Settings

STRUCTURES = COLLECTIONS["structures"]
# Fields a PATCH may change, with their JSON type check.
EDITABLE: dict[str, Callable[[Any], bool]] = {
    "name": lambda v: isinstance(v, str) and 0 < len(v.strip()) <= 500,
    "description": lambda v: v is None or (isinstance(v, str) and len(v) <= 10_000),
    "website": lambda v: v is None or (isinstance(v, str) and len(v) <= 500),
    "address_line": lambda v: v is None or (isinstance(v, str) and len(v) <= 500),
    "postcode": lambda v: v is None or (isinstance(v, str) and v.isdigit() and len(v) == 5),
    "commune_name": lambda v: v is None or (isinstance(v, str) and len(v) <= 200),
    "legal_form": lambda v: v is None or (isinstance(v, str) and len(v) <= 200),
    "ess_family": lambda v: v in ESS_FAMILIES,
    "esus": lambda v: isinstance(v, bool),
    "status": lambda v: v in STATUSES,
    "sectors": lambda v: isinstance(v, list) and all(isinstance(s, str) for s in v),
    "opened_on": lambda v: v is None or _is_date(v),
    "closed_on": lambda v: v is None or _is_date(v),
}


# Writes answer with the structure as it now is: a GeoJSON Feature.
FEATURE_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/geo+json": {"schema": {"type": "object"}}}}
}


def _is_date(v: Any) -> bool:
    try:
        date.fromisoformat(v)
    except (TypeError, ValueError):
        return False
    return True


def bearer(request: Request) -> str | None:
    """The token of an `Authorization: Bearer` header."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def require(scope: str) -> Callable[..., Token]:
    """A dependency: the request's token, which must hold `scope` (401 / 403 otherwise)."""

    def dep(request: Request, engine: Engine = Depends(get_engine)) -> Token:
        try:
            with engine.begin() as conn:
                return verify_token(conn, bearer(request), scope)
        except AuthError as exc:
            headers = {"WWW-Authenticate": 'Bearer realm="carteco"'} if exc.status == 401 else {}
            raise Problem(exc.status, exc.message, headers=headers) from exc

    return dep


def _etag_version(header: str | None) -> int | None:
    if header is None:
        return None
    v = header.strip()
    if v.startswith("W/"):
        v = v[2:]
    v = v.strip('"')
    return int(v) if v.isdigit() else -1


def _run_job(engine: Engine, job_id: int, path: Path, opts: dict[str, Any]) -> None:
    """Run an import job in the background and store its report."""
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE import_jobs SET status = 'running' WHERE id = :i"), {"i": job_id}
        )
    status, report, message = "failed", None, None
    try:
        mapping = Mapping.from_file(opts["mapping"]) if opts.get("mapping") else None
        rep = run_import(
            engine,
            path,
            source=opts["source"],
            mapping=mapping,
            dry_run=opts["dry_run"],
            skip_invalid=opts["skip_invalid"],
        )
        status, report = rep.status, rep.as_dict()
    except ImportFileError as exc:
        status, message = "rejected", str(exc)
    except Exception as exc:  # noqa: BLE001 - the job records any failure for its caller
        status, message = "failed", f"{type(exc).__name__}: {exc}"
    finally:
        shutil.rmtree(path.parent, ignore_errors=True)
    if status not in ("succeeded", "rejected", "failed", "dry_run"):
        status = "failed"
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE import_jobs SET status = :s, report = CAST(:r AS jsonb), message = :m, "
                "run_id = :run, finished_at = now() WHERE id = :i"
            ),
            {
                "s": status,
                "r": json.dumps(report, default=str) if report else None,
                "m": message or (report or {}).get("message"),
                "run": (report or {}).get("run_id"),
                "i": job_id,
            },
        )


def writes_router() -> APIRouter:
    """`POST /imports`, `GET /imports/{id}`, `PATCH`/`DELETE /structures/{id}`."""
    router = APIRouter(tags=["écriture"])

    @router.post(
        "/imports",
        status_code=202,
        summary="Importer un fichier (asynchrone ; portée « import »)",
    )
    def post_import(
        request: Request,
        file: UploadFile = File(..., description="CSV, XLSX, GeoJSON... comme `carteco import`."),
        source: str | None = Form(None, description="Nom de la source (défaut : nom du fichier)."),
        mapping: UploadFile | None = File(None, description="Fichier de correspondance TOML."),
        skip_invalid: bool = Form(False),
        dry_run: bool = Form(False),
        token: Token = Depends(require("import")),
        engine: Engine = Depends(get_engine),
        st: Settings = Depends(get_settings),
    ) -> Response:
        if int(request.headers.get("content-length") or 0) > st.max_body_bytes:
            raise Problem(413, f"fichier trop volumineux ({st.max_body_bytes} octets au plus)")
        name = Path(file.filename or "import.csv").name
        no_nul("file", name, source or "")
        tmpdir = Path(tempfile.mkdtemp(prefix="carteco-import-"))
        path = tmpdir / name
        with path.open("wb") as f:
            shutil.copyfileobj(file.file, f)
        if path.stat().st_size > st.max_body_bytes:
            shutil.rmtree(tmpdir, ignore_errors=True)
            raise Problem(413, f"fichier trop volumineux ({st.max_body_bytes} octets au plus)")
        opts: dict[str, Any] = {
            "source": (source or Path(name).stem).strip(),
            "dry_run": dry_run,
            "skip_invalid": skip_invalid,
        }
        if mapping is not None:
            mpath = tmpdir / "mapping.toml"
            with mpath.open("wb") as f:
                shutil.copyfileobj(mapping.file, f)
            opts["mapping"] = mpath
        with engine.begin() as conn:
            job_id = conn.execute(
                sa.text(
                    "INSERT INTO import_jobs (file_name, source, token_id) "
                    "VALUES (:f, :s, :t) RETURNING id"
                ),
                {"f": name, "s": opts["source"], "t": token.id},
            ).scalar_one()
            audit(conn, token, "import", f"imports/{job_id}", {"file": name, **opts})
        threading.Thread(
            target=_run_job, args=(engine, int(job_id), path, opts), daemon=True
        ).start()
        href = f"{base_url(request, st)}/imports/{job_id}"
        return Response(
            json_bytes({"id": job_id, "status": "queued", "href": href}),
            status_code=202,
            media_type="application/json",
            headers={"Location": href},
        )

    @router.get("/imports/{job_id}", summary="État et rapport d'un import (portée « import »)")
    def get_import(
        job_id: int,
        token: Token = Depends(require("import")),
        engine: Engine = Depends(get_engine),
    ) -> Response:
        with engine.connect() as conn:
            row = (
                conn.execute(
                    sa.text(
                        "SELECT id, status, file_name, source, run_id, report, message, "
                        "created_at, finished_at FROM import_jobs WHERE id = :i"
                    ),
                    {"i": job_id},
                )
                .mappings()
                .first()
            )
        if row is None:
            raise Problem(404, f"import inconnu : {job_id}")
        return Response(json_bytes(dict(row)), media_type="application/json")

    def _current(engine: Engine, request: Request, st: Settings, sid: str) -> Response:
        with engine.connect() as conn:
            found = feature(conn, STRUCTURES, sid)
        if found is None:
            raise Problem(404, f"structure inconnue : {sid}")
        text, facts = found
        return Response(
            text.encode(), media_type=GEOJSON, headers={"ETag": f'"{facts["version"]}"'}
        )

    @router.patch(
        "/structures/{structure_id}",
        summary="Modifier une structure (If-Match obligatoire ; portée « edit »)",
        responses=FEATURE_RESPONSE,
    )
    def patch_structure(
        structure_id: int,
        request: Request,
        changes: dict[str, Any],
        token: Token = Depends(require("edit")),
        engine: Engine = Depends(get_engine),
        st: Settings = Depends(get_settings),
    ) -> Response:
        expected = _etag_version(request.headers.get("if-match"))
        if expected is None:
            raise Problem(428, "en-tête If-Match obligatoire (ETag de la structure)")
        if "\\u0000" in json.dumps(changes):
            raise Problem(400, "caractère NUL interdit")
        sets: list[str] = []
        values: dict[str, Any] = {"id": structure_id, "v": expected}
        new_point: tuple[float, float] | None = None
        for key, value in changes.items():
            if key == "geometry":
                if not (
                    isinstance(value, dict)
                    and value.get("type") == "Point"
                    and isinstance(value.get("coordinates"), list)
                    and len(value["coordinates"]) == 2
                    and all(isinstance(c, (int, float)) for c in value["coordinates"])
                    and -180 <= value["coordinates"][0] <= 180
                    and -90 <= value["coordinates"][1] <= 90
                ):
                    raise Problem(400, "geometry : un Point GeoJSON (longitude, latitude) attendu")
                if not in_france(*value["coordinates"]):
                    raise Problem(400, "geometry : point hors de France")
                # One way to move a point by hand: set_manual_location keeps the history.
                new_point = (float(value["coordinates"][0]), float(value["coordinates"][1]))
                continue
            check = EDITABLE.get(key)
            if check is None:
                raise Problem(400, f"champ non modifiable : {key}")
            if not check(value):
                raise Problem(400, f"valeur invalide pour {key}")
            if key == "sectors":
                known = load_taxonomy().by_code()
                bad = [s for s in value if s not in known]
                if bad:
                    raise Problem(400, f"secteur inconnu : {bad[0]}")
                sets.append(f"sectors = CAST(:p_{key} AS text[])")
            elif key in ("opened_on", "closed_on"):
                sets.append(f"{key} = CAST(:p_{key} AS date)")
            else:
                sets.append(f"{key} = :p_{key}")
            values[f"p_{key}"] = value
        if not sets and new_point is None:
            raise Problem(400, "aucune modification demandée")
        with engine.begin() as conn:
            row = conn.execute(
                sa.text(
                    f"UPDATE structures SET {', '.join(sets) or 'id = id'} "  # noqa: S608 - allow-listed keys
                    "WHERE id = :id AND version = :v RETURNING version"
                ),
                values,
            ).first()
            if row is None:
                exists = conn.execute(
                    sa.text("SELECT version FROM structures WHERE id = :id"), {"id": structure_id}
                ).scalar()
                if exists is None:
                    raise Problem(404, f"structure inconnue : {structure_id}")
                raise Problem(
                    412,
                    "la structure a changé depuis votre lecture ; relisez-la puis réessayez",
                    headers={"ETag": f'"{exists}"'},
                )
            if new_point is not None:
                set_manual_location(
                    conn, structure_id, *new_point, by=f"api:{token.name}",
                    reason="modification via l'API",
                )  # fmt: skip
            audit(conn, token, "edit", f"structures/{structure_id}", {"changes": changes})
        return _current(engine, request, st, str(structure_id))

    @router.delete(
        "/structures/{structure_id}",
        summary="Fermer une structure (statut « closed », jamais supprimée ; portée « edit »)",
        responses=FEATURE_RESPONSE,
    )
    def close_structure(
        structure_id: int,
        request: Request,
        token: Token = Depends(require("edit")),
        engine: Engine = Depends(get_engine),
        st: Settings = Depends(get_settings),
    ) -> Response:
        expected = _etag_version(request.headers.get("if-match"))
        with engine.begin() as conn:
            current = conn.execute(
                sa.text("SELECT version FROM structures WHERE id = :id FOR UPDATE"),
                {"id": structure_id},
            ).scalar()
            if current is None:
                raise Problem(404, f"structure inconnue : {structure_id}")
            if expected is not None and expected != current:
                raise Problem(412, "la structure a changé depuis votre lecture")
            conn.execute(
                sa.text(
                    "UPDATE structures SET status = 'closed', "
                    "closed_on = coalesce(closed_on, current_date) WHERE id = :id"
                ),
                {"id": structure_id},
            )
            audit(conn, token, "close", f"structures/{structure_id}", {})
        return _current(engine, request, st, str(structure_id))

    return router
