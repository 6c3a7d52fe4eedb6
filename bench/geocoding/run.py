"""Carteco's local geocoder vs addok, same reference, same 2,000 noisy queries, one run.

    CARTECO_DATABASE_URL=postgresql://… .venv/bin/python -m bench.geocoding.run [--n 2000]

The database must be migrated with the geodata loaded (`carteco db upgrade && carteco geodata
load`); the reference (BAL Mont-Bonvillers + médiation numérique CNFS addresses, in
tests/fixtures/geocoding) is loaded into both engines. addok (PyPI: addok, addok-fr,
addok-france) uses Redis on 127.0.0.1:6379, databases 9 and 10 (reset by this script).
Both engines are timed in batch, in-process, one thread each.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from bench.geocoding.noise import NOISE_KINDS, RefAddress, metres, queries, read_bal, read_ban
from carteco import db
from carteco.geocoding.backends import LocalBackend, Query
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


def run_addok(docs: list[dict[str, object]], texts: list[str]) -> tuple[list, float] | str:
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
    t = time.perf_counter()
    results = [(search(q, limit=1) or [None])[0] for q in texts]
    return results, time.perf_counter() - t


def main() -> None:
    """Run both engines and print their figures side by side."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    engine = db.make_engine(Settings())
    with engine.begin() as conn:
        load_addresses(conn, [BAL, BAN])
    refs: list[RefAddress] = read_bal(BAL, "54111") + read_ban(BAN)
    triples = list(queries(refs, args.n, seed=args.seed))
    texts = [q for _, q, _ in triples]

    t = time.perf_counter()
    carteco = LocalBackend(engine).geocode_batch([Query(q) for q in texts])
    carteco_s = time.perf_counter() - t
    points = {"carteco": [(r.lon, r.lat) if r else None for r in carteco]}
    seconds = {"carteco": carteco_s}

    docs = addok_documents(engine)
    got = run_addok(docs, texts)
    if isinstance(got, str):
        print(f"addok : NON MESURÉ — {got}")
    else:
        res, secs = got
        points["addok"] = [(r.lon, r.lat) if r else None for r in res]
        seconds["addok"] = secs

    print(f"\n{args.n} requêtes bruitées, référence {len(refs)} adresses, lot séquentiel")
    head = f"{'':16s}" + "".join(f"{k:>12s}" for k in points)
    print(head)
    rates: dict[str, dict[str, float]] = {}
    for engine_name, pts in points.items():
        ok: collections.Counter[str] = collections.Counter()
        tot: collections.Counter[str] = collections.Counter()
        for (kind, _, a), p in zip(triples, pts, strict=True):
            tot[kind] += 1
            if p and metres(p[0], p[1], a.lon, a.lat) <= 50:
                ok[kind] += 1
        rates[engine_name] = {k: ok[k] / tot[k] for k in tot}
        rates[engine_name]["ALL"] = sum(ok.values()) / sum(tot.values())
    print(f"{'adresses/s':16s}" + "".join(f"{args.n / seconds[k]:12.0f}" for k in points))
    for kind in (*NOISE_KINDS, "ALL"):
        print(f"{'≤50 m ' + kind:16s}" + "".join(f"{rates[k][kind]:12.1%}" for k in points))
    if "addok" in points:
        print(
            f"\nratios carteco/addok : débit ×{seconds['addok'] / seconds['carteco']:.2f}, "
            f"précision {rates['carteco']['ALL'] / max(rates['addok']['ALL'], 1e-9):.3f}"
        )


if __name__ == "__main__":
    main()
