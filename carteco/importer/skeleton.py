"""The one import skeleton shared by the registry importer and the land importers.

Read the file, parse its rows into records and row errors, then write them in one transaction
holding the source's advisory lock: nothing is written when a row is invalid (unless invalid
rows are skipped), a dry run rolls back. The import run itself is tracked by
`carteco.importer.pipeline.tracked_run`; the report is the caller's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

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


@contextmanager
def import_transaction(
    engine: Engine, lock: str, source: str, report: Report, dry_run: bool
) -> Iterator[Connection]:
    """One transaction holding the advisory lock `lock:source` (one import per source at a
    time); rolled back on a dry run. Sets the report's status when the body succeeds."""
    with engine.connect() as conn:
        with conn.begin() as trans:
            conn.execute(
                sa.text("SELECT pg_advisory_xact_lock(hashtext(:lock || :s))"),
                {"lock": f"{lock}:", "s": source},
            )
            yield conn
            if dry_run:
                trans.rollback()
                report.status = "dry_run"
                return
    report.status = "succeeded"
