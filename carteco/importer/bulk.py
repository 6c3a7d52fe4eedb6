"""The bulk import path: large CSV files streamed, COPYed to a staging table, upserted set-based.

Same rules, same messages and the same registry as the row path (`pipeline.py`), in constant
memory whatever the file's size:

1. one pass over the bytes: checksum, encoding (UTF-8, else Windows-1252), line count;
2. rows read one at a time (csv module), validated by the same `RowValidator`, written in
   batches with COPY into a temporary staging table (canonical JSON of each record: the text
   its content hash is computed on);
3. in one transaction: rows sharing a source id merged (the row path's `_merge_duplicate`),
   unchanged rows counted set-based, the rows needing a decision (changed source rows, and
   new rows whose SIRET/RNA is already in the registry) streamed back in file order through
   the row path's matching loop (`_next_state`), territory codes computed with one spatial
   join for all new and moved points, then one INSERT and one UPDATE.

No trigger runs row by row on this path: the per-row triggers `structures_tag`,
`structures_touch` and `structures_keys` are skipped in that transaction
(`SET LOCAL carteco.bulk_import = on`, their WHEN condition, migrations 0020 and 0021): the
INSERT and UPDATE carry the codes, `version`, `updated_at`, the state's start and author
(`valid_from`, `changed_by`, `import_run_id`), `name_key` and `geom_l93` those triggers would
have set. The statement-level triggers (the ended states moved to the history, tile grid and
cache) run once per statement over its transition tables, as for every writer; an INSERT
writes no history (migration 0027: a new row is its own current state). A killed import
leaves nothing behind: everything happens in the one transaction.
"""

from __future__ import annotations

import codecs
import csv
import ctypes
import hashlib
import logging
import os
import signal
import stat
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from carteco.db import quote_ident
from carteco.duplicates import review_staged
from carteco.history import set_change_context
from carteco.importer.errors import ImportFileError, RowError
from carteco.importer.mapping import Mapping
from carteco.importer.missing import apply_missing, check_action
from carteco.importer.pipeline import (
    _BY_KEY,
    _COLS,
    _DATA_TYPES,
    DATA_FIELDS,
    ImportReport,
    Progress,
    _jsonable,
    _merge_duplicate,
    _next_state,
    _recordset,
    tracked_run,
)
from carteco.importer.readers import (
    _SNIFF_CHARS,
    ReadLimits,
    _csv_error,
    _too_many_rows,
    check_headers,
    csv_row,
    sniff_delimiter,
)
from carteco.importer.skeleton import import_transaction
from carteco.importer.validate import Record, RowValidator, content_hash, record_json
from carteco.models import CHANGED_BY, IMPORT_RUN_ID
from carteco.sectors import load_taxonomy

log = logging.getLogger(__name__)
BATCH = 5000
# Row errors kept in the report (import_runs stores as many): the count goes on.
MAX_KEPT_ERRORS = 10_000
_CHUNK = 1 << 20


@dataclass(frozen=True)
class FileScan:
    """What one pass over a file's bytes tells: checksum, encoding, lines, emptiness, NULs."""

    checksum: str
    encoding: str
    lines: int
    blank: bool
    has_nul: bool


def bulk_candidate(path: Path, bulk: bool | None, limits: ReadLimits) -> FileScan | None:
    """The scan of `path` when it takes the bulk path (a CSV, large enough or forced), else None."""
    try:
        if not path.is_file():
            return None
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(4096)
    except OSError:
        return None  # the row path reports it
    if path.suffix.lower() in (".xlsx", ".xlsm", ".json", ".geojson"):
        return None
    if head[:4] == b"PK\x03\x04" or head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] in (b"{", b"["):
        return None
    if bulk is None and size < limits.bulk_min_rows * 8:  # no line is shorter than 8 bytes
        return None
    scan = scan_file(path)
    if bulk is None and scan.lines < limits.bulk_min_rows:
        return None
    return scan


def scan_file(path: Path) -> FileScan:
    """Checksum, encoding (as `readers.decode_text` decides it) and line count, in one pass."""
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")()
    utf8, lines, blank, nul, first = True, 0, True, False, b""
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            if not first:
                first = chunk[:3]
            digest.update(chunk)
            lines += chunk.count(b"\n")
            blank = blank and not chunk.strip()
            nul = nul or b"\x00" in chunk
            if utf8:
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError:
                    utf8 = False
    if utf8:
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            utf8 = False
    if first.startswith(b"\xef\xbb\xbf"):
        encoding = "utf-8-sig"  # decode_text: a BOM means UTF-8 (an invalid byte is an error)
    else:
        encoding = "utf-8" if utf8 else "cp1252"
    return FileScan(digest.hexdigest(), encoding, lines + 1, blank, nul)


def run_bulk_import(
    engine: Engine,
    path: Path,
    scan: FileScan,
    source: str | None = None,
    mapping: Mapping | None = None,
    dry_run: bool = False,
    skip_invalid: bool = False,
    progress: Progress | None = None,
    limits: ReadLimits | None = None,
    workers: int = 1,
    missing: str = "flag",
) -> ImportReport:
    """Import one large CSV file as one transaction, like `run_import`, in bounded memory.

    With `workers` > 1, rows are validated in that many forked processes (batches in flight
    bounded, results taken in file order); the command line uses it, not the server.
    `missing`: the source's structures absent from the file, as on the row path.
    """
    check_action(missing)
    source = (source or path.stem).strip() or "import"
    report = ImportReport(file=path.name, source=source, checksum=scan.checksum, dry_run=dry_run)
    with tracked_run(engine, report):
        _run(
            engine,
            path,
            scan,
            report,
            mapping or Mapping(),
            dry_run,
            skip_invalid,
            progress,
            limits or ReadLimits(),
            workers,
            missing,
        )
    return report


def _rows(path: Path, scan: FileScan, limits: ReadLimits) -> tuple[list[str], Iterator[RawRow]]:
    """Headers and a stream of (line number, cells), read exactly as `readers._read_csv` does.

    The cells become a `SourceRow` in the validation worker (`csv_row`): the import's own
    process only splits the file, so that it is not the bottleneck of the workers it feeds.
    """
    if scan.blank:
        raise ImportFileError(path.name, "fichier vide")
    if scan.has_nul:
        raise ImportFileError(path.name, "fichier binaire (octets nuls) : ce n'est pas un CSV")
    errors = "replace" if scan.encoding == "cp1252" else "strict"
    f = path.open(encoding=scan.encoding, errors=errors, newline="")
    try:
        delimiter = sniff_delimiter(f.read(_SNIFF_CHARS))
        f.seek(0)
        reader = csv.reader(f, delimiter=delimiter, strict=False)
        try:
            header = next(reader)
        except StopIteration as exc:
            raise ImportFileError(path.name, "fichier vide") from exc
        except csv.Error as exc:
            raise _csv_error(path, exc, 1) from exc
    except BaseException:
        f.close()
        raise
    if len(header) > limits.max_columns:
        f.close()
        raise ImportFileError(
            path.name,
            f"{len(header)} colonnes : au plus {limits.max_columns} "
            "(réglage CARTECO_IMPORT_MAX_COLUMNS)",
            row=1,
        )
    headers = check_headers(path.name, header)

    def rows() -> Iterator[RawRow]:
        n = 0
        with f:
            try:
                for cells in reader:
                    if not any(c.strip() for c in cells):
                        continue
                    if n >= limits.max_rows:
                        line = reader.line_num
                        raise ImportFileError(path.name, _too_many_rows(limits), row=line)
                    n += 1
                    yield reader.line_num, cells
            except csv.Error as exc:
                raise _csv_error(path, exc, reader.line_num) from exc

    return headers, rows()


def _run(
    engine: Engine,
    path: Path,
    scan: FileScan,
    report: ImportReport,
    mapping: Mapping,
    dry_run: bool,
    skip_invalid: bool,
    progress: Progress | None,
    limits: ReadLimits,
    workers: int = 1,
    missing: str = "flag",
) -> None:
    report.format = "csv"
    headers, rows = _rows(path, scan, limits)
    columns = mapping.resolve(path.name, headers)
    validator = RowValidator(mapping, columns, load_taxonomy())
    expected = max(scan.lines - 1, 1)
    started = time.perf_counter()
    try:
        # One import per source at a time, one transaction, rolled back on a dry run: the
        # registry importer's own skeleton (carteco/importer/skeleton.py).
        with import_transaction(engine, "carteco-import", report.source, report, dry_run) as conn:
            conn.execute(sa.text("SET LOCAL statement_timeout = 0"))
            # Who wrote the versions the statement-level history triggers record (history.py).
            set_change_context(conn, f"import:{report.source}", report.run_id)
            conn.execute(sa.text("SET LOCAL carteco.bulk_import = 'on'"))
            conn.execute(sa.text(_STAGE))
            conn.execute(sa.text("SET LOCAL jit = off"))  # compiling costs more than it saves
            # The tile trigger aggregates a million points into ~a million grid cells: in
            # memory, not spilled to disk in batches. One session, for one import.
            conn.execute(sa.text("SET LOCAL work_mem = '256MB'"))
            raw = conn.connection.driver_connection
            assert raw is not None
            cur = raw.cursor()
            tagger = PointTagger(conn)
            batches = _batches(rows, columns, mapping, path)
            stager = _Stager(tuple(headers), validator, tagger, raw.info.encoding)
            for done in _validated(batches, stager, workers):
                report.rows_read += done.rows
                if done.rejected:
                    report.rejected += done.rejected
                    room = MAX_KEPT_ERRORS - len(report.errors)
                    if room > 0:
                        report.errors.extend(done.errors[:room])
                # After a rejected row without --skip-invalid nothing is written: the rows
                # are still read, for the report to list every error.
                if done.lines and (skip_invalid or not report.rejected):
                    _copy_lines(cur, _COPY_STAGE, [done.lines])
                if progress:
                    progress(report.rows_read, max(expected, report.rows_read))
            if report.rows_read == 0:
                raise ImportFileError(path.name, "aucune ligne de données après l'en-tête", row=2)
            if progress:
                progress(report.rows_read, report.rows_read)
            if report.rejected and not skip_invalid:
                raise _Rejected  # leaves the transaction: rolled back, nothing written
            clock = _Clock()
            clock.t = started
            clock("read, validate, COPY")
            _merge_duplicates(conn, cur, tagger)
            # Looked up by source id after the writes (--missing, the review): indexed, so no
            # plan can turn those lookups into a scan of the staging table per structure.
            conn.execute(sa.text("CREATE INDEX ON bulk_stage (source_id)"))
            conn.execute(sa.text("ANALYZE bulk_stage"))
            clock("duplicates")
            first_load = _upsert(conn, cur, report)
            # The statements that follow read structures: their planner must know the rows
            # this import just wrote (an empty table's statistics would say 1 row, and a
            # nested loop over 100,000 structures × the staging table never ended).
            conn.execute(sa.text("ANALYZE structures"))
            clock("match and write")
            # Per-row triggers are back on: closures and flags bump versions as usual.
            report.missing = apply_missing(
                conn,
                report.source,
                None,
                missing,
                report.run_id,
                report.rejected,
                staged="bulk_stage",  # the file's source ids stay in the database
                first_load=first_load,
            )
            clock("missing")
            # Possible duplicates and field conflicts, as the row path reports them.
            report.review = review_staged(conn, report.source, first_load=first_load)
            clock("review")
    except _Rejected:
        report.status = "rejected"
        report.message = f"{report.rejected} ligne(s) invalide(s) : rien n'a été écrit"


class _Rejected(Exception):
    """Invalid rows without --skip-invalid: the import's transaction is abandoned."""


_NO_NAME = (
    "aucune colonne de nom reconnue (nom, raison sociale, dénomination…) : "
    "indiquez-la avec --mapping"
)


def _batches(
    rows: Iterator[RawRow], columns: dict[str, str], mapping: Mapping, path: Path
) -> Iterator[list[RawRow]]:
    """Rows in batches of BATCH; no name column is an error once a data row is seen."""
    batch: list[RawRow] = []
    for row in rows:
        if not batch and "name" not in columns and "name" not in mapping.constants:
            raise ImportFileError(path.name, _NO_NAME, row=1)
        batch.append(row)
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


@dataclass(frozen=True)
class _Stager:
    """What turns a batch of rows into staging lines: headers, validator, tagger, encoding."""

    headers: tuple[str, ...]
    validator: RowValidator
    tagger: PointTagger
    encoding: str


# The stager of a worker process (set before forking: the workers inherit it).
_STAGER: _Stager | None = None
# A data row as the file gives it: its line number and its cells.
RawRow = tuple[int, list[str]]


@dataclass
class Validated:
    """A validated batch: its rows' staging lines (COPY text, encoded, file order) and errors."""

    rows: int
    lines: bytes
    errors: list[RowError]
    rejected: int


def _validate_batch(rows: list[RawRow]) -> Validated:
    """The batch's staging lines (JSON, hash, keys, territory codes) and its rows' errors.

    Building the rows, validation, tagging and COPY formatting all happen here, in the worker
    processes: the import's own process only splits the file and writes what it gets back.
    """
    stager = _STAGER
    assert stager is not None
    errors: list[RowError] = []
    rejected = 0
    kept: list[tuple[Any, ...]] = []
    lons: list[float | None] = []
    lats: list[float | None] = []
    for number, cells in rows:
        rec, errs = stager.validator.validate(csv_row(number, cells, stager.headers))
        if errs or rec is None:
            rejected += 1
            errors.extend(errs)
            continue
        v = rec.values
        blob = record_json(v)
        kept.append((rec.row, rec.source_id, content_hash(blob), blob, v["siret"], v["rna"]))
        lons.append(v["lon"])
        lats.append(v["lat"])
    lines = [
        _copy_line((*staged, *tags), stager.encoding)
        for staged, tags in zip(kept, stager.tagger.tags(lons, lats), strict=True)
    ]
    return Validated(len(rows), b"".join(lines), errors, rejected)


def _copy_field(value: Any) -> str:
    """One field in COPY's text format: NULL as \\N, backslash and line breaks escaped."""
    if value is None:
        return "\\N"
    text = value if isinstance(value, str) else str(value)
    if "\\" in text or "\n" in text or "\r" in text or "\t" in text:
        text = (
            text.replace("\\", "\\\\")
            .replace("\n", "\\n")
            .replace("\r", "\\r")
            .replace("\t", "\\t")
        )
    return text


def _copy_line(values: tuple[Any, ...], encoding: str) -> bytes:
    """A row as one line of COPY text, in the connection's encoding."""
    return ("\t".join([_copy_field(v) for v in values]) + "\n").encode(encoding)


def _copy_lines(cur: Any, sql: str, lines: list[bytes]) -> None:
    if lines:
        with cur.copy(sql) as cp:
            cp.write(b"".join(lines))


def _worker_start(parent: int) -> None:
    """A validation worker dies with the import and holds none of its connections.

    A forked worker inherits the import's sockets, its PostgreSQL connection among them. Were
    the import killed (kill -9), a surviving worker would keep that connection open in the
    middle of its COPY: the backend never sees the client go, keeps its locks, and - since a
    backend waiting for COPY data absorbs no ProcSignalBarrier - every DROP DATABASE on the
    server waits for it, forever.
    """
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)  # killed when the import's thread ends
    if os.getppid() != parent:  # the import died before the line above took effect
        os._exit(1)
    fds = Path("/proc/self/fd")
    for name in os.listdir(fds) if fds.is_dir() else []:
        fd = int(name)
        try:
            if stat.S_ISSOCK(os.fstat(fd).st_mode):  # the pool's own channels are pipes
                os.close(fd)
        except OSError:
            continue


def _validated(
    batches: Iterator[list[RawRow]], stager: _Stager, workers: int
) -> Iterator[Validated]:
    """Validated batches in file order, in this process or in `workers` forked ones."""
    global _STAGER
    _STAGER = stager
    if workers <= 1:
        for batch in batches:
            yield _validate_batch(batch)
        return
    import multiprocessing
    from collections import deque
    from concurrent.futures import Future, ProcessPoolExecutor

    ctx = multiprocessing.get_context("fork")
    parent = os.getpid()
    with ProcessPoolExecutor(
        workers, mp_context=ctx, initializer=_worker_start, initargs=(parent,)
    ) as pool:
        window: deque[Future[Validated]] = deque()
        for batch in batches:
            window.append(pool.submit(_validate_batch, batch))
            if len(window) >= 2 * workers:  # bounded: memory does not grow with the file
                yield window.popleft().result()
        while window:
            yield window.popleft().result()


def _stage_rows(recs: list[Record], tagger: PointTagger) -> list[tuple[Any, ...]]:
    """COPY rows of validated records: canonical JSON, hash, keys and territory codes."""
    tags = tagger.tags([r.values["lon"] for r in recs], [r.values["lat"] for r in recs])
    out = []
    for rec, t in zip(recs, tags, strict=True):
        blob = record_json(rec.values)
        siret, rna = rec.values["siret"], rec.values["rna"]
        out.append((rec.row, rec.source_id, content_hash(blob), blob, siret, rna, *t))
    return out


def _copy(cur: Any, sql: str, rows: list[tuple[Any, ...]]) -> None:
    """COPY rows of Python values, in the same text format as the staging lines."""
    encoding = cur.connection.info.encoding
    _copy_lines(cur, sql, [_copy_line(r, encoding) for r in rows])


_STAGE = """
CREATE TEMP TABLE bulk_stage (
    row integer NOT NULL, source_id text NOT NULL, content_hash text NOT NULL, v jsonb NOT NULL,
    siret text, rna text, commune_code text, arrondissement_code text, epci_code text,
    ept_code text, departement_code text, region_code text, qpv_code text
) ON COMMIT DROP;
CREATE TEMP TABLE bulk_merged (LIKE bulk_stage) ON COMMIT DROP;
CREATE TEMP TABLE bulk_pick (row integer PRIMARY KEY) ON COMMIT DROP;
CREATE TEMP TABLE bulk_links (source_id text, id bigint, hash text) ON COMMIT DROP;
CREATE TEMP TABLE bulk_upd (
    id bigint PRIMARY KEY, v jsonb NOT NULL, content_hash text NOT NULL,
    lon float8, lat float8, keep_location boolean NOT NULL, location_precision text,
    location_source text, location_score float8, geocode_status text,
    commune_code text, arrondissement_code text, epci_code text, ept_code text,
    departement_code text, region_code text, qpv_code text
) ON COMMIT DROP;
"""
_TAG_LIST = (
    "commune_code, arrondissement_code, epci_code, ept_code, departement_code, region_code, "
    "qpv_code"
)
_STAGE_COLS = f"row, source_id, content_hash, v, siret, rna, {_TAG_LIST}"
# Non-unique indexes of the tables a first import fills (unique ones enforce constraints).
_SECONDARY_INDEXES = """
SELECT i.relname AS name, pg_get_indexdef(i.oid) AS definition
  FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
 WHERE x.indrelid IN ('structures'::regclass, 'structure_sources'::regclass)
   AND NOT x.indisunique
 ORDER BY i.relname
"""
# The source links' foreign key to the structures the same INSERT writes.
_LINK_KEYS = """
SELECT conname AS name, pg_get_constraintdef(oid) AS definition
  FROM pg_constraint
 WHERE contype = 'f' AND conrelid = 'structure_sources'::regclass
   AND confrelid = 'structures'::regclass
 ORDER BY conname
"""


def _drop_for_first_load(conn: Connection) -> list[str]:
    """Into an empty registry: drop what a first load rebuilds cheaper; the SQL to rebuild it.

    The non-unique indexes: building an index once over a million rows is much cheaper than a
    million insertions into it (GIN full-text and trigram indexes above all). The source
    links' foreign key: checked again by one join when it is added back, instead of one
    lookup and one row lock on `structures` per link. DROP locks `structures` until the
    commit: only done when it is empty (a first import), so no reader waits on a registry
    that has anything to show. Transactional: a failed or killed import gets them back.
    """
    if conn.execute(sa.text("SELECT EXISTS (SELECT 1 FROM structures)")).scalar_one():
        return []
    found = conn.execute(sa.text(_SECONDARY_INDEXES)).all()
    keys = conn.execute(sa.text(_LINK_KEYS)).all()
    names = {r.name for r in found} | {k.name for k in keys}
    conn.execute(sa.text("SET LOCAL maintenance_work_mem = '256MB'"))
    for r in found:
        conn.execute(sa.text(f"DROP INDEX {quote_ident(r.name, names)}"))
    for k in keys:
        conn.execute(
            sa.text(f"ALTER TABLE structure_sources DROP CONSTRAINT {quote_ident(k.name, names)}")
        )
    # Indexes first: the key's check joins on them.
    return [r.definition for r in found] + [
        f"ALTER TABLE structure_sources ADD CONSTRAINT {quote_ident(k.name, names)} " + k.definition
        for k in keys
    ]


_COPY_STAGE = f"COPY bulk_stage ({_STAGE_COLS}) FROM STDIN"
_COPY_MERGED = f"COPY bulk_merged ({_STAGE_COLS}) FROM STDIN"


def _values(v: dict[str, Any]) -> dict[str, Any]:
    """A record's values back from its staged JSON, with the Python types validation gives."""
    out = dict(v)
    for k in ("opened_on", "closed_on"):
        if isinstance(out.get(k), str):
            out[k] = date.fromisoformat(out[k])
    return out


def _merge_duplicates(conn: Connection, cur: Any, tagger: PointTagger) -> None:
    """Rows sharing a source id become one record, merged in file order as the row path does."""
    raw = conn.connection.driver_connection
    assert raw is not None
    out: list[Record] = []
    with raw.cursor(name="bulk_dups") as dups:
        dups.itersize = BATCH
        dups.execute(
            """
            SELECT row, source_id, v FROM bulk_stage
             WHERE source_id IN (SELECT source_id FROM bulk_stage
                                  GROUP BY source_id HAVING count(*) > 1)
             ORDER BY source_id, row
            """
        )
        group: dict[str, Record] = {}
        for row, sid, v in dups:
            if sid not in group:
                out.extend(group.values())
                group = {}
            _merge_duplicate(group, Record(row, sid, _values(v)))
            if len(out) >= BATCH:
                _copy(cur, _COPY_MERGED, _stage_rows(out, tagger))
                out = []
        out.extend(group.values())
    _copy(cur, _COPY_MERGED, _stage_rows(out, tagger))
    conn.execute(
        sa.text(
            """
            DELETE FROM bulk_stage WHERE source_id IN (SELECT source_id FROM bulk_merged);
            INSERT INTO bulk_stage SELECT * FROM bulk_merged;
            """
        )
    )


# Rows the row path's loop must decide: changed rows of this source, and new rows whose SIRET
# or RNA already names a structure. The others are unchanged or plain inserts (set-based).
_DECIDE = """
SELECT b.row, b.source_id, b.v, l.structure_id,
       b.commune_code, b.arrondissement_code, b.epci_code, b.ept_code, b.departement_code,
       b.region_code, b.qpv_code
  FROM bulk_stage b
  LEFT JOIN structure_sources l ON l.source = %(source)s AND l.source_id = b.source_id
 WHERE (l.structure_id IS NOT NULL AND l.content_hash <> b.content_hash)
    OR (l.structure_id IS NULL AND (
            (b.siret IS NOT NULL AND EXISTS (SELECT 1 FROM structures s WHERE s.siret = b.siret))
         OR (b.rna IS NOT NULL AND EXISTS (SELECT 1 FROM structures s WHERE s.rna = b.rna))))
 ORDER BY b.row
"""
_UNCHANGED = sa.text(
    """
    SELECT count(*) FROM bulk_stage b
      JOIN structure_sources l ON l.source = :source AND l.source_id = b.source_id
     WHERE l.content_hash = b.content_hash
    """
)
_BY_ID = sa.text(
    """
    SELECT s.id, s.source, s.source_id, s.content_hash, s.location_precision,
           ST_X(s.geom) AS lon, ST_Y(s.geom) AS lat, s.siret, s.siren, s.rna, s.name,
           s.legal_category, s.legal_form, s.ess_family, s.esus, s.sectors, s.description,
           s.address_line, s.postcode, s.commune_name, s.insee_code, s.website, s.status,
           s.opened_on, s.closed_on, s.extra
      FROM structures s WHERE s.id = ANY(:ids)
    """
)


class _Clock:
    """Logs how long each phase took (DEBUG), for benchmarks and slow imports."""

    def __init__(self) -> None:
        self.t = time.perf_counter()

    def __call__(self, phase: str) -> None:
        now = time.perf_counter()
        log.debug("bulk import: %s %.2f s", phase, now - self.t)
        self.t = now


def _upsert(conn: Connection, cur: Any, report: ImportReport) -> bool:
    """Match, tag and write the staged records; the counts go to `report`.

    True when it was a first load: the registry was empty before (see `_drop_for_first_load`).
    """
    clock = _Clock()
    report.unchanged += int(conn.execute(_UNCHANGED, {"source": report.source}).scalar_one())
    clock("unchanged")
    _decide(conn, cur, report)
    clock("decide")
    conn.execute(sa.text(_NEW), {"source": report.source})
    _tag_fallbacks(conn, "bulk_new")
    clock("tag new")
    rebuild = _drop_for_first_load(conn)
    report.created += int(conn.execute(sa.text(_INSERT), {"source": report.source}).rowcount)
    clock("insert")
    for statement in rebuild:  # built once, sorted, instead of one insertion per row
        conn.execute(sa.text(statement))
    if rebuild:
        clock("indexes and keys rebuilt")
    conn.execute(sa.text(_UPD))
    _tag_fallbacks(conn, "bulk_upd2")
    clock("tag updated")
    report.updated += int(conn.execute(sa.text(_UPDATE)).rowcount)
    clock("update")
    conn.execute(sa.text(_LINKS), {"source": report.source})
    clock("links")
    # Any later write in this transaction goes through the per-row triggers again.
    conn.execute(sa.text("SET LOCAL carteco.bulk_import = 'off'"))
    return bool(rebuild)


def _decide(conn: Connection, cur: Any, report: ImportReport) -> None:
    """The row path's matching loop, over the rows that need it, streamed in file order."""
    raw = conn.connection.driver_connection
    assert raw is not None
    claimed: set[int] = set()
    with raw.cursor(name="bulk_decide") as stream:
        stream.itersize = BATCH
        stream.execute(_DECIDE, {"source": report.source})
        while chunk := stream.fetchmany(BATCH):
            linked = [r[3] for r in chunk if r[3] is not None]
            by_id = {r["id"]: dict(r) for r in conn.execute(_BY_ID, {"ids": linked}).mappings()}
            recs = [(Record(r[0], r[1], _values(r[2])), r[3]) for r in chunk]
            tags = {r[0]: tuple(r[4:]) for r in chunk}
            pending = [rec for rec, link in recs if link is None]
            by_siret: dict[str, list[dict[str, Any]]] = {}
            by_rna: dict[str, list[dict[str, Any]]] = {}
            sirets = [r.values["siret"] for r in pending if r.values["siret"]]
            rnas = [r.values["rna"] for r in pending if r.values["rna"]]
            if sirets or rnas:
                for r in conn.execute(_BY_KEY, {"sirets": sirets, "rnas": rnas}).mappings():
                    d = dict(r)
                    if d["siret"]:
                        by_siret.setdefault(d["siret"], []).append(d)
                    if d["rna"]:
                        by_rna.setdefault(d["rna"], []).append(d)
            picks: list[tuple[Any, ...]] = []
            links: list[tuple[Any, ...]] = []
            updates: list[tuple[Any, ...]] = []
            for rec, link in recs:
                existing = by_id.get(link) if link is not None else None
                if link is None:
                    for pool, key in ((by_siret, rec.values["siret"]), (by_rna, rec.values["rna"])):
                        cands = [c for c in pool.get(key or "", []) if c["id"] not in claimed]
                        if key and len(cands) == 1:
                            existing = cands[0]
                            break
                if existing is None:
                    picks.append((rec.row,))
                    continue
                claimed.add(existing["id"])
                links.append((rec.source_id, existing["id"], rec.content_hash))
                new = _next_state(report.source, rec, existing)
                if new is None:
                    report.unchanged += 1
                else:
                    updates.append((*_upd_row(new), *tags[rec.row]))
            _copy(cur, "COPY bulk_pick (row) FROM STDIN", picks)
            _copy(cur, "COPY bulk_links (source_id, id, hash) FROM STDIN", links)
            _copy(cur, _COPY_UPD, updates)


_UPD_LOC = (
    "lon",
    "lat",
    "keep_location",
    "location_precision",
    "location_source",
    "location_score",
    "geocode_status",
)
_COPY_UPD = f"COPY bulk_upd (id, v, content_hash, {', '.join(_UPD_LOC)}, {_TAG_LIST}) FROM STDIN"


def _upd_row(p: dict[str, Any]) -> tuple[Any, ...]:
    return (p["id"], record_json(_jsonable(p)), p["content_hash"], *(p[k] for k in _UPD_LOC))


# Territory codes of a kept point (an update that keeps the registry's point), as
# carteco_tag_structure() sets them (migration 0007): the first commune (by code) containing
# it, its arrondissement and QPV. `{g}` is the point, `{when}` the rows to look up.
_TAG_JOINS = """
  LEFT JOIN LATERAL (
      SELECT c.code, c.epci_code, c.ept_code, c.departement_code, c.region_code
        FROM (SELECT * FROM territories t
               WHERE {when} AND t.level = 'commune' AND ST_Intersects(t.geom, {g}) OFFSET 0) c
       ORDER BY c.code LIMIT 1) tc ON true
  LEFT JOIN LATERAL (
      SELECT a.code FROM (SELECT t.code FROM territories t
               WHERE {when} AND t.level = 'arrondissement' AND ST_Intersects(t.geom, {g})
               OFFSET 0) a
       ORDER BY a.code LIMIT 1) ta ON true
  LEFT JOIN LATERAL (
      SELECT q.code FROM (SELECT t.code FROM territories t
               WHERE {when} AND t.level = 'qpv' AND ST_Intersects(t.geom, {g}) OFFSET 0) q
       ORDER BY q.code LIMIT 1) tq ON true
"""
TAGS = (
    "commune_code",
    "arrondissement_code",
    "epci_code",
    "ept_code",
    "departement_code",
    "region_code",
    "qpv_code",
)
_TAG_FROM_JOINS = {
    "commune_code": "tc.code",
    "arrondissement_code": "ta.code",
    "epci_code": "tc.epci_code",
    "ept_code": "tc.ept_code",
    "departement_code": "tc.departement_code",
    "region_code": "tc.region_code",
    "qpv_code": "tq.code",
}

# New structures: staged rows with no link and no SIRET/RNA match, and the loop's picks; their
# codes were computed while staging (PointTagger).
_NEW = f"""
CREATE TEMP TABLE bulk_new ON COMMIT DROP AS
SELECT b.row, b.source_id, b.content_hash, b.v,
       CASE WHEN b.v->>'lon' IS NULL THEN NULL
            ELSE ST_SetSRID(ST_MakePoint((b.v->>'lon')::float8,
                                         (b.v->>'lat')::float8), 4326) END AS geom,
       {", ".join("b." + t for t in TAGS)}
  FROM bulk_stage b
 WHERE b.row IN (SELECT row FROM bulk_pick)
    OR (NOT EXISTS (SELECT 1 FROM structure_sources l
                     WHERE l.source = :source AND l.source_id = b.source_id)
        AND NOT (b.siret IS NOT NULL
                 AND EXISTS (SELECT 1 FROM structures s WHERE s.siret = b.siret))
        AND NOT (b.rna IS NOT NULL
                 AND EXISTS (SELECT 1 FROM structures s WHERE s.rna = b.rna)))
"""  # noqa: S608 - column lists are module constants
# What carteco_structure_keys() sets (migration 0019), skipped on the bulk path (0021): the
# normalised name and the Lambert-93 point, computed by the same functions in the statement.
_KEYS = (
    "carteco_name_key({name}), "
    "CASE WHEN {geom} IS NULL THEN NULL ELSE ST_Transform({geom}, 2154) END"
)
_INSERT = f"""
WITH ins AS (
    INSERT INTO structures ({_COLS}, geom, location_precision, location_score, location_source,
                            geocode_status, located_at, source, source_id, content_hash,
                            {", ".join(TAGS)}, name_key, geom_l93)
    SELECT {", ".join("r." + f for f in DATA_FIELDS)}, n.geom,
           CASE WHEN n.geom IS NULL THEN NULL ELSE 'provided' END,
           CASE WHEN n.geom IS NULL THEN NULL ELSE 1.0 END,
           CASE WHEN n.geom IS NULL THEN NULL ELSE 'source' END,
           CASE WHEN n.geom IS NULL THEN 'to_geocode' END,
           CASE WHEN n.geom IS NULL THEN NULL ELSE now() END,
           :source, n.source_id, n.content_hash, {", ".join("n." + t for t in TAGS)},
           {_KEYS.format(name="r.name", geom="n.geom")}
      FROM bulk_new n CROSS JOIN LATERAL jsonb_to_record(n.v) AS r({_recordset(_DATA_TYPES)})
     ORDER BY n.row
    RETURNING id, source_id, content_hash)
INSERT INTO structure_sources (source, source_id, structure_id, content_hash)
SELECT :source, source_id, id, content_hash FROM ins
ON CONFLICT (source, source_id) DO NOTHING
"""  # noqa: S608 - column lists are module constants
# Updated structures: their final point (kept, or the source's) and its territory codes
# (computed while staging for the source's point, looked up here for a kept one).
_UPD = f"""
CREATE TEMP TABLE bulk_upd2 ON COMMIT DROP AS
SELECT p.id, p.v, p.content_hash, p.geom, p.location_precision, p.location_score,
       p.location_source, p.geocode_status,
       {
    ", ".join(
        f"CASE WHEN p.keep_location THEN {_TAG_FROM_JOINS[t]} ELSE p.{t} END AS {t}" for t in TAGS
    )
}
  FROM (SELECT u.id, u.v, u.content_hash, u.keep_location,
               CASE WHEN u.keep_location THEN s.geom WHEN u.lon IS NULL THEN NULL
                    ELSE ST_SetSRID(ST_MakePoint(u.lon, u.lat), 4326) END AS geom,
               CASE WHEN u.keep_location THEN s.location_precision
                    ELSE u.location_precision END AS location_precision,
               CASE WHEN u.keep_location THEN s.location_score
                    ELSE u.location_score END AS location_score,
               CASE WHEN u.keep_location THEN s.location_source
                    ELSE u.location_source END AS location_source,
               CASE WHEN u.keep_location THEN s.geocode_status
                    ELSE u.geocode_status END AS geocode_status,
               {", ".join("u." + t for t in TAGS)}
          FROM bulk_upd u JOIN structures s ON s.id = u.id OFFSET 0) p
  {_TAG_JOINS.format(g="p.geom", when="p.keep_location")}
"""  # noqa: S608 - column lists are module constants
_SET = [
    *(f"{f} = r.{f}" for f in DATA_FIELDS),
    "content_hash = u.content_hash",
    "geom = u.geom",
    *(
        f"{c} = u.{c}"
        for c in ("location_precision", "location_score", "location_source", "geocode_status")
    ),
    *(f"{t} = u.{t}" for t in TAGS),
    f"(name_key, geom_l93) = ({_KEYS.format(name='r.name', geom='u.geom')})",
]
# carteco_touch_structure(): a new version, updated_at and the state's start and author
# (migration 0027) only when the row really changes.
_CHANGED = " OR ".join(
    [
        *(f"r.{f} IS DISTINCT FROM s.{f}" for f in DATA_FIELDS),
        "u.content_hash IS DISTINCT FROM s.content_hash",
        "ST_AsEWKB(u.geom) IS DISTINCT FROM ST_AsEWKB(s.geom)",
        *(
            f"u.{c} IS DISTINCT FROM s.{c}"
            for c in ("location_precision", "location_score", "location_source", "geocode_status")
        ),
        *(f"u.{t} IS DISTINCT FROM s.{t}" for t in TAGS),
    ]
)
_UPDATE = f"""
UPDATE structures s SET {", ".join(_SET)},
       -- The comparison evaluated once per row, for the five columns a new state sets.
       (version, updated_at, valid_from, changed_by, import_run_id) = (
           SELECT CASE WHEN c.changed THEN s.version + 1 ELSE s.version END,
                  CASE WHEN c.changed THEN now() ELSE s.updated_at END,
                  CASE WHEN c.changed THEN now() ELSE s.valid_from END,
                  CASE WHEN c.changed THEN {CHANGED_BY} ELSE s.changed_by END,
                  CASE WHEN c.changed THEN {IMPORT_RUN_ID} ELSE s.import_run_id END
             FROM (SELECT {_CHANGED} AS changed) c)
  FROM bulk_upd2 u CROSS JOIN LATERAL jsonb_to_record(u.v) AS r({_recordset(_DATA_TYPES)})
 WHERE s.id = u.id
"""  # noqa: S608 - column lists are module constants
_LINKS = """
INSERT INTO structure_sources (source, source_id, structure_id, content_hash)
SELECT :source, source_id, id, hash FROM bulk_links
ON CONFLICT (source, source_id) DO UPDATE
   SET structure_id = EXCLUDED.structure_id, content_hash = EXCLUDED.content_hash
"""

# Points in no commune polygon (rare): the nearest commune within 2 km, else the département,
# else the région, as carteco_tag_structure() falls back.
_FALLBACKS = (
    """
    UPDATE {t} x SET (commune_code, epci_code, ept_code, departement_code, region_code) = (
        SELECT c.code, c.epci_code, c.ept_code, c.departement_code, c.region_code
          FROM (SELECT t.*, ST_Distance(t.geom::geography, x.geom::geography) AS d
                  FROM territories t
                 WHERE t.level = 'commune' AND t.geom && ST_Expand(x.geom, 0.03)
                   AND ST_DWithin(t.geom::geography, x.geom::geography, 2000) OFFSET 0) c
         ORDER BY c.d, c.code LIMIT 1)
     WHERE x.geom IS NOT NULL AND x.commune_code IS NULL
    """,
    """
    UPDATE {t} x SET (departement_code, region_code) = (
        SELECT d.code, d.region_code
          FROM (SELECT t.code, t.region_code FROM territories t
                 WHERE t.level = 'departement' AND ST_Intersects(t.geom, x.geom) OFFSET 0) d
         ORDER BY d.code LIMIT 1)
     WHERE x.geom IS NOT NULL AND x.commune_code IS NULL
    """,
    """
    UPDATE {t} x SET region_code = (
        SELECT r.code FROM (SELECT t.code FROM territories t
                 WHERE t.level = 'region' AND ST_Intersects(t.geom, x.geom) OFFSET 0) r
         ORDER BY r.code LIMIT 1)
     WHERE x.geom IS NOT NULL AND x.commune_code IS NULL AND x.departement_code IS NULL
    """,
)
_TEMP_TABLES = ("bulk_new", "bulk_upd2")


def _tag_fallbacks(conn: Connection, table: str) -> None:
    if table not in _TEMP_TABLES:  # identifiers from this allow-list only
        raise ValueError(table)
    for sql in _FALLBACKS:
        conn.execute(sa.text(sql.format(t=table)))


class PointTagger:
    """Territory codes of points, vectorised with shapely: what carteco_tag_structure() gives.

    The commune, arrondissement and QPV outlines are read once per import and prepared; each
    batch of points goes into an STRtree queried by the outlines (a prepared polygon tests
    many points). For each point the first outline by code that intersects it, as the
    trigger's ORDER BY code LIMIT 1. A point in no commune gets no codes here: the SQL
    fallbacks (nearest commune within 2 km, département, région) run on those few rows.
    """

    def __init__(self, conn: Connection) -> None:
        import shapely  # heavy: loaded by the bulk path only

        self._shapely = shapely
        self.levels: dict[str, tuple[Any, list[tuple[Any, ...]]]] = {}
        for level in ("commune", "arrondissement", "qpv"):
            rows = conn.execute(
                sa.text(
                    "SELECT code, epci_code, ept_code, departement_code, region_code, "
                    "ST_AsBinary(geom) FROM territories WHERE level = :l ORDER BY code"
                ),
                {"l": level},
            ).all()
            geoms = shapely.from_wkb([bytes(r[5]) for r in rows])
            shapely.prepare(geoms)
            self.levels[level] = (geoms, [tuple(r[:5]) for r in rows])

    def tags(
        self, lons: list[float | None], lats: list[float | None]
    ) -> list[tuple[str | None, ...]]:
        """(commune, arrondissement, epci, ept, département, région, qpv) of each point."""
        import numpy as np  # with shapely

        shapely = self._shapely
        n = len(lons)
        empty: tuple[str | None, ...] = (None,) * len(TAGS)
        out = [empty] * n
        located = [i for i in range(n) if lons[i] is not None]
        if not located:
            return out
        pts = shapely.points(
            np.array([lons[i] for i in located], dtype=float),
            np.array([lats[i] for i in located], dtype=float),
        )
        tree = shapely.STRtree(pts)
        first: dict[str, Any] = {}
        for level, (geoms, _) in self.levels.items():
            none = len(geoms)
            best = np.full(len(located), none)
            if none:
                g_idx, p_idx = tree.query(geoms, predicate="intersects")
                np.minimum.at(best, p_idx, g_idx)  # outlines are sorted by code: the first
            best[best == none] = -1
            first[level] = best
        communes = self.levels["commune"][1]
        arrs = self.levels["arrondissement"][1]
        qpvs = self.levels["qpv"][1]
        for k, i in enumerate(located):
            c, a, q = first["commune"][k], first["arrondissement"][k], first["qpv"][k]
            com = communes[c] if c >= 0 else (None,) * 5
            out[i] = (
                com[0],
                arrs[a][0] if a >= 0 else None,
                com[1],
                com[2],
                com[3],
                com[4],
                qpvs[q][0] if q >= 0 else None,
            )
        return out


__all__ = ["FileScan", "PointTagger", "RowError", "bulk_candidate", "run_bulk_import", "scan_file"]
