"""Reconciliation benchmark: a SIRENE StockEtablissement-format file against a small registry.

    .venv/bin/python bench/reconcile/run.py                     # 1,000,000 rows, 3,000 structures
    .venv/bin/python bench/reconcile/run.py --n 100000 --registry 3000

Data: SYNTHETIC. A registry of `--registry` structures (Luhn-valid SIRETs, real Île-de-France
communes and postcodes, points near their centre) is written straight into a bench database
(`carteco_bench_reconcile`, created on the test server, reference layers loaded). The file has
`--n` rows in the exact 54-column layout of INSEE's StockEtablissement_utf8.csv (header as
published): every registry SIRET once, at random places — 2 % closed (état F, dateDebut),
2 % moved to another commune, the rest at their registry address in SIRENE's spelling — and
otherwise establishments with random SIRETs and addresses, A or F, realistic values in every
column (NAF codes, staff bands, dates, street types, INSEE codes). Not timed: generating it.

Timed: `carteco reconcile sirene` itself (`reconcile_file` with the local geocoder, one
transaction, committed), run in a child process; printed: wall time, rows/s, the child's peak
RSS (getrusage of the child) and the counts. Goal (issue #12): under 60 s and 500 MB for
1 M rows. The machine is shared: `uptime` is printed with the result.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.synthetic import siret  # noqa: E402
from carteco import db  # noqa: E402
from carteco.reconcile.formats import ETABLISSEMENT_COLUMNS  # noqa: E402

ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
DB_NAME = "carteco_bench_reconcile"
# Real communes of Île-de-France: INSEE code, postcode, name, centre (lon, lat).
COMMUNES = (
    ("75111", "75011", "PARIS 11", 2.3800, 48.8590),
    ("75120", "75020", "PARIS 20", 2.3984, 48.8634),
    ("93048", "93100", "MONTREUIL", 2.4430, 48.8638),
    ("93066", "93200", "SAINT-DENIS", 2.3571, 48.9362),
    ("94041", "94200", "IVRY-SUR-SEINE", 2.3874, 48.8131),
    ("92040", "92130", "ISSY-LES-MOULINEAUX", 2.2700, 48.8245),
    ("78646", "78000", "VERSAILLES", 2.1301, 48.8049),
    ("91228", "91000", "EVRY-COURCOURONNES", 2.4410, 48.6290),
)
STREETS = (
    ("RUE", "DE LA REPUBLIQUE"),
    ("AV", "JEAN JAURES"),
    ("BD", "VOLTAIRE"),
    ("PL", "DE LA MAIRIE"),
    ("RUE", "VICTOR HUGO"),
    ("ALL", "DES TILLEULS"),
    ("CHE", "DU MOULIN"),
    ("IMP", "DES LILAS"),
    ("RTE", "DE PARIS"),
    ("RUE", "PASTEUR"),
)
NAF = ("88.99B", "94.99Z", "56.10A", "47.11F", "85.59A", "62.01Z", "43.21A", "96.02A")
TRANCHES = ("NN", "00", "01", "02", "03", "11", "12", "21", "22")


def admin() -> sa.Engine:
    """AUTOCOMMIT engine on the maintenance database."""
    return sa.create_engine(db.normalise_url(ADMIN_URL), isolation_level="AUTOCOMMIT")


def prepare_database() -> str:
    """The bench database, migrated, with reference layers (created once, then reused)."""
    url = db.normalise_url(ADMIN_URL).rsplit("/", 1)[0] + "/" + DB_NAME
    eng = admin()
    with eng.connect() as conn:
        exists = conn.execute(
            sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": DB_NAME}
        ).scalar()
        if not exists:
            conn.execute(sa.text(f'CREATE DATABASE "{DB_NAME}"'))
    eng.dispose()
    e = sa.create_engine(url)
    with e.begin() as conn:
        conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS postgis"))
    db.upgrade(url)
    with e.begin() as conn:
        loaded = conn.execute(sa.text("SELECT count(*) FROM territories")).scalar_one()
    if not loaded:
        from geodata.loader import load_all

        with e.begin() as conn:
            load_all(conn)
    e.dispose()
    return url


def registry(rnd: random.Random, n: int) -> list[dict[str, Any]]:
    """N synthetic structures with SIRET, address and point."""
    out = []
    for i in range(n):
        code, pc, name, lon, lat = rnd.choice(COMMUNES)
        kind, street = rnd.choice(STREETS)
        num = str(rnd.randint(1, 150))
        out.append(
            {
                "siret": siret(rnd),
                "name": f"Structure synthétique {i}",
                "num": num,
                "kind": kind,
                "street": street,
                "address_line": f"{num} {kind} {street}",
                "postcode": pc,
                "commune_name": name,
                "insee_code": code,
                "lon": lon + rnd.uniform(-0.01, 0.01),
                "lat": lat + rnd.uniform(-0.01, 0.01),
            }
        )
    return out


def load_registry(url: str, rows: list[dict[str, Any]]) -> None:
    """Replace the bench registry with `rows`."""
    e = sa.create_engine(url)
    with e.begin() as conn:
        conn.execute(
            sa.text(
                "TRUNCATE structures, structure_sources, proposals, reconcile_runs "
                "RESTART IDENTITY CASCADE"
            )
        )
        conn.execute(
            sa.text(
                """
                INSERT INTO structures (siret, siren, name, address_line, postcode, commune_name,
                    insee_code, geom, location_precision, source, source_id, content_hash)
                SELECT r.siret, left(r.siret, 9), r.name, r.address_line, r.postcode,
                       r.commune_name, r.insee_code, ST_SetSRID(ST_MakePoint(r.lon, r.lat), 4326),
                       'provided', 'bench', r.siret, md5(r.siret)
                  FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(siret text, name text,
                       address_line text, postcode text, commune_name text, insee_code text,
                       lon float8, lat float8)
                """
            ),
            {"rows": json.dumps(rows)},
        )
        conn.execute(sa.text("ANALYZE structures"))
    e.dispose()


def write_stock(
    path: Path, rnd: random.Random, n: int, reg: list[dict[str, Any]]
) -> dict[str, int]:
    """The StockEtablissement-format file; the scenario's counts."""
    index = {c: i for i, c in enumerate(ETABLISSEMENT_COLUMNS)}
    width = len(ETABLISSEMENT_COLUMNS)
    places = dict(zip(rnd.sample(range(n), len(reg)), reg, strict=True))
    plan = {"closed": 0, "moved": 0, "same": 0}

    def row(
        s: str, num: str, kind: str, street: str, commune: tuple[Any, ...], state: str
    ) -> list[str]:
        code, pc, name, _, _ = commune
        r = [""] * width
        tranche = rnd.choice(TRANCHES)
        naf = rnd.choice(NAF)
        created = f"{rnd.randint(1970, 2024)}-{rnd.randint(1, 12):02d}-{rnd.randint(1, 28):02d}"
        values = {
            "siren": s[:9],
            "nic": s[9:],
            "siret": s,
            "statutDiffusionEtablissement": "O",
            "dateCreationEtablissement": created,
            "trancheEffectifsEtablissement": tranche,
            "anneeEffectifsEtablissement": "" if tranche == "NN" else "2022",
            "dateDernierTraitementEtablissement": "2025-03-04T10:12:45",
            "etablissementSiege": rnd.choice(("true", "false")),
            "nombrePeriodesEtablissement": str(rnd.randint(1, 6)),
            "numeroVoieEtablissement": num,
            "typeVoieEtablissement": kind,
            "libelleVoieEtablissement": street,
            "codePostalEtablissement": pc,
            "libelleCommuneEtablissement": name,
            "codeCommuneEtablissement": code,
            "identifiantAdresseEtablissement": f"{code}_{rnd.randint(1000, 9999)}_{num:0>5}",
            "coordonneeLambertAbscisseEtablissement": f"{rnd.uniform(640000, 670000):.1f}",
            "coordonneeLambertOrdonneeEtablissement": f"{rnd.uniform(6850000, 6880000):.1f}",
            "dateDebut": f"{rnd.randint(2008, 2025)}-{rnd.randint(1, 12):02d}-01",
            "etatAdministratifEtablissement": state,
            "activitePrincipaleEtablissement": naf,
            "nomenclatureActivitePrincipaleEtablissement": "NAFRev2",
            "caractereEmployeurEtablissement": "N" if tranche in ("NN", "00") else "O",
            "activitePrincipaleNAF25Etablissement": naf,
        }
        for k, v in values.items():
            r[index[k]] = v
        return r

    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(ETABLISSEMENT_COLUMNS)
        batch = []
        for i in range(n):
            s = places.get(i)
            if s is None:
                kind, street = rnd.choice(STREETS)
                state = "F" if rnd.random() < 0.3 else "A"
                batch.append(row(siret(rnd), str(rnd.randint(1, 200)), kind, street,
                                 rnd.choice(COMMUNES), state))  # fmt: skip
            else:
                commune = next(c for c in COMMUNES if c[0] == s["insee_code"])
                draw = rnd.random()
                if draw < 0.02:
                    plan["closed"] += 1
                    batch.append(row(s["siret"], s["num"], s["kind"], s["street"], commune, "F"))
                elif draw < 0.04:
                    plan["moved"] += 1
                    other = rnd.choice([c for c in COMMUNES if c != commune])
                    batch.append(row(s["siret"], "7", "RUE", "DE LA GARE", other, "A"))
                else:
                    plan["same"] += 1
                    batch.append(row(s["siret"], s["num"], s["kind"], s["street"], commune, "A"))
            if len(batch) >= 10000:
                w.writerows(batch)
                batch = []
        w.writerows(batch)
    return plan


def worker(url: str, path: Path) -> None:
    """Run the reconciliation (timed) and print its result as JSON."""
    from carteco.geocoding.backends import LocalBackend
    from carteco.reconcile import SIRENE_KINDS, reconcile_file

    engine = sa.create_engine(url)
    t0 = time.perf_counter()
    report = reconcile_file(engine, path, SIRENE_KINDS, LocalBackend(engine))
    seconds = time.perf_counter() - t0
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": seconds, "peak_mb": peak_kb / 1024, "status": report.status,
                      "rows": report.rows_read, "matched": report.matched_rows,
                      "counts": report.counts, "rejected": report.errors_total}))  # fmt: skip


def main() -> None:
    """Generate, run once in a child process, print the figures."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000, help="rows of the stock file")
    ap.add_argument("--registry", type=int, default=3000, help="structures in the registry")
    ap.add_argument("--seed", type=int, default=12)
    ap.add_argument("--file", type=Path, help="keep the generated file here (default: temp)")
    ap.add_argument("--worker", nargs=2, metavar=("URL", "FILE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker[0], Path(args.worker[1]))
        return
    rnd = random.Random(args.seed)
    url = prepare_database()
    reg = registry(rnd, args.registry)
    load_registry(url, reg)
    with tempfile.TemporaryDirectory(prefix="carteco-bench-reconcile-") as tmp:
        path = args.file or Path(tmp) / "StockEtablissement_utf8.csv"
        t0 = time.perf_counter()
        plan = write_stock(path, rnd, args.n, reg)
        size = path.stat().st_size
        print(f"generated {args.n} rows ({size / 1e6:.0f} MB) in {time.perf_counter() - t0:.0f} s;"
              f" registry {len(reg)} structures; planted {plan}")  # fmt: skip
        proc = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--worker", url, str(path)],
            capture_output=True, text=True, check=False, cwd=ROOT,
        )  # fmt: skip
        child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if proc.returncode != 0:
        print(proc.stderr)
        raise SystemExit(proc.returncode)
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    uptime = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    c = res["counts"]
    print(
        f"reconcile sirene: {res['rows']} rows in {res['seconds']:.1f} s "
        f"({res['rows'] / res['seconds']:,.0f} rows/s), peak RSS {child_kb / 1024:.0f} MB "
        f"(goal < 60 s, < 500 MB)\n"
        f"  matched {res['matched']} · closed {c['closed']} (planted {plan['closed']}) · "
        f"moves proposed {c['moved']} (planted {plan['moved']}) · unchanged {c['unchanged']} · "
        f"rejected {res['rejected']} · status {res['status']}\n"
        f"  uptime: {uptime}"
    )
    ok_moves = c["moved"] == plan["moved"] and c["closed"] == plan["closed"]
    if not ok_moves:
        print("  MISMATCH between planted and found closures/moves")
        raise SystemExit(1)


if __name__ == "__main__":
    main()
