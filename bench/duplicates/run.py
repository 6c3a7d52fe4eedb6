"""Duplicate detection benchmark: N synthetic structures with 1 % planted duplicates.

    .venv/bin/python bench/duplicates/run.py              # 50,000 structures (development)
    .venv/bin/python bench/duplicates/run.py --n 1000000  # the figure of issue #12

A throwaway PostGIS database is created (and dropped), migrated, and filled by COPY (not
timed): structures clustered around synthetic towns whose sizes follow a Zipf law (the
density of the largest ones is that of a big French city's ESS establishments), names built
from an activity and a proper name ("Ressourcerie La Bravelune"), some with a SIRET or a
website. 1 % of the rows are planted duplicates of distinct originals, each with one to three
realistic variations: a legal form added (ASSOCIATION, SARL, SCOP…), accents dropped, a typo
(one letter replaced, dropped or swapped), the point moved by less than 50 m, another source
(else the same source under another id). The timed part is `carteco.duplicates.list_duplicates`
over the whole registry (name-and-place blocks in numpy, equality blocks and features in
SQL, scoring in Python), with the seconds of each phase. Precision and recall count the pairs
found at the default threshold against the planted ones.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import time
import unicodedata
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.synthetic import siret  # noqa: E402
from carteco import db  # noqa: E402
from carteco.duplicates import DEFAULT_MIN_SCORE, list_duplicates  # noqa: E402

ACTIVITIES = (
    "Ressourcerie", "Épicerie solidaire", "Jardin partagé", "AMAP", "Recyclerie",
    "Café associatif", "Atelier vélo", "Maison de quartier", "Crèche parentale",
    "Garage solidaire", "Repair café", "Tiers-lieu", "Boutique solidaire",
    "Chantier d'insertion", "Régie de quartier", "Entreprise d'insertion", "Friperie",
    "Coopérative d'activités", "Centre social", "Ludothèque", "Librairie coopérative",
    "Cinéma associatif", "Banque alimentaire", "Espace de vie sociale", "Fab lab",
)  # fmt: skip
SYLLABLES = (
    "bra", "ve", "lune", "ker", "bou", "vel", "mar", "tin", "ro", "sé", "lia", "po", "mé",
    "ran", "cor", "dé", "lis", "fon", "ta", "nè", "gri", "sol", "va", "ché", "mi", "tou",
    "ar", "bel", "chê", "nay", "pré", "lou", "zé", "quin", "ga", "ré", "dor", "fleu", "ju",
)  # fmt: skip
ARTICLES = ("", "", "La ", "Le ", "Les ", "L'", "de la ", "du ", "des ")
FORMS = ("ASSOCIATION ", "Association ", "SCOP ", "SCIC ", "ASSOC ", " SARL", " SAS", " SCOP")
SOURCES = ("reseau-a", "reseau-b", "reseau-c")
HEADER = (
    "name, source, source_id, content_hash, geom, insee_code, postcode, address_line, siret, "
    "website"
)


def proper_name(rnd: random.Random) -> str:
    """A made-up proper name of two to four syllables."""
    word = "".join(rnd.choice(SYLLABLES) for _ in range(rnd.randint(2, 4)))
    return word.capitalize()


def strip_accents(text: str) -> str:
    """The text without its accents."""
    return "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")


def typo(rnd: random.Random, text: str) -> str:
    """One letter replaced, dropped or swapped with the next (never the first letter)."""
    letters = [i for i, c in enumerate(text) if c.isalpha() and i > 0]
    if len(letters) < 3:
        return text
    i = rnd.choice(letters[:-1])
    kind = rnd.choice(("replace", "drop", "swap"))
    if kind == "replace":
        return text[:i] + rnd.choice("aeioulnrst") + text[i + 1 :]
    if kind == "drop":
        return text[:i] + text[i + 1 :]
    return text[:i] + text[i + 1] + text[i] + text[i + 2 :]


def towns(rnd: random.Random, n: int) -> list[tuple[float, float, float, str]]:
    """(lon, lat, spread in metres, INSEE code) of synthetic towns (one per 330 structures)."""
    out = []
    for k in range(max(3, n // 330)):
        lon, lat = rnd.uniform(-1.5, 7.0), rnd.uniform(43.5, 50.5)
        size = 1.0 / (k + 1)  # Zipf: the k-th town holds 1/k of the first one
        out.append((lon, lat, 400 + 6000 * math.sqrt(size), f"{10 + k % 85:02d}{k % 1000:03d}"))
    return out


def generate(n: int, seed: int) -> tuple[list[tuple[object, ...]], list[tuple[int, int]]]:
    """N rows (1 % planted duplicates) and the planted pairs as (original row, copy row)."""
    rnd = random.Random(seed)
    ts = towns(rnd, n)
    weights = [1.0 / (k + 1) for k in range(len(ts))]
    n_dup = n // 100
    rows: list[tuple[object, ...]] = []
    picks = rnd.choices(range(len(ts)), weights=weights, k=n - n_dup)
    for i, t in enumerate(picks):
        lon0, lat0, spread, insee = ts[t]
        r, a = abs(rnd.gauss(0, spread)), rnd.uniform(0, 2 * math.pi)
        lat = lat0 + r * math.sin(a) / 111_320
        lon = lon0 + r * math.cos(a) / (111_320 * math.cos(math.radians(lat0)))
        name = f"{rnd.choice(ACTIVITIES)} {rnd.choice(ARTICLES)}{proper_name(rnd)}"
        if rnd.random() < 0.3:
            name += f" {proper_name(rnd)}"
        web = (
            f"https://{strip_accents(name).lower().replace(' ', '-')}.fr"
            if rnd.random() < 0.2
            else None
        )  # noqa: E501
        rows.append(
            (
                name,
                rnd.choice(SOURCES),
                f"s{i}",
                "h",
                f"SRID=4326;POINT({lon:.7f} {lat:.7f})",
                insee,
                insee,
                f"{rnd.randint(1, 200)} rue {proper_name(rnd)}",
                siret(rnd) if rnd.random() < 0.4 else None,
                web,
            )
        )
    planted = []
    for j, orig in enumerate(rnd.sample(range(len(rows)), n_dup)):
        name, source, _, _, geom, insee, postcode, address, sir, web = rows[orig]
        variations = rnd.sample(("form", "accents", "typo", "moved", "source"), rnd.randint(1, 3))
        if "form" in variations:
            form = rnd.choice(FORMS)
            name = form + name if form.endswith(" ") else name + form
        if "accents" in variations:
            name = strip_accents(name)
        if "typo" in variations:
            name = typo(rnd, name)
        lonlat = str(geom).split("(")[1].rstrip(")").split()
        lon, lat = float(lonlat[0]), float(lonlat[1])
        if "moved" in variations:
            d, a = rnd.uniform(5, 49), rnd.uniform(0, 2 * math.pi)
            lat += d * math.sin(a) / 111_320
            lon += d * math.cos(a) / (111_320 * math.cos(math.radians(lat)))
        if "source" in variations:
            source = rnd.choice([s for s in SOURCES if s != source])
        # A second listing rarely repeats every identifier: half keep the SIRET, fewer the site.
        rows.append(
            (
                name,
                source,
                f"d{j}",
                "h",
                f"SRID=4326;POINT({lon:.7f} {lat:.7f})",
                insee,
                postcode,
                address if rnd.random() < 0.5 else None,
                sir if rnd.random() < 0.5 else None,
                web if rnd.random() < 0.3 else None,
            )
        )
        planted.append((orig, len(rows) - 1))
    return rows, planted


def create_database(admin_url: str) -> str:
    """A new empty PostGIS database; its URL."""
    name = f"carteco_bench_dupes_{os.getpid()}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = admin_url.rsplit("/", 1)[0] + "/" + name
    eng = sa.create_engine(url)
    with eng.begin() as conn:
        conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS postgis"))
    eng.dispose()
    return url


def drop_database(admin_url: str, url: str) -> None:
    """Drop the benchmark database."""
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)'))
    admin.dispose()


def load(url: str, rows: list[tuple[object, ...]]) -> list[int]:
    """COPY the rows into structures; their ids, in row order."""
    eng = sa.create_engine(url)
    with eng.begin() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cur:
            with cur.copy(f"COPY structures ({HEADER}) FROM STDIN") as copy:  # type: ignore[arg-type]
                for row in rows:
                    copy.write_row(row)
        ids = dict(
            conn.execute(sa.text("SELECT source || '/' || source_id, id FROM structures")).all()
        )  # noqa: E501
        conn.execute(sa.text("ANALYZE structures"))
    eng.dispose()
    return [int(ids[f"{r[1]}/{r[2]}"]) for r in rows]


def main() -> None:
    """Generate, load, detect, score."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--seed", type=int, default=12)
    ap.add_argument("--min-score", type=float, default=DEFAULT_MIN_SCORE)
    ap.add_argument(
        "--admin-url",
        default=os.environ.get(
            "CARTECO_BENCH_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
        ),  # noqa: E501
    )
    ap.add_argument("--keep", action="store_true", help="keep the database (its URL printed)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    rows, planted = generate(args.n, args.seed)
    url = create_database(args.admin_url)
    try:
        db.upgrade(url)
        ids = load(url, rows)
        t_load = time.perf_counter() - t0
        truth = {(min(ids[a], ids[b]), max(ids[a], ids[b])) for a, b in planted}
        eng = sa.create_engine(url)
        timings: dict[str, float] = {}
        print(f"uptime before   {os.getloadavg()[0]:>10.2f}  (load average, 1 min)", flush=True)
        t1 = time.perf_counter()
        with eng.begin() as conn:
            pairs = list_duplicates(conn, args.min_score, timings=timings)
        elapsed = time.perf_counter() - t1
        eng.dispose()
        found = {(p.a["id"], p.b["id"]) for p in pairs}
        tp = len(found & truth)
        precision = tp / len(found) if found else float("nan")
        recall = tp / len(truth) if truth else float("nan")
        print(f"structures      {len(rows):>10,}")
        print(f"planted pairs   {len(truth):>10,}")
        print(f"pairs found     {len(found):>10,}  (score >= {args.min_score})")
        print(f"true positives  {tp:>10,}")
        print(f"precision       {precision:>10.4f}")
        print(f"recall          {recall:>10.4f}")
        print(f"detection time  {elapsed:>10.1f} s  (generate + load {t_load:.0f} s, not timed)")
        for phase, seconds in timings.items():
            print(f"  {phase:<40} {seconds:>6.1f} s")
        print(f"uptime after    {os.getloadavg()[0]:>10.2f}  (load average, 1 min)")
        missed = sorted(truth - found)[:5]
        if missed:
            by_id = {i: r for i, r in zip(ids, rows, strict=True)}
            for a, b in missed:
                print(f"  missed: {by_id[a][0]!r} ~ {by_id[b][0]!r}")
        if args.keep:
            print(url)
    finally:
        if not args.keep:
            drop_database(args.admin_url, url)


if __name__ == "__main__":
    main()
