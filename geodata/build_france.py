"""Build the France-wide commune and EPCI layers (COG 2026) shipped in `geodata/data/`.

Input: the 35,357 commune polygons of France in 2018 geography (gregoiredavid/france-geojson,
IGN ADMIN EXPRESS COG 2018 simplified) and `communes_france_cog2026.csv` (INSEE COG 2026,
DGCL EPCI). Each 2018 code is mapped to today's commune (itself, or the commune nouvelle whose
`anciens_codes` lists it), merged communes are dissolved, and EPCI outlines are dissolved from
their communes. Île-de-France communes are left out: the shipped IDF COG 2026 layer is finer.
The dissolves run in PostGIS (no new Python dependency), so a database URL is needed:

    python -m geodata.build_france SRC.geojson postgresql+psycopg://postgres@127.0.0.1/scratch

Outputs (gzip with a fixed mtime, rows ordered by code: the bytes are reproducible):
`communes_france_cog2026.csv.gz` and `epci_france_cog2026.csv.gz`, whose columns are the
`territories` columns and the outline as TWKB (precision 1e-5°, the source's own rounding),
base64. TWKB, not GeoJSON: PostGIS decodes the 2.1 million vertices in under a second where
parsing them as GeoJSON took 16 s on the test machine, and every test session loads them.
`ogr2ogr` or PostGIS (`ST_GeomFromTWKB(decode(geom_twkb, 'base64'))`) read them back.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import sys
from pathlib import Path

import sqlalchemy as sa

from carteco.db import normalise_url
from geodata.loader import DATA_DIR, _csv_rows

COMMUNES_OUT = DATA_DIR / "communes_france_cog2026.csv.gz"
EPCI_OUT = DATA_DIR / "epci_france_cog2026.csv.gz"
# The columns of the output files (the `territories` columns; lists joined with "|").
COLUMNS = (
    "level",
    "code",
    "name",
    "region_code",
    "departement_code",
    "epci_code",
    "population",
    "postcodes",
    "old_codes",
    "area_m2",
    "geom_twkb",
)
IDF_REGION = "11"

_PREPARE = """
CREATE TEMP TABLE raw_communes ON COMMIT DROP AS
SELECT f->'properties'->>'code' AS code_2018,
       ST_MakeValid(ST_SetSRID(ST_GeomFromGeoJSON(f->'geometry'), 4326)) AS g
  FROM jsonb_array_elements(CAST(:doc AS jsonb)->'features') f;

CREATE TEMP TABLE cog ON COMMIT DROP AS
SELECT * FROM jsonb_to_recordset(CAST(:cog AS jsonb)) AS r(code text, name text,
       departement_code text, region_code text, epci_code text, epci_name text,
       population integer, postcodes text[], old_codes text[]);

-- 2018 code → COG 2026 code: unchanged, or the commune nouvelle listing it as an old code.
CREATE TEMP TABLE mapped ON COMMIT DROP AS
SELECT coalesce(c.code, n.code) AS code, r.g
  FROM raw_communes r
  LEFT JOIN cog c ON c.code = r.code_2018
  LEFT JOIN (SELECT code, unnest(old_codes) AS old_code FROM cog) n
         ON c.code IS NULL AND n.old_code = r.code_2018;

CREATE TEMP TABLE dissolved ON COMMIT DROP AS
SELECT code,
       ST_Multi(ST_CollectionExtract(ST_MakeValid(ST_ReducePrecision(
           CASE WHEN count(*) = 1 THEN (array_agg(g))[1] ELSE ST_Union(g) END, 0.00001)), 3))
           AS g
  FROM mapped WHERE code IS NOT NULL GROUP BY code;
"""

_COMMUNES = """
SELECT 'commune' AS level, c.code, c.name, c.region_code, c.departement_code, c.epci_code,
       c.population, array_to_string(c.postcodes, '|') AS postcodes,
       array_to_string(c.old_codes, '|') AS old_codes, round(ST_Area(d.g::geography)) AS area_m2,
       translate(encode(ST_AsTWKB(d.g, 5), 'base64'), E'\n', '') AS geom_twkb,
       ST_IsValid(ST_GeomFromTWKB(ST_AsTWKB(d.g, 5))) AS valid
  FROM dissolved d JOIN cog c USING (code)
 WHERE c.region_code IS DISTINCT FROM :idf
 ORDER BY c.code
"""

# EPCI outlines from all their communes (IDF ones included: an EPCI may straddle the border),
# parents = the département and région holding most of the EPCI's population.
_EPCI = """
WITH m AS (
    SELECT c.epci_code, min(c.epci_name) AS name, sum(c.population) AS population,
           ST_Multi(ST_CollectionExtract(ST_MakeValid(ST_ReducePrecision(
               ST_Union(d.g), 0.00001)), 3)) AS g
      FROM dissolved d JOIN cog c USING (code)
     WHERE c.epci_code IS NOT NULL AND c.epci_code <> ''
     GROUP BY c.epci_code
), dep AS (
    SELECT DISTINCT ON (epci_code) epci_code, departement_code, region_code
      FROM (SELECT epci_code, departement_code, region_code, sum(population) AS p
              FROM cog WHERE epci_code IS NOT NULL GROUP BY 1, 2, 3) s
     ORDER BY epci_code, p DESC NULLS LAST, departement_code
)
SELECT 'epci' AS level, m.epci_code AS code, m.name, dep.region_code, dep.departement_code,
       m.epci_code, m.population, '' AS postcodes, '' AS old_codes,
       round(ST_Area(m.g::geography)) AS area_m2,
       translate(encode(ST_AsTWKB(m.g, 5), 'base64'), E'\n', '') AS geom_twkb,
       ST_IsValid(ST_GeomFromTWKB(ST_AsTWKB(m.g, 5))) AS valid
  FROM m JOIN dep USING (epci_code)
 WHERE NOT m.epci_code = ANY(CAST(:skip AS text[]))
 ORDER BY m.epci_code
"""


def _cog_rows() -> list[dict[str, object]]:
    out = []
    for r in _csv_rows(DATA_DIR / "communes_france_cog2026.csv"):
        out.append(
            {
                "code": r["code_insee"],
                "name": r["nom"],
                "departement_code": r["code_dep"] or None,
                "region_code": r["code_reg"] or None,
                "epci_code": r["code_epci"] or None,
                "epci_name": r["nom_epci"] or None,
                "population": int(r["population"]) if r["population"] else None,
                "postcodes": [p for p in r["codes_postaux"].split("|") if p],
                "old_codes": [p for p in r["anciens_codes"].split("|") if p],
            }
        )
    return out


def _write(path: Path, rows: list[sa.Row]) -> int:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for r in rows:
        if not r.valid:
            # The loader trusts the outlines (no ST_MakeValid on 35,000 polygons per load).
            raise SystemExit(f"{path.name}: {r.code}: contour invalide après arrondi")
        writer.writerow(["" if r._mapping[c] is None else r._mapping[c] for c in COLUMNS])
    with path.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        gz.write(out.getvalue().encode("utf-8"))
    return len(rows)


def build(source: Path, url: str) -> None:
    """Write the two France layers from the 2018 polygons and the COG 2026 table."""
    idf_epci = [
        f["properties"]["code_epci"]
        for f in json.loads((DATA_DIR / "epci_idf_cog2026.geojson").read_text("utf-8"))["features"]
    ]
    eng = sa.create_engine(normalise_url(url))
    with eng.begin() as conn:
        values = {"doc": source.read_text("utf-8"), "cog": json.dumps(_cog_rows())}
        for stmt in _PREPARE.split(";\n\n"):
            conn.execute(sa.text(stmt), {k: v for k, v in values.items() if f":{k}" in stmt})
        unmapped = conn.execute(sa.text("SELECT count(*) FROM mapped WHERE code IS NULL")).scalar()
        if unmapped:
            raise SystemExit(f"{source}: {unmapped} codes 2018 sans commune COG 2026")
        n = _write(COMMUNES_OUT, list(conn.execute(sa.text(_COMMUNES), {"idf": IDF_REGION})))
        e = _write(EPCI_OUT, list(conn.execute(sa.text(_EPCI), {"skip": idf_epci})))
    eng.dispose()
    print(f"{COMMUNES_OUT.name}: {n} communes; {EPCI_OUT.name}: {e} EPCI")


if __name__ == "__main__":
    build(Path(sys.argv[1]), sys.argv[2])
