"""Bulk import benchmark: `carteco import` of a large CSV against the floor, in one run.

    .venv/bin/python bench/import/run.py                 # 1,000,000 rows
    .venv/bin/python bench/import/run.py --rows 20000    # while developing
    .venv/bin/python bench/import/run.py --phases        # and where each import's time goes
    .venv/bin/python bench/import/run.py --repeat 3      # three runs and the median ratios

The file: `nom;siret;adresse;code postal;commune;latitude;longitude;secteur`, Luhn-valid
SIRETs (SIREN valid too), points drawn inside the Île-de-France commune polygons, one row in
200 without coordinates, sector labels of the taxonomy (generated in chunks, not timed).

A fresh database is created (migrated, taxonomy and shipped reference layers loaded, as
`carteco demo` / `carteco geodata load` do), then, each in its own process:

1. the floor: `ogr2ogr -f PostgreSQL` of the same file with PG_USE_COPY (no validation),
   then a set-based commune join in PostGIS (CREATE TABLE … AS … JOIN territories ON
   ST_Intersects) — load + tagging, nothing else;
2. `carteco import FILE --source bench --bulk` (the path the default threshold takes at 1 M
   rows; forced so that a smaller --rows measures it too);
3. the same command again: a re-import of the same file (must be 0 created, 0 updated).

Times are wall-clock; peak RSS of each child process from `/usr/bin/time -v` (the
PostgreSQL backend's memory is not counted, on either side). Prints the ratio to the floor.
The machine is shared: quote `uptime` with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import shapely
import sqlalchemy as sa

from carteco import db
from carteco.sectors import load_taxonomy, sync_sectors

ADMIN_URL = os.environ.get(
    "CARTECO_TEST_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)

ROOT = Path(__file__).resolve().parents[2]
COMMUNES = ROOT / "geodata" / "data" / "communes_idf_cog2026.geojson"
HEADER = "nom;siret;adresse;code postal;commune;latitude;longitude;secteur\n"
_KINDS = ("Association", "SCOP", "SCIC", "Coopérative", "Fondation", "Mutuelle", "Ressourcerie")
_WORDS = ("Les Jardins", "Le Relais", "La Fabrique", "L'Atelier", "Terre", "Solidarité", "Envol")
_STREETS = ("rue de la Paix", "avenue Jean Jaurès", "boulevard Voltaire", "place de la Mairie")


def _luhn(body: str) -> str:
    """`body` followed by the digit that makes its Luhn sum a multiple of 10."""
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return body + str((10 - total % 10) % 10)


def luhn_siret(n: int) -> str:
    """A SIRET whose SIREN and whole number pass the Luhn check (La Poste SIRETs aside)."""
    return _luhn(_luhn(f"{n // 10:08d}") + f"{n % 10:04d}")


def _communes() -> tuple[list[shapely.Geometry], list[tuple[str, str]]]:
    doc = json.loads(COMMUNES.read_text())
    geoms, info = [], []
    for f in doc["features"]:
        p = f["properties"]
        geoms.append(shapely.geometry.shape(f["geometry"]))
        info.append((p["nom"], (p.get("codes_postaux") or "75001").split("|")[0]))
    return geoms, info


def generate(path: Path, rows: int, seed: int = 17) -> Path:
    """Write `rows` data rows to `path` (CSV, ';'); return the path."""
    rnd = random.Random(seed)
    rng = np.random.default_rng(seed)
    geoms, info = _communes()
    labels = [n.label for n in load_taxonomy().nodes]
    tree = shapely.STRtree(geoms)
    minx, miny, maxx, maxy = shapely.total_bounds(np.array(geoms))
    with path.open("w", encoding="utf-8", newline="") as f:
        f.write(HEADER)
        done = 0
        while done < rows:
            n = min(50_000, rows - done)
            xs = rng.uniform(minx, maxx, n * 3)
            ys = rng.uniform(miny, maxy, n * 3)
            pts = shapely.points(xs, ys)
            pi, gi = tree.query(pts, predicate="within")
            _, first = np.unique(pi, return_index=True)
            pi, gi = pi[first][:n], gi[first][:n]
            lines = []
            for k, (p, g) in enumerate(zip(pi, gi, strict=True)):
                i = done + k
                name, cp = info[g]
                nom = f"{rnd.choice(_KINDS)} {rnd.choice(_WORDS)} {i}"
                addr = f"{rnd.randint(1, 200)} {rnd.choice(_STREETS)}"
                if i % 200 == 199:
                    lat = lon = ""
                else:
                    lat, lon = f"{ys[p]:.6f}", f"{xs[p]:.6f}"
                sect = rnd.choice(labels)
                sid = luhn_siret(10_000_000 + i)
                lines.append(f"{nom};{sid};{addr};{cp};{name};{lat};{lon};{sect}\n")
            f.writelines(lines)
            done += len(lines)
    return path


def _fresh_database() -> str:
    """A new database with PostGIS, migrated, with the taxonomy and reference layers."""
    from geodata.loader import load_all

    name = f"carteco_bench_import_{os.getpid()}"
    admin = sa.create_engine(db.normalise_url(ADMIN_URL), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = db.normalise_url(ADMIN_URL).rsplit("/", 1)[0] + "/" + name
    eng = sa.create_engine(url)
    with eng.begin() as conn:
        conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS postgis"))
    db.upgrade(url)
    with eng.begin() as conn:
        sync_sectors(conn)
        load_all(conn)
        conn.execute(sa.text("ANALYZE"))
    eng.dispose()
    return url


def _drop_database(url: str) -> None:
    admin = sa.create_engine(db.normalise_url(ADMIN_URL), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)'))
    admin.dispose()


def _timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in MB, stdout+stderr) of a command run under /usr/bin/time -v."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        ["/usr/bin/time", "-v", *cmd], capture_output=True, text=True, env=env, cwd=ROOT
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    rss = int(m.group(1)) / 1024 if m else float("nan")
    return wall, rss, proc.stdout + proc.stderr


def _psql_dsn(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


FLOOR_JOIN = """
CREATE TABLE floor_tagged AS
SELECT DISTINCT ON (f.ogc_fid) f.*, t.code AS commune_code
  FROM floor_import f
  LEFT JOIN territories t ON t.level = 'commune' AND ST_Intersects(t.geom, f.geom)
 ORDER BY f.ogc_fid, t.code
"""


def floor(path: Path, url: str) -> tuple[float, float, float]:
    """(load s, join s, ogr2ogr peak RSS MB): ogr2ogr with COPY, then one commune join."""
    dsn = _psql_dsn(url)
    env = {**os.environ, "PG_USE_COPY": "YES"}
    load, rss, _ = _timed(
        [
            "ogr2ogr", "-f", "PostgreSQL", f"PG:{dsn}", str(path),
            "-nln", "floor_import", "-overwrite", "-a_srs", "EPSG:4326",
            "-oo", "SEPARATOR=SEMICOLON", "-oo", "X_POSSIBLE_NAMES=longitude",
            "-oo", "Y_POSSIBLE_NAMES=latitude", "-oo", "AUTODETECT_TYPE=NO",
            "-lco", "GEOMETRY_NAME=geom", "-lco", "SPATIAL_INDEX=NONE",
            "--config", "PG_USE_COPY", "YES",
        ],
        env,
    )  # fmt: skip
    eng = sa.create_engine(url)
    t0 = time.perf_counter()
    with eng.begin() as conn:
        conn.execute(sa.text("SET LOCAL statement_timeout = 0"))
        conn.execute(sa.text("SET LOCAL jit = off"))  # as the bulk import: JIT only costs here
        conn.execute(sa.text(FLOOR_JOIN))
        join = time.perf_counter() - t0
        tagged = conn.execute(
            sa.text("SELECT count(commune_code), count(*) FROM floor_tagged")
        ).one()
        conn.execute(sa.text("DROP TABLE floor_tagged; DROP TABLE floor_import"))
    eng.dispose()
    print(f"  floor: {tagged[0]} of {tagged[1]} rows tagged with a commune")
    return load, join, rss


# `carteco` itself, with the bulk path's phase log (DEBUG) on stderr: where the time goes.
_WITH_PHASES = (
    "import logging, runpy; "
    "logging.basicConfig(level=logging.WARNING, format='    %(message)s'); "
    "logging.getLogger('carteco.importer.bulk').setLevel(logging.DEBUG); "
    "runpy.run_module('carteco.cli', run_name='__main__', alter_sys=True)"
)


def carteco_import(path: Path, url: str, phases: bool = False) -> tuple[float, float, str]:
    """(wall s, peak RSS MB, output) of `carteco import FILE --source bench --bulk`."""
    env = {**os.environ, "CARTECO_DATABASE_URL": url}
    # --bulk: what the default threshold chooses at 1 M rows, also for a smaller --rows.
    args = ["import", str(path), "--source", "bench", "--bulk"]
    if phases:
        return _timed([sys.executable, "-c", _WITH_PHASES, *args], env)
    return _timed([sys.executable, "-m", "carteco.cli", *args], env)


def _phases(out: str) -> str:
    """The phase lines of the bulk path's log, as printed with --phases."""
    return "\n".join(line for line in out.splitlines() if "bulk import:" in line)


TAG_SQL = """
SELECT count(c.code) FROM bench_points p
  LEFT JOIN LATERAL (
      SELECT c.code FROM (SELECT t.code FROM territories t
             WHERE t.level = 'commune' AND ST_Intersects(t.geom, p.geom) OFFSET 0) c
       ORDER BY c.code LIMIT 1) c ON true
"""


def compare_tagging(path: Path, url: str, n: int) -> None:
    """Commune codes of the file's first n points: one PostGIS join against shapely batches."""
    from carteco.importer.bulk import BATCH, PointTagger

    lons: list[float] = []
    lats: list[float] = []
    with path.open(encoding="utf-8") as f:
        next(f)
        for line in f:
            cells = line.rstrip("\n").split(";")
            if cells[5]:
                lats.append(float(cells[5]))
                lons.append(float(cells[6]))
            if len(lons) >= n:
                break
    eng = sa.create_engine(url)
    with eng.begin() as conn:
        conn.execute(sa.text("SET LOCAL jit = off"))
        conn.execute(sa.text("CREATE TEMP TABLE bench_points (geom geometry(Point, 4326))"))
        raw = conn.connection.driver_connection
        with raw.cursor() as cur, cur.copy("COPY bench_points (geom) FROM STDIN") as cp:
            for x, y in zip(lons, lats, strict=True):
                cp.write_row((f"SRID=4326;POINT({x} {y})",))
        conn.execute(sa.text("ANALYZE bench_points"))
        t0 = time.perf_counter()
        sql_found = conn.execute(sa.text(TAG_SQL)).scalar_one()
        sql_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        tagger = PointTagger(conn)
        load_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        found = 0
        for i in range(0, len(lons), BATCH):
            tags = tagger.tags(lons[i : i + BATCH], lats[i : i + BATCH])  # type: ignore[arg-type]
            found += sum(1 for t in tags if t[0] is not None)
        shp_s = time.perf_counter() - t0
    eng.dispose()
    print(
        f"tagging {len(lons)} points: PostGIS lateral join {sql_s:.2f} s ({sql_found} found); "
        f"shapely {shp_s:.2f} s + {load_s:.2f} s to load the outlines ({found} found)"
    )


def _counts(out: str) -> str:
    m = re.search(r"lignes lues.*", out)
    return m.group(0).strip() if m else out[-500:]


def one_run(path: Path, rows: int, phases: bool, keep_db: bool) -> dict[str, Any]:
    """A fresh database, the floor, `carteco import`, the re-import: their figures."""
    url = _fresh_database()
    try:
        load, join, floor_rss = floor(path, url)
        floor_s = load + join
        print(
            f"floor (ogr2ogr COPY + commune join): {floor_s:.1f} s "
            f"(load {load:.1f} s, join {join:.1f} s), peak RSS {floor_rss:.0f} MB"
        )
        first, rss1, out1 = carteco_import(path, url, phases)
        print(f"carteco import:    {first:.1f} s, peak RSS {rss1:.0f} MB  [{_counts(out1)}]")
        if phases:
            print(_phases(out1))
        again, rss2, out2 = carteco_import(path, url, phases)
        print(f"carteco re-import: {again:.1f} s, peak RSS {rss2:.0f} MB  [{_counts(out2)}]")
        if phases:
            print(_phases(out2))
    finally:
        if not keep_db:
            _drop_database(url)
    result = {
        "rows": rows,
        "floor_s": round(floor_s, 2),
        "import_s": round(first, 2),
        "reimport_s": round(again, 2),
        "ratio_import": round(first / floor_s, 2),
        "ratio_reimport": round(again / floor_s, 2),
        "rss_floor_mb": round(floor_rss),
        "rss_import_mb": round(rss1),
        "rss_reimport_mb": round(rss2),
        "load": os.getloadavg(),
    }
    print(json.dumps(result))
    return result


def main() -> None:
    """Generate the file, time the floor and `carteco import` (twice), print the ratio."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--keep-db", action="store_true", help="keep the benchmark database")
    ap.add_argument(
        "--phases", action="store_true",
        help="also print how long each phase of both imports took (the bulk path's DEBUG log)",
    )  # fmt: skip
    ap.add_argument(
        "--repeat", type=int, default=1, metavar="N",
        help="N runs (each: fresh database, floor, import, re-import), then the median ratios",
    )  # fmt: skip
    ap.add_argument(
        "--tagging", type=int, default=0, metavar="N",
        help="only compare territory tagging of N points: PostGIS join vs shapely",
    )  # fmt: skip
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="carteco-bench-import-") as tmp:
        path = Path(tmp) / f"structures_{args.rows}.csv"
        t0 = time.perf_counter()
        generate(path, args.rows)
        size = path.stat().st_size / 1e6
        print(f"file: {args.rows} rows, {size:.0f} MB ({time.perf_counter() - t0:.1f} s)")
        if args.tagging:
            url = _fresh_database()
            try:
                compare_tagging(path, url, args.tagging)
            finally:
                if not args.keep_db:
                    _drop_database(url)
            return
        runs = []
        for i in range(args.repeat):
            if args.repeat > 1:
                print(f"run {i + 1} of {args.repeat}")
            runs.append(one_run(path, args.rows, args.phases, args.keep_db))
        if len(runs) > 1:
            # The machine is shared and one run's figures vary (by 10 % seen here): the
            # median of the runs' own ratios, each measured floor beside import.
            print(
                json.dumps(
                    {
                        "runs": len(runs),
                        "median_ratio_import": statistics.median(r["ratio_import"] for r in runs),
                        "median_ratio_reimport": statistics.median(
                            r["ratio_reimport"] for r in runs
                        ),
                        "ratios_import": [r["ratio_import"] for r in runs],
                        "max_rss_import_mb": max(r["rss_import_mb"] for r in runs),
                    }
                )
            )


if __name__ == "__main__":
    main()
