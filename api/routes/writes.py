"""The write API, guarded by tokens (`Authorization: Bearer`): imports, edits, closures.

Every write is recorded in `audit_log`. Every write to a structure (PATCH, PATCH …/location,
DELETE) needs `If-Match` with the structure's ETag (its version) so two editors never
overwrite each other: 428 without it, 412 with an older one. Field values follow the one
validator of `carteco.structure_fields`. DELETE closes a structure (status `closed`), it never
removes the row.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy.engine import Connection, Engine
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile

from api.deps import AuthFirstRoute, bearer, get_engine, get_settings, require
from api.errors import Problem
from api.params import no_nul
from api.responses import GEOJSON, json_bytes
from api.urls import public_base
from carteco import import_jobs, registry
from carteco.auth import Token, audit
from carteco.collections import COLLECTIONS
from carteco.edits import EditError, apply_changes
from carteco.errors import CartecoError
from carteco.features import feature
from carteco.history import set_change_context
from carteco.importer import ImportFileError, ReadLimits, run_import, safe_file_name
from carteco.importer.mapping import Mapping
from carteco.importer.missing import MISSING_ACTIONS
from carteco.importer.progress import JobProgress, job_progress
from carteco.models import PUBLIC_STATUSES
from carteco.registry import lock_structure_version
from carteco.settings import Settings
from carteco.structure_fields import (
    EDITABLE_FIELDS,
    FieldError,
    cell_error,
    validate_structure_fields,
)
from carteco.text import ascii_int

log = logging.getLogger("carteco.api")
STRUCTURES = COLLECTIONS["structures"]


# Writes answer with the structure as it now is: a GeoJSON Feature.
FEATURE_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/geo+json": {"schema": {"type": "object"}}}}
}


# POST /imports reads its multipart body itself, once the token is checked (AuthFirstRoute):
# documented here since no parameter declares it.
IMPORT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "CSV, XLSX, GeoJSON... comme `carteco import`.",
                        },
                        "source": {
                            "type": "string",
                            "description": "Nom de la source (défaut : nom du fichier).",
                        },
                        "mapping": {
                            "type": "string",
                            "format": "binary",
                            "description": "Fichier de correspondance TOML.",
                        },
                        "skip_invalid": {"type": "boolean", "default": False},
                        "dry_run": {"type": "boolean", "default": False},
                        "missing": {
                            "type": "string",
                            "enum": list(MISSING_ACTIONS),
                            "default": "flag",
                            "description": "Structures de la source absentes du fichier : "
                            "flag (signalées), close (fermées ce jour), keep (rien).",
                        },
                    },
                }
            }
        },
    }
}
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off", ""}
__all__ = ["bearer", "require", "writes_router"]


def _form_bool(form: FormData, name: str) -> bool:
    value = form.get(name)
    if value is None:
        return False
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise Problem(400, f"{name} : true ou false attendu")


def _etag_version(header: str | None) -> int | None:
    if header is None:
        return None
    v = header.strip()
    if v.startswith("W/"):
        v = v[2:]
    v = v.strip('"')
    version = ascii_int(v)  # not isdigit(): '²' passes it and int() then fails (a 500)
    return -1 if version is None else version


def expected_version(request: Request) -> int:
    """The version a write's `If-Match` names: 428 without one (or with `*`), -1 if unreadable."""
    header = request.headers.get("if-match")
    if header is None or header.strip() == "*":
        raise Problem(
            428,
            "en-tête If-Match obligatoire : l'ETag de la structure lue (évite d'écraser "
            "la modification d'un autre)",
        )
    return _etag_version(header) or 0


def stale(current: int) -> Problem:
    """The 412 of a write whose If-Match names an older version; it carries the current ETag."""
    return Problem(
        412,
        "la structure a changé depuis votre lecture ; relisez-la puis réessayez",
        headers={"ETag": f'"{current}"'},
    )


def check_version(conn: Connection, structure_id: int, expected: int) -> None:
    """Lock the structure for this write and check its `If-Match` version: 404 or 412."""
    current = lock_structure_version(conn, structure_id)
    if current is None:
        raise Problem(404, f"structure inconnue : {structure_id}")
    if current != expected:
        raise stale(current)


def field_problem(errors: list[FieldError]) -> Problem:
    """A 400 problem listing every refused field (field, value, reason)."""
    detail = "; ".join(f"{e.field} : {e.reason}" for e in errors)
    return Problem(400, detail, errors=[e.as_dict() for e in errors])


def structure_changes(changes: dict[str, Any]) -> dict[str, Any]:
    """The clean values of a PATCH body (shared field rules), or a 400 listing every error."""
    fields: dict[str, Any] = {}
    errors: list[FieldError] = []
    for key, value in changes.items():
        if key == "geometry":
            coords = value.get("coordinates") if isinstance(value, dict) else None
            if not (
                isinstance(value, dict)
                and value.get("type") == "Point"
                and isinstance(coords, list)
                and len(coords) == 2
            ):
                errors.append(
                    FieldError(
                        "geometry",
                        json.dumps(value)[:80],
                        "un Point GeoJSON (longitude, latitude) attendu",
                    )
                )
                continue
            fields["location"] = tuple(coords)
        elif key in EDITABLE_FIELDS:
            fields[key] = value
        else:
            errors.append(FieldError(key, None, f"champ non modifiable : {key}"))
    clean, field_errors = validate_structure_fields(fields)
    errors += [
        FieldError("geometry", e.value, e.reason) if e.field == "location" else e
        for e in field_errors
    ]
    # Only public statuses by hand: a pending or hidden structure is not served, so the edit
    # could neither be returned nor undone through this API (sources set those statuses).
    if "status" in clean and clean["status"] not in PUBLIC_STATUSES:
        errors.append(FieldError("status", clean["status"], "statut modifiable : active ou closed"))
    if errors:
        raise field_problem(errors)
    return clean


def _run_job(engine: Engine, job_id: int, path: Path, opts: dict[str, Any]) -> None:
    """Run an import job in the background and store its report; its folder always goes."""
    try:
        _run_job_in(engine, job_id, path, opts)
    finally:
        shutil.rmtree(opts["tmpdir"], ignore_errors=True)


def _run_job_in(engine: Engine, job_id: int, path: Path, opts: dict[str, Any]) -> None:
    status, report, message = "failed", None, None
    try:
        with engine.begin() as conn:
            import_jobs.mark_running(conn, job_id)
        mapping = Mapping.from_file(opts["mapping"]) if opts.get("mapping") else None
        rep = run_import(
            engine,
            path,
            source=opts["source"],
            mapping=mapping,
            dry_run=opts["dry_run"],
            skip_invalid=opts["skip_invalid"],
            limits=opts.get("limits"),
            progress=JobProgress(engine, job_id),
            missing=opts.get("missing", "flag"),
        )
        status, report = rep.status, rep.as_dict()
    except ImportFileError as exc:
        status, message = "rejected", str(exc)
    except CartecoError as exc:  # e.g. another import of the source holds it: said plainly
        status, message = "failed", str(exc)
    except Exception as exc:  # noqa: BLE001 - the job records any failure for its caller
        # The client reads this message: no exception text (it may quote SQL), the log has it.
        log.exception("import job %s failed", job_id)
        status = "failed"
        message = f"échec de l'import ({type(exc).__name__}) : voir le journal du serveur"
    if status not in ("succeeded", "rejected", "failed", "dry_run"):
        status = "failed"
    with engine.begin() as conn:
        import_jobs.finish_job(conn, job_id, status, report, message)


def _queue_job(engine: Engine, token: Token, name: str, opts: dict[str, Any]) -> int:
    """Record a queued import job (and its audit line); its id."""
    shown = {k: opts[k] for k in ("source", "dry_run", "skip_invalid", "missing")}
    with engine.begin() as conn:
        job_id = import_jobs.queue_job(conn, name, opts["source"], token.id)
        audit(conn, token, "import", f"imports/{job_id}", {"file": name, **shown})
    return int(job_id)


def writes_router() -> APIRouter:
    """`POST /imports`, `GET /imports/{id}`, `PATCH`/`DELETE /structures/{id}`."""
    # AuthFirstRoute: the token is checked on the headers before any body is read.
    router = APIRouter(tags=["écriture"], route_class=AuthFirstRoute)

    @router.post(
        "/imports",
        status_code=202,
        summary="Importer un fichier (asynchrone ; portée « import »)",
        openapi_extra=IMPORT_BODY,
    )
    async def post_import(
        request: Request,
        token: Token = Depends(require("import")),
        engine: Engine = Depends(get_engine),
        st: Settings = Depends(get_settings),
    ) -> Response:
        # The body is read only now, the token checked; BodyLimitMiddleware caps it
        # (max_import_bytes) as it streams in.
        form = await request.form(max_files=2, max_fields=8)
        try:
            file, mapping, source = form.get("file"), form.get("mapping"), form.get("source")
            if not isinstance(file, UploadFile):
                raise Problem(400, "file : un fichier est attendu (multipart/form-data)")
            if isinstance(mapping, str) and not mapping:
                mapping = None
            if mapping is not None and not isinstance(mapping, UploadFile):
                raise Problem(400, "mapping : un fichier est attendu")
            if source is not None and not isinstance(source, str):
                raise Problem(400, "source : un texte est attendu")
            missing = form.get("missing") or "flag"
            if missing not in MISSING_ACTIONS:
                raise Problem(400, f"missing : {', '.join(MISSING_ACTIONS)} attendu")
            opts: dict[str, Any] = {
                "skip_invalid": _form_bool(form, "skip_invalid"),
                "dry_run": _form_bool(form, "dry_run"),
                "missing": missing,
                "limits": ReadLimits.from_settings(st),
            }
            job_id = await run_in_threadpool(_enqueue, engine, token, file, mapping, source, opts)
        finally:
            await form.close()
        href = f"{public_base(request)}/imports/{job_id}"
        return Response(
            json_bytes({"id": job_id, "status": "queued", "href": href}),
            status_code=202,
            media_type="application/json",
            headers={"Location": href},
        )

    def _enqueue(
        engine: Engine,
        token: Token,
        file: UploadFile,
        mapping: UploadFile | None,
        source: str | None,
        opts: dict[str, Any],
    ) -> int:
        """Store the upload in a folder of its own, record the job and start it; its id."""
        try:
            name = safe_file_name(file.filename)
        except ImportFileError as exc:
            raise Problem(400, f"file : {exc.reason}") from exc
        no_nul("source", source or "")
        source_name = (source or Path(name).stem).strip()
        if not source_name or cell_error(source_name) or len(source_name) > 200:
            raise Problem(400, "source : nom de source invalide (texte court sans formule)")
        tmpdir = Path(tempfile.mkdtemp(prefix="carteco-import-"))
        started = False
        try:
            # The file alone in its folder: its name can never meet the mapping's.
            (tmpdir / "file").mkdir()
            path = tmpdir / "file" / name
            with path.open("wb") as f:
                shutil.copyfileobj(file.file, f)
            opts = {**opts, "source": source_name, "tmpdir": tmpdir}
            if mapping is not None:
                mpath = tmpdir / "mapping.toml"
                with mpath.open("wb") as f:
                    shutil.copyfileobj(mapping.file, f)
                opts["mapping"] = mpath
            job_id = _queue_job(engine, token, name, opts)
            threading.Thread(
                target=_run_job, args=(engine, int(job_id), path, opts), daemon=True
            ).start()
            started = True
        finally:
            if not started:  # refused or failed before the job owned the folder
                shutil.rmtree(tmpdir, ignore_errors=True)
        return job_id

    @router.get("/imports/{job_id}", summary="État et rapport d'un import (portée « import »)")
    def get_import(
        job_id: int,
        token: Token = Depends(require("import")),
        engine: Engine = Depends(get_engine),
    ) -> Response:
        with engine.connect() as conn:
            row = import_jobs.get_job(conn, job_id)
        if row is None:
            raise Problem(404, f"import inconnu : {job_id}")
        body = dict(row)
        body["progress"] = job_progress(body["status"], body["report"])
        if body["status"] == "running":
            body["report"] = None  # only the progress so far
        return Response(json_bytes(body), media_type="application/json")

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
        expected = expected_version(request)
        if "\\u0000" in json.dumps(changes):
            raise Problem(400, "caractère NUL interdit")
        if not changes:
            raise Problem(400, "aucune modification demandée")
        clean = structure_changes(changes)
        with engine.begin() as conn:
            set_change_context(conn, f"api:{token.name}")  # the version's author (history)
            try:
                apply_changes(
                    conn, structure_id, clean, by=f"api:{token.name}",
                    expected_version=expected, reason="modification via l'API",
                )  # fmt: skip
            except EditError as exc:
                if exc.kind == "not_found":
                    raise Problem(404, f"structure inconnue : {structure_id}") from exc
                if exc.current_version is not None:
                    raise stale(exc.current_version) from exc
                raise
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
        expected = expected_version(request)
        with engine.begin() as conn:
            set_change_context(conn, f"api:{token.name}")  # the version's author (history)
            check_version(conn, structure_id, expected)
            registry.close_structure(conn, structure_id)
            audit(conn, token, "close", f"structures/{structure_id}", {})
        return _current(engine, request, st, str(structure_id))

    return router
