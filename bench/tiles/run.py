"""Vector tiles benchmark: Carteco cold / warm vs tipg vs bare ST_AsMVT, same PostGIS, same data.

    .venv/bin/python bench/tiles/run.py --reuse          # the features bench's 1,000,000 rows
    .venv/bin/python bench/tiles/run.py --n 100000 --db carteco_bench_tiles --tiles 200

Data: the SYNTHETIC structures of bench/features (same generator, same database by default:
`--reuse` keeps it when it already holds N rows). Tiles: a fixed list of tiles z6–z14 around
Paris (a window per zoom, shuffled with a fixed seed). Each server is one uvicorn worker on
loopback; clients keep connections alive (`--concurrency`).

Scenarios, each fetching every tile of the list once:
- carteco cold: Carteco with its tile cache disabled (every tile rendered in PostGIS);
- carteco warm: Carteco with its cache on, primed by one pass over the list;
- tipg: tipg (PyPI, own virtualenv) on the same table (its tiles are unclustered points);
- floor, carteco SQL: Carteco's tile SQL run directly through psycopg (no HTTP);
- floor, bare ST_AsMVT: the simplest point tile query through psycopg.
Prints tiles/s, p50/p99 (ms) and the ratios the issue asks for.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import time
from pathlib import Path
from typing import Any

import morecantile
import psycopg

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.features import run as features  # noqa: E402
from tiles.layers import LAYERS  # noqa: E402
from tiles.mvt import tile_query  # noqa: E402

PARIS = (2.3488, 48.8534)
ZOOMS = range(6, 15)
BARE_SQL = """
SELECT ST_AsMVT(q, 'structures', 4096, 'geom') FROM (
  SELECT id, name, ST_AsMVTGeom(ST_Transform(geom, 3857), ST_TileEnvelope(%(z)s, %(x)s, %(y)s),
                                4096, 64, true) AS geom
    FROM structures
   WHERE geom && ST_Transform(ST_TileEnvelope(%(z)s, %(x)s, %(y)s), 4326)) q
"""


def tile_list(n: int, seed: int = 7) -> list[tuple[int, int, int]]:
    """A fixed list of about n tiles z6–z14 around Paris, the same on every run."""
    tms = morecantile.tms.get("WebMercatorQuad")
    per_zoom = max(1, n // len(ZOOMS))
    out: list[tuple[int, int, int]] = []
    for z in ZOOMS:
        c = tms.tile(*PARIS, z)
        side = 1
        while side * side < per_zoom:
            side += 1
        half = side // 2
        window = [
            (z, c.x + dx, c.y + dy)
            for dx in range(-half, side - half)
            for dy in range(-half, side - half)
        ]
        out.extend(window[:per_zoom])
    random.Random(seed).shuffle(out)
    return out


def psycopg_load(url: str, jobs: list[tuple[str, dict[str, Any]]], concurrency: int) -> dict:
    """Run the tile queries through psycopg with `concurrency` connections."""
    return features.measure(
        jobs,
        concurrency,
        lambda: psycopg.connect(url, autocommit=True),
        lambda conn, job: conn.execute(*job).fetchone(),
    )


def carteco_jobs(tiles: list[tuple[int, int, int]]) -> list[tuple[str, dict[str, Any]]]:
    """Carteco's own tile SQL for each tile, in psycopg's parameter style."""
    jobs = []
    for z, x, y in tiles:
        sql, params = tile_query(LAYERS["structures"], z, x, y)
        # SQLAlchemy-style :name → psycopg %(name)s (names are plain identifiers).
        sql = re.sub(r"(?<!:):([a-z_]+)", r"%(\1)s", sql)
        jobs.append((sql, params))
    return jobs


def main() -> None:
    """Run every scenario and print the table and the ratios."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000, help="synthetic structures")
    ap.add_argument("--tiles", type=int, default=450, help="tiles in the fixed list")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--reuse", action="store_true", help="reuse the bench database if sized N")
    ap.add_argument("--db", default=features.DB_NAME, help="bench database name")
    ap.add_argument("--tipg-python", help="python of an environment where tipg is installed")
    ap.add_argument("--no-tipg", action="store_true")
    ap.add_argument("--out", type=Path, default=Path("/tmp/carteco-bench-tiles"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    features.DB_NAME = args.db
    url = features.prepare(args.n, args.reuse)
    plain = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('tile_grid')").fetchone()[0] is None:
            sys.exit(
                f"{args.db} was migrated before the cluster grid existed: recreate it "
                "(run without --reuse) or use --db with another name."
            )
        # The generator bypasses triggers (bench/features): rebuild the cluster grid if stale.
        grid, located = conn.execute(
            "SELECT (SELECT coalesce(sum(n), 0) FROM tile_grid WHERE z = 14), "
            "(SELECT count(*) FROM structures WHERE geom IS NOT NULL AND status = 'active')"
        ).fetchone()
        if grid != located:
            t0 = time.perf_counter()
            conn.execute("SELECT carteco_tiles_grid_rebuild()")
            conn.execute("VACUUM ANALYZE tile_grid")
            print(f"cluster grid rebuilt in {time.perf_counter() - t0:.1f} s")
    tiles = tile_list(args.tiles)
    print(f"{len(tiles)} tiles z{min(ZOOMS)}–z{max(ZOOMS)} around Paris, "
          f"concurrency {args.concurrency}")  # fmt: skip

    env = {
        "CARTECO_DATABASE_URL": url,
        "CARTECO_RATE_LIMIT_READS_PER_MINUTE": "0",
        "CARTECO_STATEMENT_TIMEOUT_MS": "600000",
        "CARTECO_REQUEST_TIMEOUT_S": "1200",
        "CARTECO_TILE_CACHE_MAX_TILES": str(10 * len(tiles)),
    }
    servers: dict[str, Any] = {}
    results: dict[str, dict] = {}
    tipg_error = None
    try:
        for name, cache in (("cold", "false"), ("warm", "true")):
            port = features.free_port()
            servers[name] = (
                features.start(
                    [sys.executable, "-m", "uvicorn", "--factory", "api.factory:app_from_env",
                     "--port", str(port), "--log-level", "warning"],
                    {**env, "CARTECO_TILE_CACHE_ENABLED": cache},
                    f"http://127.0.0.1:{port}/collections/structures/tiles",
                    args.out / f"carteco-{name}.log",
                ),
                port,
            )  # fmt: skip
        if not args.no_tipg:
            try:
                port = features.free_port()
                servers["tipg"] = (
                    features.start(
                        [str(features.tipg_python(args.tipg_python)), "-m", "uvicorn",
                         "tipg.main:app", "--port", str(port), "--log-level", "warning"],
                        {
                            "DATABASE_URL": plain,
                            "TIPG_DB_SCHEMAS": '["public"]',
                            "TIPG_DB_TABLES": '["public.structures"]',
                        },
                        f"http://127.0.0.1:{port}/collections/public.structures",
                        args.out / "tipg.log",
                    ),
                    port,
                )  # fmt: skip
            except Exception as exc:  # noqa: BLE001 - reported below
                tipg_error = str(exc)

        def urls(name: str) -> list[str]:
            port = servers[name][1]
            if name == "tipg":
                base = (
                    f"http://127.0.0.1:{port}/collections/public.structures/tiles/WebMercatorQuad"
                )
                return [f"{base}/{z}/{x}/{y}" for z, x, y in tiles]  # tipg: z/x/y
            base = f"http://127.0.0.1:{port}/collections/structures/tiles/WebMercatorQuad"
            return [f"{base}/{z}/{y}/{x}" for z, x, y in tiles]  # OGC: row (y) then col (x)

        # Clear Carteco's cache so "warm" is primed by this very list only.
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute("DELETE FROM tile_cache")
        # Warm each server's connection pool on one z5 tile (not in the list).
        for name in servers:
            z5 = urls(name)[0].rsplit("/", 3)[0]
            t = morecantile.tms.get("WebMercatorQuad").tile(*PARIS, 5)
            features.load([f"{z5}/5/{t.y}/{t.x}" if name != "tipg" else f"{z5}/5/{t.x}/{t.y}"], 1)

        # Prime PostgreSQL's buffers with one untimed pass of both queries, so no scenario pays
        # for first reading the table from disk ("cold" means Carteco's tile cache is off).
        psycopg_load(plain, carteco_jobs(tiles), args.concurrency)
        psycopg_load(
            plain, [(BARE_SQL, {"z": z, "x": x, "y": y}) for z, x, y in tiles], args.concurrency
        )
        results["carteco cold"] = features.load(urls("cold"), args.concurrency)
        features.load(urls("warm"), args.concurrency)  # primes the cache
        results["carteco warm"] = features.load(urls("warm"), args.concurrency)
        if "tipg" in servers:
            results["tipg"] = features.load(urls("tipg"), args.concurrency)
        results["floor: carteco SQL via psycopg"] = psycopg_load(
            plain, carteco_jobs(tiles), args.concurrency
        )
        results["floor: bare ST_AsMVT points"] = psycopg_load(
            plain, [(BARE_SQL, {"z": z, "x": x, "y": y}) for z, x, y in tiles], args.concurrency
        )
    finally:
        for proc, _ in servers.values():
            proc.terminate()
        for proc, _ in servers.values():
            proc.wait(10)

    print()
    print(f"{'scenario':<34}{'tiles/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
    for name, r in results.items():
        print(f"{name:<34}{r['rps']:>10.1f}{r['p50']:>10.1f}{r['p99']:>10.1f}")
    print()
    cold, warm = results["carteco cold"], results["carteco warm"]
    floor = results["floor: carteco SQL via psycopg"]
    bare = results["floor: bare ST_AsMVT points"]
    print("ratios (tiles/s of the first ÷ tiles/s of the second; > 1 = first is faster)")
    print(f"  floor (same SQL, psycopg) / carteco cold: {floor['rps'] / cold['rps']:.2f}"
          "  (goal ≤ 1.5)")  # fmt: skip
    print(f"  bare ST_AsMVT points / carteco cold:      {bare['rps'] / cold['rps']:.2f}")
    print(f"  carteco warm / carteco cold:              {warm['rps'] / cold['rps']:.2f}")
    if "tipg" in results:
        t = results["tipg"]
        print(
            f"  carteco cold / tipg:                      {cold['rps'] / t['rps']:.2f}  (goal ≥ 2)"
        )
        print(
            f"  carteco warm / tipg:                      {warm['rps'] / t['rps']:.2f}  (goal ≥ 10)"
        )
    elif tipg_error:
        print(f"tipg could not run: {tipg_error}")


if __name__ == "__main__":
    main()
