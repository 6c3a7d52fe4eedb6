"""Build the Île-de-France contrats de ville layer shipped in `geodata/data/` from the ANCT file.

Input: one point per contrat de ville published by the ANCT in its Ci.Ville application
(github anct-carto/ci-ville, `src/assets/geom_cv_ctr.json`, CRS84; properties code_cv, lib_cv
prefixed with the département, insee_dep, codgeo, pop). The codes are cleaned — the older
`cv_geom.json` of the same repository holds codes such as "CV047\\r\\n" or "CV072\\r\\nCV072\\r\\n":
each value is split on white space, stripped and deduplicated; a point left with two different
codes, or one code left on two different points, is ambiguous and dropped (printed). Each point
is placed in its département by the shipped IDF outlines; only the points inside Île-de-France
whose published département agrees are kept.

    python -m geodata.build_contrats_ville geom_cv_ctr.json

Output (rows ordered by code, coordinates rounded to 1e-6°: the bytes are reproducible):
`contrats_ville_idf_anct.geojson`, properties code_cv, lib_cv (without the département
prefix), code_dep, codgeo (SIREN of the EPCI or INSEE code of the commune, as published).
"""

from __future__ import annotations

import json
import re
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from shapely.geometry import Point, shape
from shapely.prepared import prep

from geodata.loader import DATA_DIR

OUT = DATA_DIR / "contrats_ville_idf_anct.geojson"
DEPARTEMENTS = DATA_DIR / "departements_idf_cog2026.geojson"
# "93 - CA Est Ensemble", "NA - CA de Bastia", "971 - Le Moule": the département prefix.
_PREFIX = re.compile(r"^\s*(?:\d[\dAB]\d?|NA)\s+-\s+")


def clean_codes(raw: Any) -> list[str]:
    """The distinct contrat de ville codes of one published value ("CV072\\r\\nCV072" → CV072)."""
    out: list[str] = []
    for part in str(raw or "").split():
        code = part.strip().upper()
        if code and code not in out:
            out.append(code)
    return out


def clean_name(raw: Any) -> str:
    """The name without the département prefix the ANCT adds ("93 - CA Est Ensemble")."""
    return " ".join(_PREFIX.sub("", str(raw or "")).split())


def build(features: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """The cleaned IDF features (sorted by code) and the reasons of each point left out."""
    deps = [
        (f["properties"]["code_dep"], prep(shape(f["geometry"])))
        for f in json.loads(DEPARTEMENTS.read_text(encoding="utf-8"))["features"]
    ]
    by_code: dict[str, list[dict[str, Any]]] = defaultdict(list)
    dropped: list[str] = []
    for f in features:
        p = f["properties"]
        codes = clean_codes(p.get("code_cv"))
        if len(codes) != 1:
            dropped.append(f"{p.get('code_cv')!r} {p.get('lib_cv')}: {len(codes)} codes")
            continue
        by_code[codes[0]].append(f)
    out = []
    for code, group in sorted(by_code.items()):
        points = {tuple(round(c, 6) for c in g["geometry"]["coordinates"]) for g in group}
        names = {clean_name(g["properties"].get("lib_cv")) for g in group}
        if len(points) > 1 or len(names) > 1:
            # One code on two different places (cv_geom.json: CV044 in Meuse and in Arles).
            dropped.append(f"{code}: {len(points)} points, noms {sorted(names)}")
            continue
        (lon, lat) = points.pop()
        pt = Point(lon, lat)
        dep = next((d for d, poly in deps if poly.contains(pt)), None)
        if dep is None:
            continue  # outside Île-de-France: not shipped
        published = {g["properties"].get("insee_dep") for g in group} - {None}
        if published and dep not in published:
            dropped.append(f"{code}: point dans le {dep}, publié pour {sorted(published)}")
            continue
        props = {
            "code_cv": code,
            "lib_cv": names.pop(),
            "code_dep": dep,
            "codgeo": group[0]["properties"].get("codgeo"),
        }
        out.append(
            {
                "type": "Feature",
                "properties": props,
                "geometry": {"type": "Point", "coordinates": [lon, lat]},
            }
        )
    return out, dropped


def main(argv: list[str]) -> int:
    """Command line: read the ANCT GeoJSON, write the IDF layer, print what was left out."""
    src = Path(argv[1])
    features, dropped = build(json.loads(src.read_text(encoding="utf-8"))["features"])
    doc = {
        "type": "FeatureCollection",
        "name": "contrats_ville_idf_anct",
        "features": features,
    }
    text = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
    # One feature a line: a readable diff when the ANCT republishes the file.
    text = text.replace('},{"type":"Feature"', '},\n{"type":"Feature"')
    OUT.write_text(text + "\n", encoding="utf-8")
    print(f"{OUT.name}: {len(features)} contrats de ville")
    for reason in dropped:
        print(f"écarté : {reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
