"""History benchmark: what the structure_versions triggers cost an import, side by side.

    .venv/bin/python bench/history/run.py                   # 20,000 synthetic rows, 3 runs
    .venv/bin/python bench/history/run.py --n 100000 --repeat 5

Data: N SYNTHETIC rows (bench/validate/run.py's generator: Luhn-valid SIRETs, points in
Île-de-France, sector labels). A throwaway database is created on the local PostgreSQL
(CARTECO_BENCH_ADMIN_URL, default postgres@127.0.0.1:5432), migrated, and dropped at the end;
no territory layer is loaded (the tagging trigger finds nothing, the same on both sides).
Each run imports the file into an empty registry (inserts), then a second file with every
name changed (updates), once with the history triggers enabled and once with them disabled
(`ALTER TABLE structures DISABLE TRIGGER structures_history_*`), alternating; the best wall
time of each side is kept (the machine is shared) and the ratio printed. Also timed: one
`as_of` page of items (limit 100) against the same page of the current registry.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.validate.run import write_csv  # noqa: E402
from carteco import db  # noqa: E402
from carteco.collections import get_collection  # noqa: E402
from carteco.features import items_page  # noqa: E402
from carteco.importer import run_import  # noqa: E402
from carteco.sectors import sync_sectors  # noqa: E402

ADMIN = os.environ.get(
    "CARTECO_BENCH_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
# An INSERT writes no history since migration 0027 (a new row is its own current state).
TRIGGERS = ("structures_history_upd", "structures_history_del")


def _history(engine: sa.Engine, on: bool) -> None:
    with engine.begin() as conn:
        for t in TRIGGERS:
            conn.execute(
                sa.text(f"ALTER TABLE structures {'ENABLE' if on else 'DISABLE'} TRIGGER {t}")
            )


def _one(engine: sa.Engine, first: Path, second: Path, on: bool) -> tuple[float, float]:
    with engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE structures, structure_sources, import_runs CASCADE"))
    _history(engine, on)
    t0 = time.perf_counter()
    a = run_import(engine, first, source="bench")
    t1 = time.perf_counter()
    b = run_import(engine, second, source="bench")
    t2 = time.perf_counter()
    assert a.status == b.status == "succeeded", (a.message, b.message)
    _history(engine, True)
    return t1 - t0, t2 - t1


def _trigger_share(engine: sa.Engine, n: int) -> dict[str, tuple[float, float]]:
    """Per statement, PostgreSQL's own timing: (statement ms, history trigger ms).

    EXPLAIN ANALYZE times each trigger apart: the share of the history trigger in a plain
    INSERT of N rows and in an UPDATE of them all, independent of the client and the load.
    The INSERT is committed first (a state begun in the updating transaction itself is not
    kept: its UPDATE would move nothing), the UPDATE rolled back, the rows then deleted.
    """
    out = {}

    def timed(conn: sa.Connection, what: str, sql: str) -> None:
        plan = conn.execute(sa.text("EXPLAIN (ANALYZE, FORMAT JSON) " + sql), {"n": n})
        first = plan.scalar_one()[0]
        hist = sum(t["Time"] for t in first.get("Triggers", []) if "history" in t["Trigger Name"])
        out[what] = (float(first["Execution Time"]), float(hist))

    with engine.begin() as conn:
        timed(
            conn,
            f"SQL insert of {n} rows",
            "INSERT INTO structures (name, source, source_id, content_hash, geom) "
            "SELECT 'x' || i, 'sql', i::text, 'h', "
            "ST_SetSRID(ST_MakePoint(2.3 + i * 1e-5, 48.8), 4326) "
            "FROM generate_series(1, :n) i",
        )
    with engine.connect() as conn:
        trans = conn.begin()
        timed(
            conn,
            f"SQL update of {n} rows",
            "UPDATE structures SET name = name || ' bis' "
            "WHERE source = 'sql' AND CAST(source_id AS int) <= :n",
        )
        trans.rollback()
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM structures WHERE source = 'sql'"))
    return out


def main() -> None:
    """Create the database, run both sides, print the figures, drop the database."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=20_000, help="synthetic rows (default 20,000)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each side (best kept)")
    args = ap.parse_args()
    admin = sa.create_engine(db.normalise_url(ADMIN), isolation_level="AUTOCOMMIT")
    name = f"carteco_bench_history_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = db.normalise_url(ADMIN).rsplit("/", 1)[0] + "/" + name
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS postgis"))
        db.upgrade(url)
        with engine.begin() as conn:
            sync_sectors(conn)
        tmp = Path(os.environ.get("TMPDIR", "/tmp")) / name
        tmp.mkdir()
        first, second = tmp / "a.csv", tmp / "b.csv"
        write_csv(first, args.n)
        second.write_text(
            first.read_text(encoding="utf-8").replace(
                "Structure synthétique", "Structure renommée"
            ),
            encoding="utf-8",
        )
        best = {True: [1e9, 1e9], False: [1e9, 1e9]}
        for _ in range(args.repeat):
            for on in (True, False):
                ins, upd = _one(engine, first, second, on)
                best[on] = [min(best[on][0], ins), min(best[on][1], upd)]
        # The registry now holds the second file with history: time a page now and as of then.
        c = get_collection("structures")
        assert c is not None
        past = c.at(datetime.now(UTC))
        page_times = {}
        for label, coll in (("current", c), ("as_of", past)):
            t = 1e9
            for _ in range(args.repeat):
                with engine.connect() as conn:
                    t0 = time.perf_counter()
                    items_page(conn, coll, "TRUE", {}, limit=100)
                    t = min(t, time.perf_counter() - t0)
            page_times[label] = t
        trig = _trigger_share(engine, args.n)
        print(f"rows: {args.n}, best of {args.repeat}")
        for i, what in enumerate(("insert import", "update import")):
            on, off = best[True][i], best[False][i]
            print(f"{what}: with history {on:.2f} s, without {off:.2f} s, ratio {on / off:.2f}")
        for what, (total, hist) in trig.items():
            print(
                f"{what} (EXPLAIN ANALYZE): statement {total:.0f} ms, of which the history "
                f"trigger {hist:.0f} ms ({hist / total:.0%})"
            )
        cur, old = page_times["current"], page_times["as_of"]
        print(f"items page (100): current {cur * 1000:.1f} ms, as_of {old * 1000:.1f} ms")
        for p in (first, second):
            p.unlink()
        tmp.rmdir()
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
