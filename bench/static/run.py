"""Static assets benchmark: Carteco's pre-gzipped, hashed assets vs StaticFiles + GZipMiddleware.

    .venv/bin/python -m bench.static.run [--duration 10] [--connections 4]

Both servers are one uvicorn worker on loopback; wrk asks for gzip, as browsers do, for the
files a first visit to the embedded map downloads (MapLibre JS and CSS, Carteco's script).
Carteco runs its real app (CARTECO_DATABASE_URL, or the embedded cluster) with the rate limit
off; the peer is `bench/static/peer.py`. Prints req/s and MB/s for each and the ratios.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from api.assets import ASSETS  # noqa: E402
from bench.features.run import free_port  # noqa: E402
from carteco import db  # noqa: E402
from carteco.settings import Settings  # noqa: E402

FILES = (
    "vendor/maplibre-gl/maplibre-gl.js",
    "vendor/maplibre-gl/maplibre-gl.css",
    "carteco/carte.js",
)


def serve(app: str, env: dict[str, str], factory: bool) -> tuple[subprocess.Popen[bytes], str]:
    """Start one uvicorn worker for `app`; its process and base URL once it answers."""
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", app, "--port", str(port), "--log-level", "warning"]
    if factory:
        cmd.insert(3, "--factory")
    proc = subprocess.Popen(
        cmd,
        env={**os.environ, **env},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(base + "/static/" + FILES[2], timeout=2)
            return proc, base
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                proc.kill()
                sys.exit(f"{app} did not start")
            time.sleep(0.2)


def wrk(url: str, duration: int, connections: int) -> tuple[float, float]:
    """req/s and MB/s of wrk on one URL, gzip accepted."""
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "-H", "Accept-Encoding: gzip", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    m = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", out)
    scale = {"B": 1e-6, "KB": 1e-3, "MB": 1.0, "GB": 1e3}[m.group(2)] if m else 0.0
    return rps, (float(m.group(1)) * scale if m else 0.0)


def main() -> None:
    """Run both servers, each file, and print the ratios."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=4)
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is missing: scripts/setup.sh installs it")
    url = db.resolve_url(Settings())
    carteco, cbase = serve(
        "api.factory:app_from_env",
        {"CARTECO_DATABASE_URL": url, "CARTECO_RATE_LIMIT_READS_PER_MINUTE": "0",
         "CARTECO_LOG_JSON": "false"},
        factory=True,
    )  # fmt: skip
    peer, pbase = serve("bench.static.peer:app", {}, factory=False)
    try:
        print(f"{'file':<40}{'carteco req/s':>15}{'peer req/s':>12}{'ratio':>8}")
        for f in FILES:
            versioned = ASSETS.url(f)
            c_rps, c_mb = wrk(cbase + versioned, args.duration, args.connections)
            p_rps, p_mb = wrk(pbase + "/static/" + f, args.duration, args.connections)
            print(f"{f:<40}{c_rps:>15.1f}{p_rps:>12.1f}{c_rps / p_rps:>7.1f}×"
                  f"   ({c_mb:.0f} vs {p_mb:.0f} MB/s)")  # fmt: skip
    finally:
        for proc in (carteco, peer):
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main()
