"""The import pipeline: read → map → validate → upsert, in one transaction, with a report."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from carteco.db import execute_rows
from carteco.history import set_change_context
from carteco.importer.errors import ImportFileError, RowError
from carteco.importer.mapping import Mapping
from carteco.importer.missing import apply_missing, check_action
from carteco.importer.readers import ReadLimits, read_table
from carteco.importer.validate import RECORD_FIELDS, Record, RowValidator
from carteco.sectors import load_taxonomy

# Fields an import owns; the location columns are handled apart (manual points are kept).
DATA_FIELDS = tuple(f for f in RECORD_FIELDS if f not in ("lon", "lat"))
Progress = Callable[[int, int], None]


@dataclass
class ImportReport:
    """What an import did (or would do, in a dry run)."""

    file: str
    source: str
    checksum: str
    status: str = "running"
    format: str = ""
    rows_read: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    errors: list[RowError] = field(default_factory=list)
    run_id: int | None = None
    dry_run: bool = False
    message: str | None = None
    # Structures of the source absent from the file (carteco.importer.missing).
    missing: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "run_id": self.run_id,
            "file": self.file,
            "source": self.source,
            "status": self.status,
            "format": self.format,
            "dry_run": self.dry_run,
            "rows_read": self.rows_read,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "rejected": self.rejected,
            "errors": [e.as_dict() for e in self.errors],
            "message": self.message,
            "missing": self.missing,
        }


def run_import(
    engine: Engine,
    path: Path,
    source: str | None = None,
    mapping: Mapping | None = None,
    dry_run: bool = False,
    skip_invalid: bool = False,
    data: bytes | None = None,
    progress: Progress | None = None,
    limits: ReadLimits | None = None,
    missing: str = "flag",
) -> ImportReport:
    """Import one file as one transaction; with errors, write nothing unless `skip_invalid`.

    `missing`: what becomes of the source's structures absent from the file (flag, close, keep).
    """
    check_action(missing)
    if data is None:
        if path.is_dir():
            raise ImportFileError(str(path), "c'est un dossier : un fichier est attendu")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ImportFileError(str(path), f"lecture impossible : {exc.strerror}") from exc
    source = (source or path.stem).strip() or "import"
    report = ImportReport(
        file=path.name,
        source=source,
        checksum=hashlib.sha256(data).hexdigest(),
        dry_run=dry_run,
    )
    with tracked_run(engine, report):
        _run(
            engine,
            path,
            data,
            report,
            mapping or Mapping(),
            dry_run,
            skip_invalid,
            progress,
            limits or ReadLimits(),
            missing,
        )
    return report


@contextmanager
def tracked_run(engine: Engine, report: ImportReport) -> Iterator[ImportReport]:
    """Record an import in `import_runs` for its whole life: running, then its final status.

    A session-level advisory lock marks the run alive for as long as this process holds its
    connection: if the process dies (kill -9), PostgreSQL releases it and `reap_dead_runs`
    marks it failed. It is taken in the transaction that creates the run, so no reaper ever
    sees a live run unlocked. The body sets report.status; an exception sets rejected/failed.
    """
    reap_dead_runs(engine)
    with engine.connect() as alive:
        report.run_id = _start_run(alive, report)
        lock = {"k": RUN_LOCK, "id": report.run_id}
        alive.execute(sa.text("SELECT pg_advisory_lock(:k, :id)"), lock)
        alive.commit()
        try:
            yield report
        except ImportFileError as exc:
            report.status = "rejected"
            report.message = str(exc)
            _finish_run(engine, report)
            raise
        except BaseException as exc:
            report.status = "failed"
            report.message = f"{type(exc).__name__}: {exc}"[:2000]
            _finish_run(engine, report)
            raise
        finally:
            alive.execute(sa.text("SELECT pg_advisory_unlock(:k, :id)"), lock)
            alive.commit()
    _finish_run(engine, report)


RUN_LOCK = 0x43415254  # advisory-lock class of import runs ("CART")


def reap_dead_runs(engine: Engine) -> int:
    """Mark `running` imports whose process is gone as failed; return how many."""
    with engine.begin() as conn:
        ids = conn.execute(sa.text("SELECT id FROM import_runs WHERE status = 'running'")).scalars()
        dead = []
        for run_id in list(ids):
            got = conn.execute(
                sa.text("SELECT pg_try_advisory_xact_lock(:k, :id)"), {"k": RUN_LOCK, "id": run_id}
            ).scalar_one()
            if got:
                dead.append(run_id)
        if dead:
            conn.execute(
                sa.text(
                    """
                    UPDATE import_runs SET status = 'failed', finished_at = now(),
                           message = 'interrompu : le processus d''import a disparu'
                     WHERE id = ANY(:ids) AND status = 'running'
                    """
                ),
                {"ids": dead},
            )
    return len(dead)


def _run(
    engine: Engine,
    path: Path,
    data: bytes,
    report: ImportReport,
    mapping: Mapping,
    dry_run: bool,
    skip_invalid: bool,
    progress: Progress | None,
    limits: ReadLimits,
    missing: str = "flag",
) -> None:
    table = read_table(path, data, limits)
    report.format = table.format
    report.rows_read = len(table.rows)
    if not table.rows:
        raise ImportFileError(path.name, "aucune ligne de données après l'en-tête", row=2)
    columns = mapping.resolve(path.name, table.headers)
    if "name" not in columns and "name" not in mapping.constants:
        raise ImportFileError(
            path.name,
            "aucune colonne de nom reconnue (nom, raison sociale, dénomination…) : "
            "indiquez-la avec --mapping",
            row=1,
        )
    validator = RowValidator(mapping, columns, load_taxonomy())
    records: dict[str, Record] = {}
    for i, row in enumerate(table.rows, start=1):
        rec, errs = validator.validate(row)
        if errs:
            report.errors.extend(errs)
            report.rejected += 1
        elif rec is not None:
            _merge_duplicate(records, rec)
        if progress and (i % 200 == 0 or i == len(table.rows)):
            progress(i, len(table.rows))
    if report.errors and not skip_invalid:
        report.status = "rejected"
        report.message = f"{report.rejected} ligne(s) invalide(s) : rien n'a été écrit"
        return
    with engine.connect() as conn:
        with conn.begin() as trans:
            # One import per source at a time: concurrent runs would race on the upsert.
            conn.execute(
                sa.text("SELECT pg_advisory_xact_lock(hashtext('carteco-import:' || :s))"),
                {"s": report.source},
            )
            # Batch work: the statement timeout guards interactive reads; an import is bounded
            # by its file (rows capped) and stopped by killing it, and must not fail halfway
            # because one big batch ran long on a busy machine.
            conn.execute(sa.text("SET LOCAL statement_timeout = 0"))
            # Who wrote the versions this import records (carteco/history.py).
            set_change_context(conn, f"import:{report.source}", report.run_id)
            _upsert(conn, report, list(records.values()))
            report.missing = apply_missing(
                conn, report.source, records, missing, report.run_id, report.rejected
            )
            if dry_run:
                trans.rollback()
                report.status = "dry_run"
                return
    report.status = "succeeded"


def _merge_duplicate(records: dict[str, Record], rec: Record) -> None:
    """Rows sharing a source id are one structure (e.g. a SIAE listed under two measures)."""
    prev = records.get(rec.source_id)
    if prev is None:
        records[rec.source_id] = rec
        return
    merged = dict(prev.values)
    merged["sectors"] = sorted(set(prev.values["sectors"]) | set(rec.values["sectors"]))
    for k, val in rec.values.items():
        if merged.get(k) in (None, "", [], {}) and val not in (None, "", [], {}):
            merged[k] = val
    rows = list(prev.values.get("extra", {}).get("_lignes", [prev.row]))
    merged["extra"] = {**merged.get("extra", {}), "_lignes": [*rows, rec.row]}
    records[rec.source_id] = Record(prev.row, prev.source_id, merged)


_COLUMNS = """
    s.id, s.source, s.source_id, s.content_hash, s.location_precision,
    ST_X(s.geom) AS lon, ST_Y(s.geom) AS lat, s.siret, s.siren, s.rna, s.name, s.legal_category,
    s.legal_form, s.ess_family, s.esus, s.sectors, s.description, s.address_line, s.postcode,
    s.commune_name, s.insee_code, s.website, s.status, s.opened_on, s.closed_on, s.extra
"""
# Column lists below are module constants, never input: S608 does not apply.
_BY_LINK = sa.text(
    f"""
    SELECT l.source_id AS link_id, l.content_hash AS link_hash, {_COLUMNS}
      FROM structure_sources l JOIN structures s ON s.id = l.structure_id
     WHERE l.source = :source AND l.source_id = ANY(:sids)
    """  # noqa: S608
)
_BY_KEY = sa.text(
    f"SELECT {_COLUMNS} FROM structures s WHERE s.siret = ANY(:sirets) OR s.rna = ANY(:rnas)"  # noqa: S608
)


def _upsert(conn: Connection, report: ImportReport, records: list[Record]) -> None:
    sids = [r.source_id for r in records]
    by_link = {
        r["link_id"]: dict(r)
        for r in conn.execute(_BY_LINK, {"source": report.source, "sids": sids}).mappings()
    }
    pending = [r for r in records if r.source_id not in by_link]
    sirets = [r.values["siret"] for r in pending if r.values["siret"]]
    rnas = [r.values["rna"] for r in pending if r.values["rna"]]
    by_siret: dict[str, list[dict[str, Any]]] = {}
    by_rna: dict[str, list[dict[str, Any]]] = {}
    if sirets or rnas:
        for r in conn.execute(_BY_KEY, {"sirets": sirets, "rnas": rnas}).mappings():
            d = dict(r)
            if d["siret"]:
                by_siret.setdefault(d["siret"], []).append(d)
            if d["rna"]:
                by_rna.setdefault(d["rna"], []).append(d)

    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    links: list[dict[str, Any]] = []
    claimed: set[int] = set()
    for rec in records:
        existing = by_link.get(rec.source_id)
        if existing is not None:
            if existing["link_hash"] == rec.content_hash:
                report.unchanged += 1
                continue
        else:
            # Another source's structure with the same SIRET (else RNA), when unambiguous.
            for pool, key in ((by_siret, rec.values["siret"]), (by_rna, rec.values["rna"])):
                cands = [c for c in pool.get(key or "", []) if c["id"] not in claimed]
                if key and len(cands) == 1:
                    existing = cands[0]
                    break
        if existing is None:
            inserts.append(_insert_params(report.source, rec))
            continue
        claimed.add(existing["id"])
        links.append(
            {
                "source": report.source,
                "source_id": rec.source_id,
                "id": existing["id"],
                "hash": rec.content_hash,
            }
        )
        new = _next_state(report.source, rec, existing)
        if new is None:
            report.unchanged += 1
        else:
            updates.append(new)
    if inserts:
        execute_rows(conn, _INSERT, inserts)
        conn.execute(
            sa.text(
                """
                INSERT INTO structure_sources (source, source_id, structure_id, content_hash)
                SELECT source, source_id, id, content_hash FROM structures
                 WHERE source = :source AND source_id = ANY(:sids)
                ON CONFLICT (source, source_id) DO NOTHING
                """
            ),
            {"source": report.source, "sids": [p["source_id"] for p in inserts]},
        )
        report.created += len(inserts)
    if updates:
        execute_rows(conn, _UPDATE, updates)
        report.updated += len(updates)
    if links:
        execute_rows(conn, _LINKS, links)


def _location(rec: Record) -> dict[str, Any]:
    if rec.values["lon"] is not None:
        return {
            "lon": rec.values["lon"],
            "lat": rec.values["lat"],
            "location_precision": "provided",
            "location_score": 1.0,
            "location_source": "source",
            "geocode_status": None,
        }
    return {
        "lon": None,
        "lat": None,
        "location_precision": None,
        "location_score": None,
        "location_source": None,
        "geocode_status": "to_geocode",
    }


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return {k: values[k] for k in DATA_FIELDS}


def _insert_params(source: str, rec: Record) -> dict[str, Any]:
    return {
        **_jsonable(rec.values),
        **_location(rec),
        "source": source,
        "source_id": rec.source_id,
        "content_hash": rec.content_hash,
    }


def _next_state(source: str, rec: Record, existing: dict[str, Any]) -> dict[str, Any] | None:
    """Parameters of the UPDATE that brings `existing` up to date, or None if nothing changes."""
    if existing["source"] == source and existing["source_id"] == rec.source_id:
        values = dict(rec.values)
        content_hash = rec.content_hash
    else:
        # Matched across sources (SIRET/RNA): enrich, never overwrite the owner's fields.
        values = {k: existing[k] for k in DATA_FIELDS}
        values["sectors"] = sorted(set(existing["sectors"] or []) | set(rec.values["sectors"]))
        for k in DATA_FIELDS:
            if values.get(k) in (None, "", [], {}) and rec.values.get(k) not in (None, "", [], {}):
                values[k] = rec.values[k]
        extra = dict(existing["extra"] or {})
        also = dict(extra.get("_autres_sources", {}))
        also[source] = rec.source_id
        extra["_autres_sources"] = also
        values["extra"] = extra
        values["lon"], values["lat"] = rec.values["lon"], rec.values["lat"]
        content_hash = existing["content_hash"]
    loc = _location(Record(rec.row, rec.source_id, values))
    precision = existing["location_precision"]
    keep_point = precision == "manual" or (loc["lon"] is None and existing["lon"] is not None)
    if keep_point or (precision == "provided" and existing["source"] != source):
        loc = {
            "lon": existing["lon"],
            "lat": existing["lat"],
            "location_precision": precision,
            "location_score": None,
            "location_source": None,
            "geocode_status": None,
            "keep": True,
        }
    same = all(_eq(values[k], existing[k]) for k in DATA_FIELDS if k != "extra") and _eq(
        values["extra"], existing["extra"]
    )
    same = same and (
        loc.get("keep") or (_eq(loc["lon"], existing["lon"]) and _eq(loc["lat"], existing["lat"]))
    )
    if same and content_hash == existing["content_hash"]:
        return None
    if existing["source"] != source and same:
        return None
    params = {**_jsonable(values), "id": existing["id"], "content_hash": content_hash}
    params.update({k: loc[k] for k in ("lon", "lat")})
    params["keep_location"] = bool(loc.get("keep"))
    params["location_precision"] = loc["location_precision"]
    params["location_source"] = loc["location_source"]
    params["location_score"] = loc["location_score"]
    params["geocode_status"] = loc["geocode_status"]
    return params


def _eq(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return a is b
        return abs(float(a) - float(b)) < 1e-7
    if isinstance(a, (list, dict)) or isinstance(b, (list, dict)):
        return json.dumps(a, sort_keys=True, default=str) == json.dumps(
            b, sort_keys=True, default=str
        )
    return a == b


# Rows travel to PostgreSQL as one JSON array per chunk (jsonb_to_recordset): one round trip
# and one plan per 5,000 rows, where executemany costs a round trip per row.
_TYPES = {
    "esus": "boolean",
    "sectors": "text[]",
    "opened_on": "date",
    "closed_on": "date",
    "extra": "jsonb",
}
_LOCATION = {
    "lon": "float8",
    "lat": "float8",
    "location_precision": "text",
    "location_score": "float8",
    "location_source": "text",
    "geocode_status": "text",
}


def _recordset(columns: dict[str, str]) -> str:
    return ", ".join(f"{c} {t}" for c, t in columns.items())


_DATA_TYPES = {f: _TYPES.get(f, "text") for f in DATA_FIELDS}
_COLS = ", ".join(DATA_FIELDS)
_INSERT_TYPES = {
    **_DATA_TYPES,
    **_LOCATION,
    "source": "text",
    "source_id": "text",
    "content_hash": "text",
}
_INSERT = sa.text(
    f"""
    INSERT INTO structures ({_COLS}, geom, location_precision, location_score, location_source,
                            geocode_status, located_at, source, source_id, content_hash)
    SELECT {", ".join("r." + f for f in DATA_FIELDS)},
           CASE WHEN r.lon IS NULL THEN NULL
                ELSE ST_SetSRID(ST_MakePoint(r.lon, r.lat), 4326) END,
           r.location_precision, r.location_score, r.location_source, r.geocode_status,
           CASE WHEN r.lon IS NULL THEN NULL ELSE now() END,
           r.source, r.source_id, r.content_hash
      FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r({_recordset(_INSERT_TYPES)})
    """  # noqa: S608
)
_UPDATE_TYPES = {**_INSERT_TYPES, "id": "bigint", "keep_location": "boolean"}
_UPDATE = sa.text(
    f"""
    UPDATE structures s SET {", ".join(f"{f} = r.{f}" for f in DATA_FIELDS)},
        content_hash = r.content_hash,
        geom = CASE WHEN r.keep_location THEN s.geom
                    WHEN r.lon IS NULL THEN NULL
                    ELSE ST_SetSRID(ST_MakePoint(r.lon, r.lat), 4326) END,
        location_precision = CASE WHEN r.keep_location THEN s.location_precision
                                  ELSE r.location_precision END,
        location_score = CASE WHEN r.keep_location THEN s.location_score
                              ELSE r.location_score END,
        location_source = CASE WHEN r.keep_location THEN s.location_source
                               ELSE r.location_source END,
        geocode_status = CASE WHEN r.keep_location THEN s.geocode_status
                              ELSE r.geocode_status END
      FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r({_recordset(_UPDATE_TYPES)})
     WHERE s.id = r.id
    """  # noqa: S608
)
_LINKS = sa.text(
    """
    INSERT INTO structure_sources (source, source_id, structure_id, content_hash)
    SELECT r.source, r.source_id, r.id, r.hash
      FROM jsonb_to_recordset(CAST(:rows AS jsonb))
           AS r(source text, source_id text, id bigint, hash text)
    ON CONFLICT (source, source_id) DO UPDATE
       SET structure_id = EXCLUDED.structure_id, content_hash = EXCLUDED.content_hash
    """
)


def _start_run(conn: Connection, report: ImportReport) -> int:
    sql = sa.text(
        """
        INSERT INTO import_runs (source, file_name, checksum, status, dry_run, pid)
        VALUES (:source, :file, :checksum, 'running', :dry_run, :pid) RETURNING id
        """
    )
    params = {
        "source": report.source,
        "file": report.file,
        "checksum": report.checksum,
        "dry_run": report.dry_run,
        "pid": os.getpid(),
    }
    return int(conn.execute(sql, params).scalar_one())


def _finish_run(engine: Engine, report: ImportReport) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                """
                UPDATE import_runs SET status = :status, finished_at = now(),
                    rows_read = :rows_read, created = :created, updated = :updated,
                    unchanged = :unchanged, rejected = :rejected,
                    errors = CAST(:errors AS jsonb), message = :message
                 WHERE id = :id
                """
            ),
            {
                "id": report.run_id,
                "status": report.status,
                "rows_read": report.rows_read,
                "created": report.created,
                "updated": report.updated,
                "unchanged": report.unchanged,
                "rejected": report.rejected,
                "errors": json.dumps([e.as_dict() for e in report.errors[:10000]]),
                "message": report.message,
            },
        )
