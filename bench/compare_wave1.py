"""Side-by-side: this tree's HTTP service against another checkout (the wave-1 code, ee9cb8f).

    bash bench/compare_wave1.sh                 # sets up /tmp/old, then runs this
    .venv/bin/python -m bench.compare_wave1 --old /tmp/old --reps 3

Each side runs its own code (the server's working directory is its tree, and the first line
printed is the `api` package each side really imported) against the same bench database (the
SYNTHETIC structures of bench/features, `--n`). The clients are this tree's bench functions,
unchanged since wave-1, so both sides get the same requests:

- static: `bench/static` — wrk, 4 connections, gzip, the versioned MapLibre JS (1 worker);
- load: `bench/load` — wrk on its URL mix (tiles 70 %, items 15 %, stats 10 %, search 5 %)
  at a fixed concurrency, `carteco serve --workers 2`;
- features: `bench/features` — items limit=1000 and bbox at three zooms, 4 clients (1 worker);
- tiles: `bench/tiles` — the fixed tile list, cache off (cold) and primed (warm), 4 clients.

Every measurement is interleaved (main, old, then old, main on the next repetition), repeated
`--reps` times; the table gives medians and main ÷ old (> 1: main is faster; latencies: < 1).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from api.assets import ASSETS  # noqa: E402
from bench.features import run as features  # noqa: E402
from bench.load import run as load  # noqa: E402
from bench.static import run as static  # noqa: E402
from bench.tiles import run as tiles  # noqa: E402
from carteco import db  # noqa: E402
from carteco.settings import Settings  # noqa: E402


class Side:
    """One code tree's servers (each started with that tree as working directory)."""

    def __init__(self, name: str, tree: Path, pythonpath: str, url: str, log: Path) -> None:
        self.name, self.tree, self.url, self.log = name, tree, url, log
        self.env = {
            **os.environ,
            "PYTHONPATH": pythonpath,
            "CARTECO_DATABASE_URL": url,
            "CARTECO_RATE_LIMIT_READS_PER_MINUTE": "0",
            "CARTECO_LOG_JSON": "false",
            "CARTECO_STATEMENT_TIMEOUT_MS": "600000",
            "CARTECO_REQUEST_TIMEOUT_S": "1200",
        }
        self.procs: list[subprocess.Popen[bytes]] = []
        self.bases: dict[str, str] = {}
        self.sessions: dict[str, int] = {}

    def cpu_seconds(self, role: str) -> float:
        """CPU time (user + system) used so far by a role's server processes (workers too)."""
        tick = os.sysconf("SC_CLK_TCK")
        total = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == self.sessions[role]:  # session id: the server's own group
                total += int(fields[11]) + int(fields[12])
        return total / tick

    def imported(self) -> str:
        """Where this side's `api` and `carteco` packages are imported from."""
        out = subprocess.run(
            [sys.executable, "-c", "import api, carteco; print(api.__file__, carteco.__file__)"],
            cwd=self.tree,
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip()

    def start(self, role: str, extra: dict[str, str], workers: int = 1) -> None:
        """Start one server for a role and wait until it answers."""
        port = features.free_port()
        # bench/load starts `carteco serve --workers N`; wave-1's `serve` refuses a schema newer
        # than its own, so both sides get the uvicorn command it runs (no proxy headers, as
        # main's `serve` without trusted proxies), the same for both.
        cmd = [sys.executable, "-m", "uvicorn", "--factory", "api.factory:app_from_env",
               "--port", str(port), "--workers", str(workers), "--no-proxy-headers",
               "--log-level", "info" if workers > 1 else "warning"]  # fmt: skip
        proc = subprocess.Popen(
            cmd,
            cwd=self.tree,
            env={**self.env, **extra},
            stdout=subprocess.DEVNULL,
            stderr=(self.log.parent / f"{self.name}-{role}.log").open("wb"),
            start_new_session=True,
        )
        self.procs.append(proc)
        self.sessions[role] = proc.pid
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                sys.exit(f"{self.name} {role} server exited: see {self.log.parent}")
            try:
                if httpx.get(base + "/conformance", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                sys.exit(f"{self.name} {role} server did not answer")
            time.sleep(0.3)
        self.bases[role] = base

    def stop(self) -> None:
        """Stop every server this side started (each in its own process group)."""
        for proc in self.procs:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def reuse_or_prepare(n: int) -> str:
    """The bench database of bench/features, reused when it holds about N rows (±5 %)."""
    url = db.normalise_url(features.ADMIN_URL).rsplit("/", 1)[0] + "/" + features.DB_NAME
    plain = url.replace("postgresql+psycopg://", "postgresql://")
    try:
        with psycopg.connect(plain, autocommit=True) as conn:
            have = conn.execute("SELECT count(*) FROM structures").fetchone()
    except psycopg.Error:
        have = None
    if have is not None and abs(have[0] - n) <= n * 0.05:
        print(f"reusing {features.DB_NAME} ({have[0]} structures)")
        db.upgrade(url)
        return url
    return features.prepare(n, reuse=False)


def prepare_tiles(url: str) -> None:
    """Rebuild the cluster grid when stale (the generator bypasses triggers; bench/tiles)."""
    plain = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        row = conn.execute(
            "SELECT (SELECT coalesce(sum(n), 0) FROM tile_grid WHERE z = 14), "
            "(SELECT count(*) FROM structures WHERE geom IS NOT NULL AND status = 'active')"
        ).fetchone()
        if row is not None and row[0] != row[1]:
            conn.execute("SELECT carteco_tiles_grid_rebuild()")
            conn.execute("VACUUM ANALYZE tile_grid")


def scenarios(
    args: argparse.Namespace, url: str, work: Path
) -> dict[str, tuple[str, Callable[[Side], Any]]]:
    """Each measured figure: a function of a side, returning a dict with rps (and latencies)."""
    asset = ASSETS.url(static.FILES[0])

    def static_js(side: Side) -> dict[str, float]:
        rps, _ = static.wrk(side.bases["one"] + asset, args.static_duration, 4)
        return {"rps": rps}

    engine = db.make_engine(Settings(), url)
    urls_file = work / "urls.txt"
    urls_file.write_text("\n".join(load.build_urls(engine)) + "\n", encoding="utf-8")
    engine.dispose()
    lua = work / "mix.lua"
    lua.write_text(load.LUA, encoding="utf-8")

    def load_mix(side: Side) -> dict[str, float]:
        r = load.run_wrk(
            side.bases["load"], urls_file, lua, args.load_connections, args.load_duration
        )
        return {"rps": r["rps"], "p50": r["p50"], "p99": r["p99"], "errors": r["errors"]}

    rnd = random.Random(1)
    offsets = [rnd.randrange(0, max(1, args.n - 1000)) for _ in range(args.requests)]
    feats: dict[str, list[str]] = {
        "features items limit=1000": [f"?limit=1000&offset={o}" for o in offsets]
    }
    for label, half in features.ZOOMS.items():
        qs = []
        for _ in range(args.requests):
            x = features.PARIS[0] + rnd.uniform(-0.1, 0.1)
            y = features.PARIS[1] + rnd.uniform(-0.05, 0.05)
            qs.append(
                f"?limit=1000&bbox={x - half:.5f},{y - half:.5f},{x + half:.5f},{y + half:.5f}"
            )
        feats[f"features bbox {label.split()[0]}"] = qs

    def feature_scenario(qs: list[str]) -> Callable[[Side], dict[str, float]]:
        def run(side: Side) -> dict[str, float]:
            base = side.bases["one"] + "/collections/structures/items"
            return features.load([base + q for q in qs], 4)

        return run

    tile_list = tiles.tile_list(args.tiles)

    def tile_scenario(role: str) -> Callable[[Side], dict[str, float]]:
        def run(side: Side) -> dict[str, float]:
            base = side.bases[role] + "/collections/structures/tiles/WebMercatorQuad"
            return features.load([f"{base}/{z}/{y}/{x}" for z, x, y in tile_list], 4)

        return run

    out: dict[str, tuple[str, Callable[[Side], Any]]] = {
        "static maplibre-gl.js": ("one", static_js)
    }
    out["load mix"] = ("load", load_mix)
    out.update({name: ("one", feature_scenario(qs)) for name, qs in feats.items()})
    out["tiles cold"] = ("cold", tile_scenario("cold"))
    out["tiles warm"] = ("one", tile_scenario("one"))
    return out


def measured(side: Side, role: str, run: Callable[[Side], Any]) -> dict[str, float]:
    """One run, with the server's CPU milliseconds per request (steadier than req/s here)."""
    cpu0, t0 = side.cpu_seconds(role), time.perf_counter()
    r = dict(run(side))
    wall, cpu = time.perf_counter() - t0, side.cpu_seconds(role) - cpu0
    r["cpu_ms"] = cpu * 1000 / max(1.0, r["rps"] * wall)
    return r


def stack_cpu(side: Side) -> str:
    """bench/middleware_stack.py run in the side's tree: CPU µs per request of its stack."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "middleware_stack.py"), "--n", "3000"],
        cwd=side.tree,
        env=side.env,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def main() -> None:
    """Start both sides, run every scenario interleaved, print the table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--old", type=Path, default=Path("/tmp/old"), help="the other tree")
    ap.add_argument("--old-pythonpath", default="/tmp/old-deps", help="its extra packages")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--n", type=int, default=100_000, help="synthetic structures")
    ap.add_argument("--requests", type=int, default=100, help="requests per features scenario")
    ap.add_argument("--tiles", type=int, default=200)
    ap.add_argument("--static-duration", type=int, default=10)
    ap.add_argument("--load-duration", type=int, default=10)
    ap.add_argument("--load-connections", type=int, default=8)
    ap.add_argument("--only", help="comma-separated scenario name prefixes")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is missing: scripts/setup.sh installs it")
    url = reuse_or_prepare(args.n)
    prepare_tiles(url)
    work = Path(tempfile.mkdtemp(prefix="carteco-compare-"))
    sides = [
        Side("main", ROOT, "", url, work / "main.log"),
        Side("old", args.old.resolve(), args.old_pythonpath, url, work / "old.log"),
    ]
    for side in sides:
        print(f"{side.name}: {side.tree} imports {side.imported()}")
    runs = scenarios(args, url, work)
    if args.only:
        wanted = tuple(p.strip() for p in args.only.split(","))
        runs = {k: v for k, v in runs.items() if k.startswith(wanted)}
    results: dict[str, dict[str, list[dict[str, float]]]] = {
        k: {s.name: [] for s in sides} for k in runs
    }
    try:
        for side in sides:
            side.start("one", {"CARTECO_TILE_CACHE_MAX_TILES": str(10 * args.tiles)})
            side.start("cold", {"CARTECO_TILE_CACHE_ENABLED": "false"})
            if "load mix" in runs:
                side.start("load", {}, workers=2)
            # Warm: connection pools, PostgreSQL's buffers, the tile cache (as the benches do).
            for name, (_, run) in runs.items():
                if not name.startswith("static"):
                    run(side)
        for rep in range(args.reps):
            for name, (role, run) in runs.items():
                order = sides if rep % 2 == 0 else sides[::-1]
                for side in order:
                    r = measured(side, role, run)
                    results[name][side.name].append(r)
                    extra = f", errors {r['errors']}" if r.get("errors") else ""
                    print(f"rep {rep + 1} {name:<28} {side.name:<5} {r['rps']:9.1f} req/s "
                          f"{r['cpu_ms']:7.2f} server CPU ms/req{extra}", flush=True)  # fmt: skip
    finally:
        for side in sides:
            side.stop()
        shutil.rmtree(work, ignore_errors=True)

    for side in sides:
        print(f"middleware stack alone, {side.name}: {stack_cpu(side)}")
    print()
    print("medians; req/s ratio main / old (> 1: main faster); server CPU ms per request,")
    print("ratio main / old (< 1: main cheaper)")
    print(f"{'scenario':<28}{'main req/s':>11}{'old req/s':>10}{'ratio':>8}"
          f"{'main CPU':>10}{'old CPU':>9}{'ratio':>8}  req/s runs (main | old)")  # fmt: skip
    for name, by in results.items():
        m = statistics.median(r["rps"] for r in by["main"])
        o = statistics.median(r["rps"] for r in by["old"])
        mc = statistics.median(r["cpu_ms"] for r in by["main"])
        oc = statistics.median(r["cpu_ms"] for r in by["old"])
        runs_txt = (
            " ".join(f"{r['rps']:.0f}" for r in by["main"])
            + " | "
            + " ".join(f"{r['rps']:.0f}" for r in by["old"])
        )
        print(f"{name:<28}{m:>11.1f}{o:>10.1f}{m / o:>7.3f}x{mc:>10.2f}{oc:>9.2f}"
              f"{mc / oc:>7.3f}x  {runs_txt}")  # fmt: skip


if __name__ == "__main__":
    main()
