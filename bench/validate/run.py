"""Import row validation benchmark: the current validator against an older commit's, one run.

    .venv/bin/python bench/validate/run.py                  # 20,000 synthetic rows vs ee9cb8f
    .venv/bin/python bench/validate/run.py --n 100000 --old ee9cb8f --repeat 5

Data: N SYNTHETIC rows in the shape of tests/test_faults.py's synthetic file, as a `;` CSV
with the columns nom;siret;adresse;code postal;commune;latitude;longitude;secteur:
Luhn-valid SIRETs, points in Île-de-France, sector labels of the taxonomy. The old code is
taken from git (`git archive <commit> carteco` into a temporary directory). Each side runs in
its own subprocess with the same script (`--worker`): the file is read with that side's own
reader and mapping (not timed), then `RowValidator.validate` is timed over every row. Old and
new alternate, `--repeat` times each; the best run of each side is reported (the machine is
shared: the best run is the least disturbed one); times are the process's CPU time (wall time
shown too), which other processes on a loaded machine disturb far less. Pure Python: no
database needed.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # run as a script: `python bench/validate/run.py`

from bench.synthetic import siret as synthetic_siret  # noqa: E402

HEADER = ["nom", "siret", "adresse", "code postal", "commune", "latitude", "longitude", "secteur"]
SECTORS = ("Réemploi", "Réparation", "Recyclerie / Ressourcerie", "Circuits courts", "Collecte")
COMMUNES = (
    ("75011", "Paris"),
    ("93100", "Montreuil"),
    ("92130", "Issy-les-Moulineaux"),
    ("94200", "Ivry-sur-Seine"),
    ("78000", "Versailles"),
)


def write_csv(path: Path, n: int, seed: int = 7) -> None:
    """N synthetic rows, `;`-separated, UTF-8."""
    rnd = random.Random(seed)
    lines = [";".join(HEADER)]
    for i in range(n):
        postcode, commune = rnd.choice(COMMUNES)
        lines.append(
            ";".join(
                [
                    f"Structure synthétique {i}",
                    synthetic_siret(rnd),
                    f"{rnd.randint(1, 200)} rue de la République",
                    postcode,
                    commune,
                    f"{48.6 + rnd.random() * 0.5:.6f}",
                    f"{2.0 + rnd.random() * 0.8:.6f}",
                    rnd.choice(SECTORS),
                ]
            )
        )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def worker(code_root: str, csv_path: str) -> dict[str, Any]:
    """Time the validation of every row of `csv_path` with the `carteco` package of code_root."""
    sys.path.insert(0, code_root)
    from carteco.importer.mapping import Mapping
    from carteco.importer.readers import read_table
    from carteco.importer.validate import RowValidator
    from carteco.sectors import load_taxonomy

    path = Path(csv_path)
    table = read_table(path)
    mapping = Mapping()
    columns = mapping.resolve(path.name, table.headers)
    validator = RowValidator(mapping, columns, load_taxonomy())
    rejected = 0
    start, cpu_start = time.perf_counter(), time.process_time()
    for row in table.rows:
        _, errs = validator.validate(row)
        rejected += bool(errs)
    cpu = time.process_time() - cpu_start
    seconds = time.perf_counter() - start
    return {"rows": len(table.rows), "seconds": cpu, "wall": seconds, "rejected": rejected}


def _run_worker(code_root: Path, csv_path: Path) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--worker", str(code_root), str(csv_path)],
        capture_output=True,
        text=True,
        cwd=code_root,
    )
    if out.returncode:
        sys.exit(f"worker failed for {code_root}:\n{out.stderr}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _extract(commit: str, dest: Path) -> None:
    """The `carteco` package of `commit`, written under dest."""
    blob = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", commit, "carteco"],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=BytesIO(blob)) as tar:
        tar.extractall(dest, filter="data")


def main() -> None:
    """Generate the rows, time both validators, print rows/s and the ratio."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=20_000, help="synthetic rows (default 20,000)")
    ap.add_argument("--old", default="ee9cb8f", help="commit to compare with (default ee9cb8f)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each side (best kept)")
    ap.add_argument("--worker", nargs=2, metavar=("CODE_ROOT", "CSV"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker)))
        return
    with tempfile.TemporaryDirectory(prefix="carteco-bench-validate-") as tmp:
        old_root = Path(tmp) / "old"
        _extract(args.old, old_root)
        csv_path = Path(tmp) / "synthetique.csv"
        write_csv(csv_path, args.n)
        best: dict[str, dict[str, Any]] = {}
        for _ in range(args.repeat):
            for side, root in (("old", old_root), ("new", ROOT)):
                res = _run_worker(root, csv_path)
                if side not in best or res["seconds"] < best[side]["seconds"]:
                    best[side] = res
    for side, label in (("old", f"old ({args.old})"), ("new", "new (working tree)")):
        r = best[side]
        print(
            f"{label:<22} {r['rows']:>8,} rows  {r['seconds']:7.3f} s CPU ({r['wall']:.3f} wall)  "
            f"{r['rows'] / r['seconds']:>9,.0f} rows/s  rejected {r['rejected']}"
        )
    ratio = best["old"]["seconds"] / best["new"]["seconds"]
    print(f"new / old speed: {ratio:.2f}x")
    if best["old"]["rejected"] or best["new"]["rejected"]:
        print("warning: rows were rejected: the sides did not do the same work", file=sys.stderr)


if __name__ == "__main__":
    main()
