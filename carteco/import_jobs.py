"""The `import_jobs` table: imports queued through the API, their status and report."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection


def queue_job(conn: Connection, file_name: str, source: str, token_id: int | None) -> int:
    """Record a queued import job; its id."""
    job_id = conn.execute(
        sa.text(
            "INSERT INTO import_jobs (file_name, source, token_id) VALUES (:f, :s, :t) RETURNING id"
        ),
        {"f": file_name, "s": source, "t": token_id},
    ).scalar_one()
    return int(job_id)


def mark_running(conn: Connection, job_id: int) -> None:
    """A job has started."""
    conn.execute(sa.text("UPDATE import_jobs SET status = 'running' WHERE id = :i"), {"i": job_id})


def finish_job(
    conn: Connection,
    job_id: int,
    status: str,
    report: dict[str, Any] | None,
    message: str | None,
) -> None:
    """Store a job's final status, report (JSON) and message, and its run id."""
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


def get_job(conn: Connection, job_id: int) -> dict[str, Any] | None:
    """One job as a dict (status, file, source, run, report, message, dates), or None."""
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
    return None if row is None else dict(row)
