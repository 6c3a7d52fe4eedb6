"""The one import skeleton shared by the registry importer and the land importers.

Read the file, parse its rows into records and row errors, then write them in one transaction
holding the source's advisory lock: nothing is written when a row is invalid (unless invalid
rows are skipped), a dry run rolls back. The import run itself is tracked by
`carteco.importer.pipeline.tracked_run`; the report is the caller's.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from carteco.errors import CartecoError
from carteco.importer.errors import ImportFileError, RowError


class Report(Protocol):
    """What the skeleton reads and sets on an import report."""

    errors: list[RowError]
    rejected: int
    status: str
    message: str | None


def read_file(path: Path) -> bytes:
    """The bytes of the file, or an ImportFileError naming it."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ImportFileError(str(path), f"lecture impossible : {exc.strerror}") from exc


def file_checksum(data: bytes) -> str:
    """SHA-256 of the file, recorded with its import run."""
    return hashlib.sha256(data).hexdigest()


def refuse_invalid(report: Report, skip_invalid: bool) -> bool:
    """Mark the report rejected when rows failed and are not to be skipped; True then."""
    if report.errors and not skip_invalid:
        report.status = "rejected"
        report.message = f"{report.rejected} ligne(s) invalide(s) : rien n'a été écrit"
        return True
    return False


# How long an import waits for another import of its source to end. An import killed in the
# middle keeps its lock until PostgreSQL notices its client is gone, which it does only when
# the statement then running ends: a rerun right after a crash waits for that, not fails.
SOURCE_LOCK_WAIT_S = 300.0


def _take_source_lock(conn: Connection, lock: str, source: str) -> None:
    """Take the source's transaction lock, polling (each try is instant, so no statement
    timeout cuts the wait); a clear conflict after SOURCE_LOCK_WAIT_S."""
    deadline = time.monotonic() + SOURCE_LOCK_WAIT_S
    take = sa.text("SELECT pg_try_advisory_xact_lock(hashtext(:lock || :s))")
    while not conn.execute(take, {"lock": f"{lock}:", "s": source}).scalar_one():
        if time.monotonic() >= deadline:
            raise CartecoError(
                f"une importation de la source « {source} » est déjà en cours : "
                "réessayez quand elle sera terminée",
                kind="conflict",
            )
        time.sleep(0.25)


@contextmanager
def import_transaction(
    engine: Engine, lock: str, source: str, report: Report, dry_run: bool
) -> Iterator[Connection]:
    """One transaction holding the advisory lock `lock:source` (one import per source at a
    time); rolled back on a dry run. Sets the report's status when the body succeeds."""
    with engine.connect() as conn:
        with conn.begin() as trans:
            _take_source_lock(conn, lock, source)
            yield conn
            if dry_run:
                trans.rollback()
                report.status = "dry_run"
                return
    report.status = "succeeded"
