"""Progress of an import job, stored where GET /imports/{id} reads it (import_jobs.report)."""

from __future__ import annotations

import json
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

_SAVE = sa.text(
    "UPDATE import_jobs SET report = CAST(:p AS jsonb) WHERE id = :i AND status = 'running'"
)


class JobProgress:
    """A `run_import` progress callback recording rows done/expected at most once a second."""

    def __init__(self, engine: Engine, job_id: int, every_s: float = 1.0) -> None:
        self.engine = engine
        self.job_id = job_id
        self.every_s = every_s
        self.started = time.monotonic()
        self.last = 0.0

    def __call__(self, done: int, total: int | None = None, **_: Any) -> None:
        """Record `done` of `total` rows (throttled; the last report of a run is always kept)."""
        now = time.monotonic()
        if now - self.last < self.every_s and done != total:
            return
        self.last = now
        elapsed = now - self.started
        rate = done / elapsed if elapsed > 0 else None
        eta = (total - done) / rate if rate and total else None
        doc = {
            "progress": {
                "rows_done": done,
                "rows_expected": total,
                "rows_per_s": round(rate, 1) if rate else None,
                "eta_s": round(eta, 1) if eta is not None else None,
            }
        }
        with self.engine.begin() as conn:
            conn.execute(_SAVE, {"p": json.dumps(doc), "i": self.job_id})


def job_progress(status: str, report: dict[str, Any] | None) -> dict[str, Any] | None:
    """The progress field of a job: while it runs, what it recorded; once done, its rows read."""
    if status == "running":
        return (report or {}).get("progress")
    if report and "rows_read" in report:
        n = report["rows_read"]
        return {"rows_done": n, "rows_expected": n, "rows_per_s": None, "eta_s": 0}
    return None
