"""Load test: a realistic mix on loopback with wrk; finds the knee, then holds 60 s there.

Mix: tiles 70 %, items 15 %, territory stats 10 %, search 5 % (weights by repetition in the
URL list that wrk's Lua script cycles through at random).

    .venv/bin/python -m bench.load.run [--duration 10] [--hold 60] [--workers 2]

It starts `carteco serve` on the configured database (CARTECO_DATABASE_URL, or the embedded
cluster with the demo loaded) with the per-IP rate limit off — every simulated user shares
127.0.0.1 here. It prints a table of (connections, req/s, p50, p99, errors), the knee (highest
rate with p99 < 500 ms) and the 60 s hold at that concurrency.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import sqlalchemy as sa

from carteco import db
from carteco.settings import Settings

LUA = r"""
local paths = {}
for line in io.lines(os.getenv("CARTECO_LOAD_URLS")) do paths[#paths + 1] = line end
math.randomseed(os.time())
request = function()
  return wrk.format("GET", paths[math.random(#paths)])
end
"""


def _tile(lon: float, lat: float, z: int) -> tuple[int, int]:
    n = 2**z
    x = int((lon + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return x, y


def build_urls(engine: sa.Engine, n: int = 2000, seed: int = 1) -> list[str]:
    """The request mix, as n paths (tiles 70 %, items 15 %, stats 10 %, search 5 %)."""
    rnd = random.Random(seed)
    with engine.connect() as conn:
        communes = conn.execute(
            sa.text("SELECT code, name FROM territories WHERE level = 'commune' ORDER BY code")
        ).all()
    urls: list[str] = []
    for _ in range(int(n * 0.70)):
        z = rnd.choice([8, 9, 10, 11, 12, 13, 14])
        lon = 2.35 + rnd.uniform(-0.4, 0.4)
        lat = 48.85 + rnd.uniform(-0.25, 0.25)
        x, y = _tile(lon, lat, z)
        urls.append(f"/collections/structures/tiles/WebMercatorQuad/{z}/{y}/{x}")
    for _ in range(int(n * 0.15)):
        lon = 2.35 + rnd.uniform(-0.3, 0.3)
        lat = 48.85 + rnd.uniform(-0.2, 0.2)
        d = rnd.choice([0.02, 0.05, 0.1])
        urls.append(
            f"/collections/structures/items?limit=100&bbox={lon - d:.4f},{lat - d:.4f},"
            f"{lon + d:.4f},{lat + d:.4f}"
        )
    for _ in range(int(n * 0.10)):
        code, _name = rnd.choice(communes)
        urls.append(f"/territories/commune/{code}/stats")
    for _ in range(n - len(urls)):
        _code, name = rnd.choice(communes)
        urls.append(f"/ban/search/?q={quote(name)}&limit=5")
    rnd.shuffle(urls)
    return urls


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    if not m:
        return float("nan")
    v, unit = float(m.group(1)), m.group(2)
    return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v


def run_wrk(base: str, urls_file: Path, lua: Path, connections: int, duration: int) -> dict:
    """One wrk run; returns rps, p50/p99 in ms and error counts."""
    res = subprocess.run(
        [
            "wrk",
            "-t",
            str(min(2, connections)),
            "-c",
            str(connections),
            "-d",
            f"{duration}s",
            "--latency",
            "--timeout",
            "10s",
            "-s",
            str(lua),
            base,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "CARTECO_LOAD_URLS": str(urls_file)},
        check=True,
    )
    out = res.stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    dist = out.split("Latency Distribution", 1)[1]  # percentiles, not the thread-stats columns
    p50 = _ms(re.search(r"\s50%\s+(\S+)", dist).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", dist).group(1))  # type: ignore[union-attr]
    non2xx = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    socket_errors = sum(int(g) for g in sock.groups()) if sock else 0
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return {
        "c": connections,
        "rps": rps,
        "p50": p50,
        "p99": p99,
        "requests": total,
        "errors": non2xx + socket_errors,
    }


def main() -> None:
    """Entry point."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--duration", type=int, default=10, help="seconds per step")
    ap.add_argument("--hold", type=int, default=60, help="seconds of the hold at the knee")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--max-connections", type=int, default=128)
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is missing: apt-get install -y wrk (scripts/setup.sh installs it)")

    settings = Settings()
    url = db.resolve_url(settings)
    engine = db.make_engine(settings, url)
    work = Path(tempfile.mkdtemp(prefix="carteco-load-"))
    urls_file = work / "urls.txt"
    urls_file.write_text("\n".join(build_urls(engine)) + "\n", encoding="utf-8")
    lua = work / "mix.lua"
    lua.write_text(LUA, encoding="utf-8")
    port = free_port()
    env = {
        **os.environ,
        "CARTECO_DATABASE_URL": url,
        "CARTECO_RATE_LIMIT_READS_PER_MINUTE": "0",
        "CARTECO_LOG_JSON": "false",
    }
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "carteco.cli",
            "serve",
            "--port",
            str(port),
            "--workers",
            str(args.workers),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                sys.exit("the server did not become ready")
            time.sleep(0.3)
        # Warm the caches once, as a deployed service would be.
        for path in urls_file.read_text().splitlines()[:300]:
            httpx.get(base + path, timeout=30)
        print(
            f"mix: {urls_file} ({len(urls_file.read_text().splitlines())} paths), "
            f"{args.workers} workers\n"
        )
        print(f"{'conns':>6} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
        steps = []
        c = 1
        while c <= args.max_connections:
            r = run_wrk(base, urls_file, lua, c, args.duration)
            steps.append(r)
            print(
                f"{r['c']:>6} {r['rps']:>9.1f} {r['p50']:>8.1f} {r['p99']:>8.1f} {r['errors']:>7}"
            )
            if r["p99"] >= 500:
                break
            c *= 2
        ok = [r for r in steps if r["p99"] < 500 and r["errors"] == 0]
        if not ok:
            sys.exit("no step met p99 < 500 ms")
        knee = max(ok, key=lambda r: r["rps"])
        print(
            f"\nknee: {knee['rps']:.0f} req/s at {knee['c']} connections (p99 {knee['p99']:.0f} ms)"
        )
        hold = run_wrk(base, urls_file, lua, knee["c"], args.hold)
        print(
            f"hold {args.hold} s at {knee['c']} connections: {hold['rps']:.0f} req/s, "
            f"{hold['requests']} requests, p50 {hold['p50']:.1f} ms, p99 {hold['p99']:.1f} ms, "
            f"errors {hold['errors']}"
        )
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=20)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
