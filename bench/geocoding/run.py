"""Carteco's local geocoder vs addok 1.3 (BAN configuration): same reference, same noisy
queries, same machine, one run.

    CARTECO_DATABASE_URL=postgresql://… .venv/bin/python -m bench.geocoding.run [--n 40]

The database must be migrated with the geodata loaded (`carteco db upgrade && carteco geodata
load`). The reference (BAL Mont-Bonvillers + the médiation numérique addresses with their
confusers, bench.geocoding.corpus) is loaded into both engines; the queries are the corpus's
22 kinds of noise, tuning and held-out parts. Printed: single-worker queries/s and p99 (one
query at a time, in-process, one thread each), rows/s of Carteco's /ban/search/csv/ route,
and the share of answers within 50 m per kind of noise. addok (the `bench` extra) uses Redis on
127.0.0.1:6379, databases 9 and 10 (reset by this script).
"""

from __future__ import annotations

import argparse
import collections
import csv
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from bench.geocoding.corpus import KINDS, corpus, write_reference
from bench.geocoding.noise import metres
from carteco import db
from carteco.geocoding.engine import LocalGeocoder
from carteco.geocoding.reference import load_addresses
from carteco.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "tests" / "fixtures" / "geocoding"
BAL = FIX / "bal_54084_mont-bonvillers.csv"
BAN = FIX / "adresses-mediation-cnfs-2022.csv"
CONFIG = Path(__file__).with_name("addok_config.py")


def addok_documents(engine: sa.Engine) -> list[dict[str, object]]:
    """The reference as addok documents (streets with their housenumbers, municipalities)."""
    docs: list[dict[str, object]] = []
    with engine.connect() as conn:
        streets = conn.execute(
            sa.text(
                "SELECT s.id, s.street, s.postcode, s.insee_code, s.commune, ST_X(s.geom), "
                "ST_Y(s.geom), json_object_agg(a.number::text || coalesce(a.suffix, ''), "
                "json_build_object('lon', ST_X(a.geom), 'lat', ST_Y(a.geom))) "
                "FILTER (WHERE a.number IS NOT NULL) "
                "FROM geo_streets s JOIN geo_addresses a ON a.street_id = s.id "
                "GROUP BY s.id ORDER BY s.id"
            )
        ).all()
        for sid, name, pc, code, city, lon, lat, hns in streets:
            docs.append({"id": f"s{sid}", "type": "street", "name": name, "postcode": pc,
                         "citycode": code, "city": city, "lon": lon, "lat": lat,
                         "importance": 0.5, "housenumbers": hns or {}})  # fmt: skip
        communes = conn.execute(
            sa.text(
                "SELECT g.code, g.name, g.postcodes[1], ST_X(g.geom), ST_Y(g.geom) "
                "FROM geo_communes g WHERE g.geom IS NOT NULL AND g.kind <> 'ancienne' "
                "AND g.code IN (SELECT insee_code FROM geo_streets) ORDER BY g.code"
            )
        ).all()
        for code, name, pc, lon, lat in communes:
            docs.append({"id": code, "type": "municipality", "name": name, "postcode": pc,
                         "citycode": code, "city": name, "lon": lon, "lat": lat,
                         "importance": 0.6})  # fmt: skip
    return docs


def run_addok(
    docs: list[dict[str, object]], texts: list[str]
) -> tuple[list, float, list[float]] | str:
    """Index the documents, then geocode the texts; (results, seconds) or why it could not run."""
    env = {**os.environ, "ADDOK_CONFIG_MODULE": str(CONFIG)}
    addok_cmd = [str(Path(sys.executable).parent / "addok")]
    try:
        import addok  # noqa: F401
    except ImportError:
        return "addok n'est pas installé (pip install addok addok-fr addok-france)"
    with tempfile.NamedTemporaryFile("w", suffix=".ndjson", delete=False) as fh:
        for d in docs:
            fh.write(json.dumps(d, ensure_ascii=False) + "\n")
        path = fh.name
    for args in (["reset", "--force"], ["batch", path], ["ngrams"]):
        p = subprocess.run([*addok_cmd, *args], env=env, capture_output=True, text=True)
        if p.returncode != 0:
            return f"addok {args[0]} a échoué : {p.stderr.strip()[-300:]}"
    os.environ["ADDOK_CONFIG_MODULE"] = str(CONFIG)
    from addok.config import config
    from addok.core import search

    config.load()
    results, lat = [], []
    t = time.perf_counter()
    for q in texts:
        t1 = time.perf_counter()
        results.append((search(q, limit=1) or [None])[0])
        lat.append(time.perf_counter() - t1)
    return results, time.perf_counter() - t, lat


def _p99(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * 0.99))] if xs else 0.0


def carteco_csv(texts: list[str]) -> tuple[list[tuple[float, float] | None], float]:
    """All queries through Carteco's /ban/search/csv/ (the whole HTTP route, in-process)."""
    from fastapi.testclient import TestClient

    from api.factory import create_app

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["q"])
    w.writerows([t] for t in texts)
    # The whole file is one request: the per-request timeout is not what is measured.
    with TestClient(create_app(Settings(request_timeout_s=3600))) as client:
        t = time.perf_counter()
        r = client.post(
            "/ban/search/csv/",
            files={"data": ("q.csv", buf.getvalue().encode(), "text/csv")},
            data={"columns": ["q"]},
        )
        secs = time.perf_counter() - t
    r.raise_for_status()
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8"))))
    pts = [(float(x["longitude"]), float(x["latitude"])) if x["latitude"] else None for x in rows]
    return pts, secs


def main() -> None:
    """Run both engines and print their figures side by side."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=40, help="requêtes par type de bruit et partie")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument(
        "--reference",
        choices=("confusers", "fixtures"),
        default="confusers",
        help="référence avec leurres (~20 000 adresses) ou fixtures seules (rapide)",
    )
    args = ap.parse_args()
    engine = db.make_engine(Settings())
    files = [BAL, BAN]
    if args.reference == "confusers":
        ref = Path(tempfile.mkdtemp()) / "reference-leurres.csv"
        write_reference(ref)
        files = [BAL, ref]
    with engine.begin() as conn:
        load_addresses(conn, files)
    triples = [
        (f"{part}:{kind}", q, a)
        for part in ("tuning", "heldout")
        for kind, q, a in corpus(part, args.n, seed=args.seed)
    ]
    texts = [q for _, q, _ in triples]
    n = len(texts)

    # Single worker, one query at a time (latency per query), then the CSV batch route.
    lat: dict[str, list[float]] = {"carteco": [], "addok": []}
    points: dict[str, list[tuple[float, float] | None]] = {"carteco": []}
    with engine.connect() as conn:
        g = LocalGeocoder(conn)
        g.search(texts[0], limit=1)  # warm the commune index
        for q in texts:
            t = time.perf_counter()
            res = g.search(q, limit=1)
            lat["carteco"].append(time.perf_counter() - t)
            points["carteco"].append((res[0].lon, res[0].lat) if res else None)
    csv_pts, csv_secs = carteco_csv(texts)
    rows_s = {"carteco": n / csv_secs}

    docs = addok_documents(engine)
    got = run_addok(docs, texts)
    if isinstance(got, str):
        print(f"addok : NON MESURÉ — {got}")
        lat.pop("addok")
    else:
        res_a, _secs, lat_a = got
        points["addok"] = [(r.lon, r.lat) if r else None for r in res_a]
        lat["addok"] = lat_a
        # addok has no /search/csv/ without the addok-csv plugin: its batch is the same loop.
        rows_s["addok"] = n / sum(lat_a)

    print(f"\n{n} requêtes bruitées ({args.n} par type et partie), référence {args.reference}")
    print(f"{'':28s}" + "".join(f"{k:>12s}" for k in points))
    print(f"{'adresses/s (1 worker)':28s}" + "".join(f"{n / sum(lat[k]):12.0f}" for k in points))
    print(f"{'p99 ms':28s}" + "".join(f"{_p99(lat[k]) * 1000:12.1f}" for k in points))
    print(f"{'lignes/s (lot CSV)':28s}" + "".join(f"{rows_s[k]:12.0f}" for k in points))
    rates: dict[str, dict[str, float]] = {}
    for name, pts in points.items():
        ok: collections.Counter[str] = collections.Counter()
        tot: collections.Counter[str] = collections.Counter()
        for (kind, _, a), p in zip(triples, pts, strict=True):
            for key in (kind, kind.split(":")[0] + ":ALL", "ALL"):
                tot[key] += 1
                if p and metres(p[0], p[1], a.lon, a.lat) <= 50:
                    ok[key] += 1
        rates[name] = {k: ok[k] / tot[k] for k in tot}
    csv_ok = sum(
        1
        for (_, _, a), p in zip(triples, csv_pts, strict=True)
        if p and metres(p[0], p[1], a.lon, a.lat) <= 50
    )
    kinds = [f"{part}:{k}" for part in ("tuning", "heldout") for k in (*KINDS, "ALL")]
    for kind in [*kinds, "ALL"]:
        if kind in rates["carteco"]:
            print(f"{'≤50 m ' + kind:28s}" + "".join(f"{rates[k][kind]:12.1%}" for k in points))
    print(f"{'≤50 m ALL (CSV carteco)':28s}{csv_ok / n:12.1%}")
    if "addok" in points:
        q_ratio = sum(lat["addok"]) / sum(lat["carteco"])
        print(
            f"\nratios carteco/addok : requêtes/s ×{q_ratio:.2f}, "
            f"lignes/s ×{rows_s['carteco'] / rows_s['addok']:.2f}, "
            f"précision {rates['carteco']['ALL'] / max(rates['addok']['ALL'], 1e-9):.3f}"
        )


if __name__ == "__main__":
    main()
