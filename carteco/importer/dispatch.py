"""`run_import`: the row path (pipeline.py) or, for large CSV files, the bulk path (bulk.py)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import Engine

from carteco.importer import bulk as bulk_path
from carteco.importer import pipeline
from carteco.importer.mapping import Mapping
from carteco.importer.missing import check_action
from carteco.importer.pipeline import ImportReport, Progress
from carteco.importer.readers import ReadLimits


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
    bulk: bool | None = None,
    workers: int = 1,
    missing: str = "flag",
) -> ImportReport:
    """Import one file as one transaction; with errors, write nothing unless `skip_invalid`.

    A CSV file of at least `limits.bulk_min_rows` lines (or any CSV with `bulk=True`) takes the
    bulk path: same rules, messages and result, in bounded memory. `bulk=False` forces the row
    path; files given as bytes (`data`) always take it. `workers` > 1 validates the bulk
    path's rows in that many forked processes (the command line; not from a threaded server).
    `missing`: what becomes of the source's structures absent from the file (flag, close, keep).
    """
    check_action(missing)
    if data is None and bulk is not False:
        scan = bulk_path.bulk_candidate(path, bulk, limits or ReadLimits())
        if scan is not None:
            return bulk_path.run_bulk_import(
                engine,
                path,
                scan,
                source,
                mapping,
                dry_run,
                skip_invalid,
                progress,
                limits,
                workers,
                missing,
            )
    return pipeline.run_import(
        engine, path, source, mapping, dry_run, skip_invalid, data, progress, limits, missing
    )
