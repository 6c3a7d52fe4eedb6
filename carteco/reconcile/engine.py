"""Reconcile the registry with SIRENE and the RNA: closures applied, moves proposed, families set.

The official file is streamed: its rows are read with `csv`, and only those whose identifier is
in the registry (a set loaded first: the registry is small, the SIRENE stock is 40 M rows) are
kept, by chunks, and compared with the structures they name:

- closed there (SIRENE état F / C, RNA dissolution) → the structure is closed, with the date of
  the closing period (dateDebut) or of the dissolution;
- another address there → a proposal (origin "reconcile", status "pending") carrying the new
  address and its re-geocoded point, for a moderator: never applied here;
- legal category and ESS flag (StockUniteLegale) → legal category and family
  (`derive_family`, the importer's rule); an RNA association of unknown family → association;
- creation date → `opened_on` when the registry has none.

Everything is one transaction (a dry run rolls it back); a row that cannot be read is
reported (file, row, column, reason) and skipped — or, with `strict`, nothing is written.
Each run is recorded in `reconcile_runs`.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from carteco import proposals
from carteco.geocoding.backends import Backend, Query
from carteco.geocoding.engine import GeocodeResult
from carteco.geocoding.normalize import commune_key, parse
from carteco.geocoding.reference import refresh_communes
from carteco.geocoding.registry import query_text
from carteco.history import set_change_context
from carteco.importer.errors import RowError
from carteco.reconcile.formats import (
    CATEGORY,
    COMMUNE_CODE,
    ETABLISSEMENT,
    ISO_DATE,
    POSTCODE,
    REPETITION,
    STREET_TYPES,
    UNITE_LEGALE,
    WALDEC,
    FileFormat,
    OpenedFile,
    open_official,
)
from carteco.structure_fields import derive_family

Progress = Callable[[int, int | None], None]
CHUNK_ROWS = 5000
MAX_ERRORS_KEPT = 1000
MAX_CHANGES_KEPT = 500
# A re-geocoded point this close to the current one is the same place written differently.
SAME_PLACE_METRES = 50.0
# RNA writes "no date" as the year 1.
_NO_DATE = "0001-01-01"
COUNTERS = (
    "closed",
    "closed_date_set",
    "already_closed",
    "moved",
    "address_added",
    "already_proposed",
    "same_place",
    "geocode_failed",
    "family_changed",
    "category_changed",
    "opened_on_set",
    "active_there_closed_here",
    "hidden_skipped",
    "unchanged",
)


@dataclass
class Address:
    """An address as the official file gives it."""

    line: str
    postcode: str | None
    commune: str | None
    insee: str | None
    complement: str | None = None


@dataclass
class Official:
    """One row of an official file, read and checked: what the register says of a unit."""

    row: int
    key: str
    closed: bool
    closed_on: date | None = None
    opened_on: date | None = None
    address: Address | None = None
    legal_category: str | None = None
    ess_flag: bool | None = None
    family_hint: str | None = None
    # StockUniteLegale: the head office's NIC; the unit's creation date is only the head
    # office's opening date (another establishment may have opened later).
    head_nic: str | None = None
    raw: dict[str, str] = field(default_factory=dict)


@dataclass
class ReconcileReport:
    """What a reconciliation run did (or would do, in a dry run)."""

    file: str
    kind: str = ""
    dry_run: bool = False
    status: str = "running"
    run_id: int | None = None
    file_bytes: int | None = None
    encoding: str = ""
    rows_read: int = 0
    matched_rows: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    errors: list[RowError] = field(default_factory=list)
    errors_total: int = 0
    changes: list[dict[str, Any]] = field(default_factory=list)
    message: str | None = None

    def error(self, row: int, column: str | None, value: str | None, reason: str) -> None:
        """Record a bad row (only the first MAX_ERRORS_KEPT are kept, all are counted)."""
        self.errors_total += 1
        if len(self.errors) < MAX_ERRORS_KEPT:
            self.errors.append(RowError(row, column, value, reason))

    def change(self, structure_id: int, action: str, row: int, **detail: Any) -> None:
        """Record one change made or proposed (the first MAX_CHANGES_KEPT are kept)."""
        if len(self.changes) < MAX_CHANGES_KEPT:
            self.changes.append({"structure_id": structure_id, "action": action, "row": row,
                                 **detail})  # fmt: skip

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "run_id": self.run_id,
            "file": self.file,
            "kind": self.kind,
            "status": self.status,
            "dry_run": self.dry_run,
            "encoding": self.encoding,
            "rows_read": self.rows_read,
            "matched_rows": self.matched_rows,
            **self.counts,
            "rejected": self.errors_total,
            "errors": [e.as_dict() for e in self.errors],
            "changes": self.changes,
            "message": self.message,
        }


def reconcile_file(
    engine: Engine,
    path: Path,
    kinds: tuple[str, ...],
    backend: Backend | None,
    *,
    dry_run: bool = False,
    strict: bool = False,
    progress: Progress | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> ReconcileReport:
    """Reconcile the registry with one official file (`kinds`: the formats accepted)."""
    opened = open_official(path, kinds)
    report = ReconcileReport(
        file=opened.name,
        kind=opened.format.kind,
        dry_run=dry_run,
        file_bytes=opened.total_bytes,
        encoding=opened.encoding,
    )
    try:
        if backend is not None and backend.name == "local":
            with engine.begin() as conn:
                refresh_communes(conn)
        report.run_id = _start_run(engine, report)
        try:
            _run(engine, opened, report, backend, dry_run, strict, progress, chunk_rows)
        except BaseException as exc:
            report.status = "failed"
            report.message = f"{type(exc).__name__}: {exc}"[:2000]
            raise
        finally:
            _finish_run(engine, report)
    finally:
        opened.close()
    return report


def _run(
    engine: Engine,
    opened: OpenedFile,
    report: ReconcileReport,
    backend: Backend | None,
    dry_run: bool,
    strict: bool,
    progress: Progress | None,
    chunk_rows: int,
) -> None:
    fmt = opened.format
    with engine.connect() as conn:
        keys = _registry_keys(conn, fmt)
    key_i = opened.index[fmt.key]
    width = len(opened.header)
    ctx = _Context(opened, report, backend, fmt)
    with engine.connect() as conn, conn.begin() as trans:
        # Batch work over a file of millions of rows: the interactive statement timeout does
        # not apply (the run is stopped by stopping the command).
        conn.execute(sa.text("SET LOCAL statement_timeout = 0"))
        # Between two chunks the transaction waits on the file (minutes on a 40 M-row stock).
        conn.execute(sa.text("SET LOCAL idle_in_transaction_session_timeout = 0"))
        # Who wrote the versions the closures and moves record (carteco/history.py).
        set_change_context(conn, f"reconcile:{report.kind}")
        buffer: list[tuple[int, list[str]]] = []
        records = opened.records
        n = 0
        while True:
            try:
                rec = next(records)
            except StopIteration:
                break
            except csv.Error as exc:
                n += 1
                report.error(n + 1, None, None, f"ligne CSV illisible : {exc}")
                continue
            n += 1
            if len(rec) != width:
                if not rec or rec == [""]:
                    continue  # blank line
                report.error(n + 1, None, None, f"{len(rec)} colonnes au lieu de {width}")
                continue
            key = rec[key_i].strip().upper()
            if key in keys:
                buffer.append((n + 1, rec))
                if len(buffer) >= chunk_rows:
                    _chunk(conn, ctx, buffer)
                    buffer = []
            if progress is not None and n % 20000 == 0:
                progress(opened.bytes_done, opened.total_bytes)
        if buffer:
            _chunk(conn, ctx, buffer)
        report.rows_read = n
        if ctx.moves:
            _propose(conn, ctx, ctx.moves)
        if progress is not None:
            progress(opened.bytes_done, opened.total_bytes)
        if strict and report.errors_total:
            trans.rollback()
            report.status = "rejected"
            report.message = f"{report.errors_total} ligne(s) invalide(s) : rien n'a été écrit"
        elif dry_run:
            trans.rollback()
            report.status = "dry_run"
        else:
            report.status = "succeeded"


@dataclass
class _Context:
    opened: OpenedFile
    report: ReconcileReport
    backend: Backend | None
    fmt: FileFormat
    # Moves found, proposed once the file is read: one geocoder session for all of them.
    # At most one per structure of the registry, whatever the size of the file.
    moves: list[tuple[dict[str, Any], Official, str]] = field(default_factory=list)


_KEYS = {
    ETABLISSEMENT.kind: "SELECT DISTINCT siret FROM structures WHERE siret IS NOT NULL",
    UNITE_LEGALE.kind: (
        "SELECT DISTINCT coalesce(siren, left(siret, 9)) FROM structures "
        "WHERE siren IS NOT NULL OR siret IS NOT NULL"
    ),
    WALDEC.kind: "SELECT DISTINCT upper(rna) FROM structures WHERE rna IS NOT NULL",
}
_COLUMNS = """
    s.id, s.siret, s.siren, s.rna, s.name, s.status, s.closed_on, s.opened_on, s.address_line,
    s.postcode, s.commune_name, s.insee_code, s.legal_category, s.legal_form, s.ess_family,
    s.version, ST_X(s.geom) AS lon, ST_Y(s.geom) AS lat, s.location_precision
"""
# The column lists are module constants, never input: S608 does not apply.
_STRUCTURES = {
    ETABLISSEMENT.kind: f"SELECT {_COLUMNS}, s.siret AS key FROM structures s "  # noqa: S608
    "WHERE s.siret = ANY(:keys) ORDER BY s.id FOR UPDATE",
    UNITE_LEGALE.kind: f"SELECT {_COLUMNS}, coalesce(s.siren, left(s.siret, 9)) AS key "  # noqa: S608
    "FROM structures s WHERE coalesce(s.siren, left(s.siret, 9)) = ANY(:keys) "
    "ORDER BY s.id FOR UPDATE",
    WALDEC.kind: f"SELECT {_COLUMNS}, upper(s.rna) AS key FROM structures s "  # noqa: S608
    "WHERE upper(s.rna) = ANY(:keys) ORDER BY s.id FOR UPDATE",
}


def _registry_keys(conn: Connection, fmt: FileFormat) -> set[str]:
    """The identifiers of the registry that this file can name (SIRETs, SIRENs or RNA numbers)."""
    return {r[0] for r in conn.execute(sa.text(_KEYS[fmt.kind]))}


def _chunk(conn: Connection, ctx: _Context, buffer: list[tuple[int, list[str]]]) -> None:
    """Compare one chunk of matching rows with their structures and write what follows."""
    report = ctx.report
    report.matched_rows += len(buffer)
    parsed = [o for o in (_parse(ctx, row, rec) for row, rec in buffer) if o is not None]
    if not parsed:
        return
    rows = conn.execute(
        sa.text(_STRUCTURES[ctx.fmt.kind]), {"keys": sorted({o.key for o in parsed})}
    ).mappings()
    by_key: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_key.setdefault(r["key"], []).append(dict(r))
    plan = _Plan()
    for o in parsed:
        for s in by_key.get(o.key, []):
            _decide(ctx, plan, s, o)
    _write(conn, plan)


@dataclass
class _Plan:
    """What one chunk changes: one row of updates per structure (one UPDATE statement)."""

    updates: dict[int, dict[str, Any]] = field(default_factory=dict)

    def update(self, sid: int, **values: Any) -> None:
        """Add values to the structure's pending update."""
        self.updates.setdefault(sid, {"id": sid}).update(values)


def _decide(ctx: _Context, plan: _Plan, s: dict[str, Any], o: Official) -> None:
    """What the official row means for one structure (counted in the report)."""
    report = ctx.report
    counts = report.counts
    did = False
    if o.closed:
        if s["status"] in ("active", "pending"):
            plan.update(s["id"], close=True, closed_on=o.closed_on)
            counts["closed"] += 1
            report.change(s["id"], "fermeture", o.row, closed_on=o.closed_on, name=s["name"])
            did = True
        elif s["status"] == "closed" and s["closed_on"] is None and o.closed_on is not None:
            plan.update(s["id"], close=True, closed_on=o.closed_on)
            counts["closed_date_set"] += 1
            report.change(s["id"], "date de fermeture", o.row, closed_on=o.closed_on)
            did = True
        elif s["status"] == "closed":
            counts["already_closed"] += 1
            did = True
    else:
        if s["status"] == "closed":
            counts["active_there_closed_here"] += 1
            did = True
        if o.address is not None:
            if s["status"] == "hidden":
                counts["hidden_skipped"] += 1
            else:
                reason = _address_change(s, o.address)
                if reason is not None:
                    ctx.moves.append((s, o, reason))
                    did = True
    did = _family(report, plan, s, o) or did
    opens = o.head_nic is None or not s["siret"] or s["siret"][9:] == o.head_nic
    if o.opened_on is not None and s["opened_on"] is None and opens:
        plan.update(s["id"], opened_on=o.opened_on)
        counts["opened_on_set"] += 1
        did = True
    if not did:
        counts["unchanged"] += 1


def _family(report: ReconcileReport, plan: _Plan, s: dict[str, Any], o: Official) -> bool:
    """Legal category and ESS family from SIRENE (or "association" from the RNA)."""
    category = o.legal_category or s["legal_category"]
    family = s["ess_family"]
    if o.legal_category is not None or o.ess_flag is not None:
        derived = derive_family(None, category, s["legal_form"], o.ess_flag)
        if derived != "inconnue":
            family = derived
        elif family == "societe_commerciale_ess" and o.ess_flag is False:
            family = "inconnue"  # the ESS flag was withdrawn
    if o.family_hint and family == "inconnue":
        family = o.family_hint
    if category == s["legal_category"] and family == s["ess_family"]:
        return False
    plan.update(s["id"], family=True, legal_category=category, ess_family=family)
    if category != s["legal_category"]:
        report.counts["category_changed"] += 1
    if family != s["ess_family"]:
        report.counts["family_changed"] += 1
    report.change(s["id"], "famille", o.row, legal_category=category, ess_family=family,
                  before=s["ess_family"])  # fmt: skip
    return True


def _address_change(s: dict[str, Any], a: Address) -> str | None:
    """ "déménagement" when the address differs, "adresse manquante" when the registry has none."""
    checks = []
    if s["insee_code"] and a.insee:
        checks.append(s["insee_code"] == a.insee)
    if s["postcode"] and a.postcode:
        checks.append(s["postcode"] == a.postcode)
    if s["commune_name"] and a.commune:
        checks.append(commune_key(s["commune_name"]) == commune_key(a.commune))
    same_commune = any(checks) if checks else None
    same_street = None
    if s["address_line"] and a.line:
        before, after = parse(s["address_line"]), parse(a.line)
        same_street = (before.number, before.suffix, before.street_key) == (
            after.number,
            after.suffix,
            after.street_key,
        )
    if same_commune is None and same_street is None:
        return "adresse manquante" if (a.line or a.commune) else None
    if same_commune is False or same_street is False:
        return "déménagement"
    return None


def _write(conn: Connection, plan: _Plan) -> None:
    """Apply the closures, families and creation dates of a chunk in one statement.

    One statement, not one per kind of change: each UPDATE of structures runs the tile
    triggers once, whose fixed cost dominates a few thousand rows.
    """
    if plan.updates:
        conn.execute(_UPDATE, {"rows": _json(list(plan.updates.values()))})


def _json(rows: list[dict[str, Any]]) -> str:
    return json.dumps(rows, default=str)


_UPDATE = sa.text(
    """
    UPDATE structures s
       SET status = CASE WHEN r.close AND s.status IN ('active', 'pending') THEN 'closed'
                         ELSE s.status END,
           closed_on = CASE WHEN r.close THEN coalesce(r.closed_on, s.closed_on)
                            ELSE s.closed_on END,
           legal_category = CASE WHEN r.family THEN r.legal_category ELSE s.legal_category END,
           ess_family = CASE WHEN r.family THEN r.ess_family ELSE s.ess_family END,
           opened_on = coalesce(s.opened_on, r.opened_on)
      FROM jsonb_to_recordset(CAST(:rows AS jsonb))
           AS r(id bigint, close boolean, closed_on date, family boolean, legal_category text,
                ess_family text, opened_on date)
     WHERE s.id = r.id
    """
)
_PROPOSED = sa.text(
    """
    SELECT structure_id, changes FROM proposals
     WHERE origin = 'reconcile' AND structure_id = ANY(:ids)
    """
)


def _address_key(address_line: Any, postcode: Any, insee: Any) -> tuple[str, str, str]:
    return (str(address_line or ""), str(postcode or ""), str(insee or ""))


def _propose(
    conn: Connection, ctx: _Context, moves: list[tuple[dict[str, Any], Official, str]]
) -> None:
    """One pending proposal per new address (re-geocoded), unless already proposed once."""
    report = ctx.report
    ids = sorted({s["id"] for s, _, _ in moves})
    known: set[tuple[int, tuple[str, str, str]]] = set()
    for r in conn.execute(_PROPOSED, {"ids": ids}).mappings():
        c = r["changes"] or {}
        known.add(
            (r["structure_id"], _address_key(c.get("address_line"), c.get("postcode"),
                                             c.get("insee_code")))
        )  # fmt: skip
    todo = []
    for s, o, reason in moves:
        a = o.address
        assert a is not None
        k = (s["id"], _address_key(a.line or None, a.postcode, a.insee))
        if k in known:
            report.counts["already_proposed"] += 1
            continue
        known.add(k)
        todo.append((s, o, reason))
    if not todo:
        return
    points: list[GeocodeResult | None] = [None] * len(todo)
    if ctx.backend is not None:
        queries = []
        for _, o, _ in todo:
            a = o.address
            assert a is not None
            queries.append(Query(query_text(a.line or None, a.postcode, a.commune)))
        points = ctx.backend.geocode_batch(queries)
    for (s, o, reason), res in zip(todo, points, strict=True):
        a = o.address
        assert a is not None
        metres = None
        if res is not None and s["lon"] is not None:
            metres = _metres(s["lat"], s["lon"], res.lat, res.lon)
            if metres < SAME_PLACE_METRES and reason == "déménagement":
                report.counts["same_place"] += 1
                continue
        if res is None:
            report.counts["geocode_failed"] += 1
        changes: dict[str, Any] = {
            "address_line": a.line or None,
            "postcode": a.postcode,
            "commune_name": a.commune,
            "insee_code": a.insee,
        }
        if res is not None:
            changes["geometry"] = {"type": "Point", "coordinates": [res.lon, res.lat]}
        previous = {
            "address_line": s["address_line"],
            "postcode": s["postcode"],
            "commune_name": s["commune_name"],
            "insee_code": s["insee_code"],
            "geometry": None
            if s["lon"] is None
            else {"type": "Point", "coordinates": [s["lon"], s["lat"]]},
        }
        detail = {
            "run_id": report.run_id,
            "register": ctx.fmt.label,
            "file": report.file,
            "row": o.row,
            "key": o.key,
            "reason": reason,
            "complement": a.complement,
            "geocode": None
            if res is None
            else {"type": res.type, "score": res.score, "label": res.label,
                  "backend": ctx.backend.name if ctx.backend else None},
            "distance_m": None if metres is None else round(metres, 1),
        }  # fmt: skip
        pid = proposals.record(
            conn,
            kind="update",
            origin="reconcile",
            raw={"file": report.file, "row": o.row, "format": ctx.fmt.kind, "record": o.raw},
            structure_id=s["id"],
            base_version=s["version"],
            changes=changes,
            previous=previous,
            origin_detail=detail,
            status="pending",
        )
        report.counts["moved" if reason == "déménagement" else "address_added"] += 1
        report.change(s["id"], reason, o.row, proposal_id=pid, address=a.line,
                      commune=a.commune, distance_m=detail["distance_m"])  # fmt: skip


def _metres(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres (enough to tell a move from a rewording)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371008.8 * math.asin(math.sqrt(min(1.0, h)))


# --- reading one row ---------------------------------------------------------------------


class _RowCheck:
    """Field readers of one row that report bad values (file, row, column, reason)."""

    def __init__(self, ctx: _Context, row: int, rec: list[str]) -> None:
        self.ctx = ctx
        self.row = row
        self.rec = rec
        self.ok = True

    def get(self, column: str) -> str:
        value = self.rec[self.ctx.opened.index[column]].strip()
        if "\ufffd" in value:
            self.bad(column, value, "caractère illisible : le fichier n'est pas en UTF-8 valide")
        return value

    def bad(self, column: str, value: str, reason: str) -> None:
        self.ok = False
        self.ctx.report.error(self.row, column, value, reason)

    def date(self, column: str, required: bool = False) -> date | None:
        value = self.get(column)
        if value in ("", _NO_DATE):
            if required:
                self.bad(column, value, "date attendue (AAAA-MM-JJ)")
            return None
        if ISO_DATE.fullmatch(value[:10]):
            try:
                return date.fromisoformat(value[:10])
            except ValueError:
                pass
        self.bad(column, value, "date illisible (AAAA-MM-JJ attendu)")
        return None

    def pattern(self, column: str, regex: Any, reason: str) -> str | None:
        value = self.get(column).upper()
        if not value:
            return None
        if not regex.fullmatch(value):
            self.bad(column, value, reason)
            return None
        return str(value)


def _street(num: str, rep: str, kind: str, name: str) -> str:
    """ "12 BIS AVENUE DU GENERAL LECLERC" from SIRENE / RNA address parts."""
    rep_word = REPETITION.get(rep.upper(), rep.upper()) if rep else ""
    kind_word = STREET_TYPES.get(kind.upper(), kind.upper()) if kind else ""
    return " ".join(p for p in (num, rep_word, kind_word, name.upper()) if p)


def _parse(ctx: _Context, row: int, rec: list[str]) -> Official | None:
    """The official row as an `Official`, or None (its errors reported) when unreadable."""
    c = _RowCheck(ctx, row, rec)
    raw = {col: rec[ctx.opened.index[col]] for col in ctx.fmt.needed}
    kind = ctx.fmt.kind
    if kind == ETABLISSEMENT.kind:
        o = _etablissement(c, raw)
    elif kind == UNITE_LEGALE.kind:
        o = _unite_legale(c, raw)
    else:
        o = _waldec(c, raw)
    return o if c.ok else None


def _address(
    c: _RowCheck, num: str, rep: str, kind: str, name: str, pc: str, commune: str, insee: str,
    complement: str,
) -> Address | None:  # fmt: skip
    line = _street(c.get(num), c.get(rep), c.get(kind), c.get(name))
    postcode = c.pattern(pc, POSTCODE, "code postal à 5 chiffres attendu")
    code = c.pattern(insee, COMMUNE_CODE, "code commune INSEE attendu (5 caractères)")
    city = c.get(commune) or None
    if not (line or postcode or code or city):
        return None
    return Address(line, postcode, city, code, c.get(complement) or None)


def _etablissement(c: _RowCheck, raw: dict[str, str]) -> Official:
    key = c.get("siret")
    state = c.get("etatAdministratifEtablissement").upper()
    if state not in ("A", "F"):
        c.bad("etatAdministratifEtablissement", state, "état administratif A ou F attendu")
    closed = state == "F"
    closed_on = c.date("dateDebut", required=closed) if closed else None
    opened_on = c.date("dateCreationEtablissement")
    address = None
    if not c.get("codePaysEtrangerEtablissement"):
        address = _address(
            c, "numeroVoieEtablissement", "indiceRepetitionEtablissement",
            "typeVoieEtablissement", "libelleVoieEtablissement", "codePostalEtablissement",
            "libelleCommuneEtablissement", "codeCommuneEtablissement",
            "complementAdresseEtablissement",
        )  # fmt: skip
    return Official(c.row, key, closed, closed_on, opened_on, address, raw=raw)


def _unite_legale(c: _RowCheck, raw: dict[str, str]) -> Official:
    key = c.get("siren")
    state = c.get("etatAdministratifUniteLegale").upper()
    if state not in ("A", "C"):
        c.bad("etatAdministratifUniteLegale", state, "état administratif A ou C attendu")
    closed = state == "C"
    closed_on = c.date("dateDebut", required=closed) if closed else None
    opened_on = c.date("dateCreationUniteLegale")
    category = c.pattern(
        "categorieJuridiqueUniteLegale", CATEGORY, "catégorie juridique à 4 chiffres attendue"
    )
    flag_text = c.get("economieSocialeSolidaireUniteLegale").upper()
    flag = {"O": True, "N": False, "": None}.get(flag_text)
    if flag_text not in ("O", "N", ""):
        c.bad("economieSocialeSolidaireUniteLegale", flag_text, "indicateur ESS O ou N attendu")
    head = c.get("nicSiegeUniteLegale") or ""
    return Official(c.row, key, closed, closed_on, opened_on, None, category, flag,
                    head_nic=head, raw=raw)  # fmt: skip


def _waldec(c: _RowCheck, raw: dict[str, str]) -> Official:
    key = c.get("id").upper()
    position = c.get("position").upper()
    if position not in ("A", "D", "S"):
        c.bad("position", position, "position A (active), D (dissoute) ou S (supprimée) attendue")
    dissolved_on = c.date("date_disso")
    closed = position == "D" or dissolved_on is not None
    opened_on = c.date("date_creat")
    address = _address(
        c, "adrs_numvoie", "adrs_repetition", "adrs_typevoie", "adrs_libvoie",
        "adrs_codepostal", "adrs_libcommune", "adrs_codeinsee", "adrs_complement",
    )  # fmt: skip
    if position == "S":
        # Deleted from the register (an entry made in error, a duplicate): not a closure.
        address = None
    return Official(c.row, key, closed, dissolved_on, opened_on, address,
                    family_hint="association", raw=raw)  # fmt: skip


# --- the run record ----------------------------------------------------------------------


def _start_run(engine: Engine, report: ReconcileReport) -> int:
    with engine.begin() as conn:
        run_id = conn.execute(
            sa.text(
                "INSERT INTO reconcile_runs (kind, file_name, file_bytes, dry_run) "
                "VALUES (:kind, :file, :bytes, :dry) RETURNING id"
            ),
            {"kind": report.kind, "file": report.file, "bytes": report.file_bytes,
             "dry": report.dry_run},
        ).scalar_one()  # fmt: skip
    return int(run_id)


def _finish_run(engine: Engine, report: ReconcileReport) -> None:
    if report.run_id is None:
        return
    summary = {
        **report.counts,
        "matched_rows": report.matched_rows,
        "rejected": report.errors_total,
        "encoding": report.encoding,
        "pid": os.getpid(),
    }
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                """
                UPDATE reconcile_runs SET status = :status, finished_at = now(),
                       rows_read = :rows, summary = CAST(:summary AS jsonb),
                       errors = CAST(:errors AS jsonb), message = :message
                 WHERE id = :id
                """
            ),
            {
                "id": report.run_id,
                "status": "failed" if report.status == "running" else report.status,
                "rows": report.rows_read,
                "summary": json.dumps(summary),
                "errors": json.dumps([e.as_dict() for e in report.errors]),
                "message": report.message,
            },
        )
