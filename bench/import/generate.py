"""A realistic structure list for import benchmarks and tests: points inside IDF communes.

Columns `nom;siret;adresse;code postal;commune;latitude;longitude;secteur`, Luhn-valid SIRETs,
one row in 200 without coordinates. Written in chunks: memory does not grow with the rows.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import shapely

from carteco.sectors import load_taxonomy

ROOT = Path(__file__).resolve().parents[2]
COMMUNES = ROOT / "geodata" / "data" / "communes_idf_cog2026.geojson"
HEADER = "nom;siret;adresse;code postal;commune;latitude;longitude;secteur\n"
_KINDS = ("Association", "SCOP", "SCIC", "Coopérative", "Fondation", "Mutuelle", "Ressourcerie")
_WORDS = ("Les Jardins", "Le Relais", "La Fabrique", "L'Atelier", "Terre", "Solidarité", "Envol")
_STREETS = ("rue de la Paix", "avenue Jean Jaurès", "boulevard Voltaire", "place de la Mairie")


def luhn_siret(n: int) -> str:
    """A 14-digit SIRET whose last digit makes the Luhn sum a multiple of 10."""
    body = f"{n:013d}"
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:  # doubled: the check digit will be position 0
            d *= 2
            d -= 9 if d > 9 else 0
        total += d
    return body + str((10 - total % 10) % 10)


def _communes() -> tuple[list[shapely.Geometry], list[tuple[str, str]]]:
    doc = json.loads(COMMUNES.read_text())
    geoms, info = [], []
    for f in doc["features"]:
        p = f["properties"]
        geoms.append(shapely.geometry.shape(f["geometry"]))
        info.append((p["nom"], (p.get("codes_postaux") or "75001").split("|")[0]))
    return geoms, info


def generate(path: Path, rows: int, seed: int = 17) -> Path:
    """Write `rows` data rows to `path` (CSV, ';'); return the path."""
    rnd = random.Random(seed)
    rng = np.random.default_rng(seed)
    geoms, info = _communes()
    labels = [n.label for n in load_taxonomy().nodes]
    tree = shapely.STRtree(geoms)
    minx, miny, maxx, maxy = shapely.total_bounds(np.array(geoms))
    with path.open("w", encoding="utf-8", newline="") as f:
        f.write(HEADER)
        done = 0
        while done < rows:
            n = min(50_000, rows - done)
            xs = rng.uniform(minx, maxx, n * 3)
            ys = rng.uniform(miny, maxy, n * 3)
            pts = shapely.points(xs, ys)
            pi, gi = tree.query(pts, predicate="within")
            _, first = np.unique(pi, return_index=True)
            pi, gi = pi[first][:n], gi[first][:n]
            lines = []
            for k, (p, g) in enumerate(zip(pi, gi, strict=True)):
                i = done + k
                name, cp = info[g]
                nom = f"{rnd.choice(_KINDS)} {rnd.choice(_WORDS)} {i}"
                addr = f"{rnd.randint(1, 200)} {rnd.choice(_STREETS)}"
                if i % 200 == 199:
                    lat = lon = ""
                else:
                    lat, lon = f"{ys[p]:.6f}", f"{xs[p]:.6f}"
                sect = rnd.choice(labels)
                lines.append(f"{nom};{luhn_siret(i + 1)};{addr};{cp};{name};{lat};{lon};{sect}\n")
            f.writelines(lines)
            done += len(lines)
    return path
