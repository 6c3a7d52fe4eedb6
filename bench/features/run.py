"""Features API benchmark: Carteco vs tipg on the same PostGIS table, and export vs ogr2ogr.

    .venv/bin/python bench/features/run.py            # 1,000,000 synthetic structures
    .venv/bin/python bench/features/run.py --n 100000 --requests 100

Data: N SYNTHETIC structures (name "Structure synthétique …", source "synthetic-bench"),
points drawn inside the Île-de-France communes in proportion to their population, random
sectors and ESS families. Both servers run one uvicorn worker on loopback against the same
database; tipg (PyPI) runs from its own virtualenv (--tipg-python, created on demand).

Measures: items limit=1000 (req/s with --concurrency clients, p50/p99), bbox queries at three
zooms (limit=1000), and the full GeoJSON export (seconds, peak server RSS) against
`ogr2ogr -f GeoJSON` from PostGIS. Prints each figure and the ratio.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import venv
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from carteco import db  # noqa: E402

ADMIN_URL = os.environ.get(
    "CARTECO_BENCH_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
DB_NAME = "carteco_bench_features"
TIPG_VENV = Path(os.environ.get("CARTECO_TIPG_VENV", "/tmp/carteco-tipg-venv"))
PARIS = (2.3488, 48.8534)
# bbox half-widths in degrees: département, arrondissement, street block.
ZOOMS = {"z9 (~40 km)": 0.25, "z12 (~5 km)": 0.03, "z15 (~600 m)": 0.004}

GENERATE = """
WITH c AS (
    SELECT code, departement_code, epci_code, ept_code, region_code, geom, population,
           sum(population) OVER () AS total
      FROM territories WHERE level = 'commune' AND population > 0
), k AS (
    SELECT *, round(:n * population::numeric / total)::int AS k FROM c
), p AS (
    SELECT k.*, (ST_Dump(ST_GeneratePoints(k.geom, k.k, 42))).geom AS pt FROM k WHERE k.k > 0
)
INSERT INTO structures (name, description, ess_family, sectors, geom, commune_code,
    departement_code, epci_code, ept_code, region_code, location_precision, geocode_status,
    source, source_id, content_hash)
SELECT 'Structure synthétique ' || row_number() OVER (),
       'Donnée synthétique générée pour le banc d''essai.',
       (ARRAY['association','cooperative','mutuelle','fondation','societe_commerciale_ess'])
           [1 + floor(random() * 5)::int],
       ARRAY[(CAST(:sectors AS text[]))[1 + floor(random() * :nsectors)::int]],
       pt, code, departement_code, epci_code, ept_code, region_code, 'provided', 'geocoded',
       'synthetic-bench', gen_random_uuid()::text, md5(random()::text)
  FROM p
"""


def admin() -> sa.Engine:
    """AUTOCOMMIT engine on the maintenance database."""
    return sa.create_engine(db.normalise_url(ADMIN_URL), isolation_level="AUTOCOMMIT")


def prepare(n: int, reuse: bool) -> str:
    """The bench database with N synthetic structures (reused when it already has N±1%)."""
    url = db.normalise_url(ADMIN_URL).rsplit("/", 1)[0] + "/" + DB_NAME
    if reuse:
        try:
            with sa.create_engine(url).connect() as conn:
                have = conn.execute(sa.text("SELECT count(*) FROM structures")).scalar_one()
            if abs(have - n) <= n * 0.01 + 5:
                print(f"reusing {DB_NAME} ({have} structures)")
                db.upgrade(url)  # the code may be newer than the reused schema
                return url
        except sa.exc.SQLAlchemyError:
            pass
    eng = admin()
    with eng.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{DB_NAME}"'))
    eng.dispose()
    t0 = time.perf_counter()
    db.upgrade(url)
    from carteco.sectors import load_taxonomy, sync_sectors
    from geodata.loader import load_all

    e = sa.create_engine(url)
    with e.begin() as conn:
        sync_sectors(conn)
        load_all(conn)
    codes = [s.code for s in load_taxonomy().nodes]
    with e.begin() as conn:
        # The rows carry their territory codes already: skip the per-row tagging trigger.
        conn.execute(sa.text("ALTER TABLE structures DISABLE TRIGGER USER"))
        conn.execute(sa.text(GENERATE), {"n": n, "sectors": codes, "nsectors": len(codes)})
        conn.execute(sa.text("ALTER TABLE structures ENABLE TRIGGER USER"))
    with e.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE structures"))
        have = conn.execute(sa.text("SELECT count(*) FROM structures")).scalar_one()
    e.dispose()
    print(f"generated {have} synthetic structures in {time.perf_counter() - t0:.0f} s")
    return url


def tipg_python(explicit: str | None) -> Path:
    """The python of a virtualenv with tipg (created with pip on first use)."""
    if explicit:
        return Path(explicit)
    py = TIPG_VENV / "bin" / "python"
    if not py.exists():
        venv.create(TIPG_VENV, with_pip=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "tipg", "uvicorn"], check=True)
    return py


def free_port() -> int:
    """A free loopback port."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(cmd: list[str], env: dict[str, str], probe: str, log: Path) -> subprocess.Popen[bytes]:
    """Start a server process and wait until `probe` answers 200."""
    proc = subprocess.Popen(
        cmd, env={**os.environ, **env}, stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=ROOT
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{cmd[0]} exited: see {log}")
        try:
            if httpx.get(probe, timeout=5).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"server did not answer {probe}: see {log}")


def measure(
    jobs: list[Any],
    concurrency: int,
    open_client: Callable[[], Any],
    call: Callable[[Any, Any], None],
) -> dict[str, float]:
    """Run the jobs on `concurrency` threads, each with its own client; req/s, p50, p99 (ms)."""
    lat: list[float] = []
    lock = threading.Lock()
    chunks = [jobs[i::concurrency] for i in range(concurrency)]

    def worker(part: list[Any]) -> None:
        with open_client() as client:
            for job in part:
                t = time.perf_counter()
                call(client, job)
                with lock:
                    lat.append(time.perf_counter() - t)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as ex:
        list(ex.map(worker, chunks))
    wall = time.perf_counter() - t0
    lat.sort()
    return {
        "rps": len(lat) / wall,
        "p50": statistics.median(lat) * 1000,
        "p99": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000,
    }


def load(urls: list[str], concurrency: int) -> dict[str, float]:
    """Fire the URLs with `concurrency` keep-alive clients; req/s, p50, p99 (ms)."""

    def get(client: httpx.Client, url: str) -> None:
        r = client.get(url)
        r.raise_for_status()
        _ = r.content

    return measure(
        urls,
        concurrency,
        lambda: httpx.Client(timeout=120, headers={"Accept-Encoding": "identity"}),
        get,
    )


def rss_kb(pid: int) -> int:
    """Resident memory of a process, kB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def export_carteco(base: str, pid: int, out: Path) -> tuple[float, float]:
    """Seconds and peak server RSS (MB) of the full streamed GeoJSON export."""
    peak = rss_kb(pid)
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_kb(pid))
            time.sleep(0.05)

    th = threading.Thread(target=sample)
    th.start()
    t0 = time.perf_counter()
    with (
        httpx.stream(
            "GET",
            base + "/collections/structures/items?f=geojson",
            timeout=1200,
            headers={"Accept-Encoding": "identity"},
        ) as r,
        out.open("wb") as f,
    ):
        r.raise_for_status()
        for chunk in r.iter_raw():
            f.write(chunk)
    secs = time.perf_counter() - t0
    done.set()
    th.join()
    return secs, peak / 1024


def export_ogr2ogr(url: str, out: Path) -> tuple[float, float]:
    """Seconds and peak RSS (MB) of `ogr2ogr -f GeoJSON` from PostGIS."""
    u = sa.engine.make_url(url)
    pg = f"PG:host={u.host} port={u.port or 5432} user={u.username} dbname={u.database}"
    out.unlink(missing_ok=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        ["ogr2ogr", "-f", "GeoJSON", str(out), pg, "structures", "-lco", "RFC7946=YES"]
    )
    peak = 0
    while proc.poll() is None:
        try:
            peak = max(peak, rss_kb(proc.pid))
        except FileNotFoundError:
            break
        time.sleep(0.05)
    if proc.returncode:
        raise RuntimeError("ogr2ogr failed")
    return time.perf_counter() - t0, peak / 1024


def main() -> None:
    """Run the benchmark and print the table of ratios."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000, help="synthetic structures")
    ap.add_argument("--requests", type=int, default=200, help="requests per scenario")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--reuse", action="store_true", help="reuse the bench database if sized N")
    ap.add_argument("--tipg-python", help="python of an environment where tipg is installed")
    ap.add_argument("--skip-export", action="store_true")
    ap.add_argument("--out", type=Path, default=Path("/tmp/carteco-bench-features"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    url = prepare(args.n, args.reuse)
    plain = url.replace("postgresql+psycopg://", "postgresql://")
    c_port, t_port = free_port(), free_port()
    carteco = start(
        [sys.executable, "-m", "uvicorn", "--factory", "api.factory:app_from_env",
         "--port", str(c_port), "--log-level", "warning"],
        {
            "CARTECO_DATABASE_URL": url,
            "CARTECO_RATE_LIMIT_READS_PER_MINUTE": "0",
            "CARTECO_STATEMENT_TIMEOUT_MS": "600000",
            "CARTECO_REQUEST_TIMEOUT_S": "1200",
        },
        f"http://127.0.0.1:{c_port}/conformance",
        args.out / "carteco.log",
    )  # fmt: skip
    tipg = None
    tipg_error = None
    try:
        tipg = start(
            [str(tipg_python(args.tipg_python)), "-m", "uvicorn", "tipg.main:app",
             "--port", str(t_port), "--log-level", "warning"],
            {
                "DATABASE_URL": plain,
                "TIPG_DB_SCHEMAS": '["public"]',
                "TIPG_DB_TABLES": '["public.structures"]',
                "TIPG_MAX_FEATURES_PER_QUERY": "10000",
            },
            f"http://127.0.0.1:{t_port}/collections/public.structures",
            args.out / "tipg.log",
        )  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - reported in the table
        tipg_error = str(exc)
    cb = f"http://127.0.0.1:{c_port}/collections/structures/items"
    tb = f"http://127.0.0.1:{t_port}/collections/public.structures/items"
    rnd = random.Random(1)
    rows: list[tuple[str, dict[str, float], dict[str, float] | None]] = []
    try:
        offsets = [rnd.randrange(0, max(1, args.n - 1000)) for _ in range(args.requests)]
        scen = {"items limit=1000": [f"?limit=1000&offset={o}" for o in offsets]}
        for label, half in ZOOMS.items():
            qs = []
            for _ in range(args.requests):
                x = PARIS[0] + rnd.uniform(-0.1, 0.1)
                y = PARIS[1] + rnd.uniform(-0.05, 0.05)
                qs.append(
                    f"?limit=1000&bbox={x - half:.5f},{y - half:.5f},{x + half:.5f},{y + half:.5f}"
                )
            scen[f"bbox {label}"] = qs
        for name, qs in scen.items():
            load([cb + q for q in qs[:10]], 1)  # warm-up
            c = load([cb + q for q in qs], args.concurrency)
            t = None
            if tipg is not None:
                load([tb + q for q in qs[:10]], 1)
                t = load([tb + q for q in qs], args.concurrency)
            rows.append((name, c, t))
        print()
        print(f"{'scenario':<24}{'carteco req/s':>14}{'p50 ms':>9}{'p99 ms':>9}"
              f"{'tipg req/s':>12}{'p50 ms':>9}{'p99 ms':>9}{'ratio':>8}")  # fmt: skip
        for name, c, t in rows:
            tail = (
                f"{t['rps']:>12.1f}{t['p50']:>9.1f}{t['p99']:>9.1f}{c['rps'] / t['rps']:>7.2f}x"
                if t
                else f"{'—':>12}"
            )
            print(f"{name:<24}{c['rps']:>14.1f}{c['p50']:>9.1f}{c['p99']:>9.1f}{tail}")
        if tipg_error:
            print(f"tipg could not run: {tipg_error}")
        if not args.skip_export:
            cs, cm = export_carteco(
                f"http://127.0.0.1:{c_port}", carteco.pid, args.out / "carteco.geojson"
            )
            os_, om = export_ogr2ogr(url, args.out / "ogr2ogr.geojson")
            csize = (args.out / "carteco.geojson").stat().st_size / 1e6
            osize = (args.out / "ogr2ogr.geojson").stat().st_size / 1e6
            print()
            print(f"full GeoJSON export  carteco {cs:.1f} s ({csize:.0f} MB, "
                  f"server peak RSS {cm:.0f} MB) | ogr2ogr {os_:.1f} s "
                  f"({osize:.0f} MB, peak RSS {om:.0f} MB)"
                  f" | time ratio carteco/ogr2ogr {cs / os_:.2f}")  # fmt: skip
    finally:
        carteco.terminate()
        if tipg is not None:
            tipg.terminate()
        carteco.wait(10)
        if tipg is not None:
            tipg.wait(10)


if __name__ == "__main__":
    main()
