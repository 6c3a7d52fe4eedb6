"""Load the shipped reference layers into PostGIS, idempotently (checksums in the manifest)."""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from carteco.db import execute_rows
from carteco.errors import CartecoError

GEODATA_DIR = Path(__file__).parent
DATA_DIR = GEODATA_DIR / "data"
MANIFEST = GEODATA_DIR / "manifest.json"


@dataclass(frozen=True)
class Layer:
    """One manifest entry."""

    name: str
    file: str
    kind: str
    vintage: str
    source: str
    licence: str
    sha256: str
    level: str | None = None

    @property
    def path(self) -> Path:
        """Where the file lies in the package."""
        return DATA_DIR / self.file


class ChecksumError(CartecoError, RuntimeError):
    """A shipped file does not match its manifest checksum."""

    kind = "internal"


def read_manifest(path: Path = MANIFEST) -> list[Layer]:
    """The layers listed in the manifest, in load order."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    return [Layer(**entry) for entry in doc["layers"]]


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, hex."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _features(path: Path) -> Iterator[dict[str, Any]]:
    doc = json.loads(path.read_text(encoding="utf-8"))
    yield from doc["features"]


def _csv_rows(path: Path) -> Iterator[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        yield from csv.DictReader(fh)


def _split(value: Any) -> list[str]:
    return [v for v in str(value or "").split("|") if v]


def _int(value: Any) -> int | None:
    return int(value) if value not in (None, "") else None


def _territory_rows(layer: Layer, conn: Connection) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    refs = _commune_table(conn)
    for f in _features(layer.path):
        p = f["properties"]
        row: dict[str, Any] = {
            "level": layer.level,
            "region_code": None,
            "departement_code": None,
            "epci_code": None,
            "ept_code": None,
            "commune_code": None,
            "population": None,
            "old_codes": [],
            "postcodes": [],
            "geom": json.dumps(f["geometry"]),
        }
        if layer.name == "communes_idf":
            row.update(
                code=p["code_insee"],
                name=p["nom"],
                region_code=p["code_reg"],
                departement_code=p["code_dep"],
                epci_code=p.get("code_epci"),
                ept_code=p.get("code_ept"),
                population=p.get("population"),
                old_codes=_split(p.get("anciens_codes")),
                postcodes=_split(p.get("codes_postaux")),
            )
        elif layer.level == "region":
            row.update(code=p.get("code_reg") or p["code"], name=p["nom"])
            row["population"] = p.get("population") or _population(refs, "code_reg", row["code"])
        elif layer.level == "departement":
            code = p.get("code_dep") or p["code"]
            row.update(code=code, name=p["nom"])
            row["population"] = p.get("population") or _population(refs, "code_dep", code)
            row["region_code"] = p.get("code_reg") or _region_of_departement(refs, code)
        elif layer.level == "epci":
            row.update(
                code=p["code_epci"], name=p["nom"], population=p.get("population_municipale")
            )
            row["region_code"] = "11"
        elif layer.level == "ept":
            row.update(code=p["code_ept"], name=p["nom"], population=p.get("population_municipale"))
            row.update(region_code="11", epci_code="200054781")
            if p["code_ept"] == "T1":
                row["departement_code"] = "75"
        elif layer.level == "arrondissement":
            code = p["code_insee"]
            ref = refs.get(code, {})
            row.update(
                code=code,
                name=p["nom"],
                commune_code="75056",
                departement_code="75",
                region_code="11",
                epci_code="200054781",
                ept_code="T1",
                population=_int(ref.get("population")),
                postcodes=_split(ref.get("codes_postaux")),
            )
        else:
            raise ValueError(f"layer {layer.name}: unknown territory level {layer.level!r}")
        rows.append(row)
    return rows


_COMMUNE_TABLE_CACHE: dict[str, dict[str, dict[str, str]]] = {}


def _commune_table(conn: Connection) -> dict[str, dict[str, str]]:
    """Rows of the shipped COG tables keyed by code (arrondissements included)."""
    if "all" not in _COMMUNE_TABLE_CACHE:
        table: dict[str, dict[str, str]] = {}
        for name in ("communes_france_cog2026.csv", "communes_idf_cog2026.csv"):
            for r in _csv_rows(DATA_DIR / name):
                if r.get("type", "commune-actuelle") in (
                    "commune-actuelle",
                    "arrondissement-municipal",
                ):
                    table.setdefault(r["code_insee"], r)
        _COMMUNE_TABLE_CACHE["all"] = table
    return _COMMUNE_TABLE_CACHE["all"]


_POPULATION_CACHE: dict[str, dict[str, int | None]] = {}


def _population(refs: dict[str, dict[str, str]], column: str, code: str) -> int | None:
    """Municipal population of the communes of a département or région (None if unknown)."""
    if column not in _POPULATION_CACHE:
        sums: dict[str, int | None] = {}
        for r in refs.values():
            if r.get("type", "commune-actuelle") != "commune-actuelle" or not r.get(column):
                continue
            key, pop = r[column], _int(r.get("population"))
            # One commune without population leaves the total unknown, not undercounted.
            prev = sums.get(key, 0)
            sums[key] = None if pop is None or prev is None else prev + pop
        _POPULATION_CACHE[column] = sums
    return _POPULATION_CACHE[column].get(code)


def _region_of_departement(refs: dict[str, dict[str, str]], dep: str) -> str | None:
    for r in refs.values():
        if r.get("code_dep") == dep and r.get("code_reg"):
            return r["code_reg"]
    return None


def _load_territories(conn: Connection, layer: Layer) -> int:
    if layer.file.endswith(".csv.gz"):
        return _load_prebuilt_territories(conn, layer)
    rows = _territory_rows(layer, conn)
    conn.execute(sa.text("DELETE FROM territories WHERE layer = :layer"), {"layer": layer.name})
    # A later, coarser layer only fills the codes a finer one did not cover (France after IDF).
    execute_rows(
        conn,
        sa.text(
            """
            INSERT INTO territories (level, code, name, region_code, departement_code, epci_code,
                ept_code, commune_code, population, old_codes, postcodes, geom, area_m2,
                vintage, layer)
            SELECT level, code, name, region_code, departement_code, epci_code, ept_code,
                   commune_code, population, old_codes, postcodes, g, ST_Area(g::geography),
                   vintage, layer
              FROM (SELECT r.*, ST_Multi(ST_CollectionExtract(ST_MakeValid(
                           ST_SetSRID(ST_GeomFromGeoJSON(r.geom), 4326)), 3)) AS g
                      FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(level text, code text,
                           name text, region_code text, departement_code text, epci_code text,
                           ept_code text, commune_code text, population integer,
                           old_codes text[], postcodes text[], geom text, vintage text,
                           layer text)) s
            ON CONFLICT (level, code) DO NOTHING
            """
        ),
        [dict(r, vintage=layer.vintage, layer=layer.name) for r in rows],
        chunk=500,
    )
    return len(rows)


# Layers built by geodata/build_france.py: CSV whose columns are the territory columns and the
# outline as TWKB (base64). COPY into a scratch table, then one INSERT ... SELECT: decoding TWKB
# is ~30× faster than parsing GeoJSON, and the whole France commune layer loads in seconds.
_PREBUILT_COLUMNS = (
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
_PREBUILT_INSERT = sa.text(
    """
    INSERT INTO territories (level, code, name, region_code, departement_code, epci_code,
        population, old_codes, postcodes, geom, area_m2, vintage, layer)
    SELECT level, code, name, nullif(region_code, ''), nullif(departement_code, ''),
           nullif(epci_code, ''), CAST(nullif(population, '') AS integer),
           coalesce(string_to_array(nullif(old_codes, ''), '|'), '{}'),
           coalesce(string_to_array(nullif(postcodes, ''), '|'), '{}'),
           ST_Multi(ST_SetSRID(ST_GeomFromTWKB(decode(geom_twkb, 'base64')), 4326)),
           CAST(nullif(area_m2, '') AS double precision), :vintage, :layer
      FROM carteco_prebuilt_stage
    ON CONFLICT (level, code) DO NOTHING
    """
)


def _load_prebuilt_territories(conn: Connection, layer: Layer) -> int:
    conn.execute(sa.text("DELETE FROM territories WHERE layer = :layer"), {"layer": layer.name})
    cols = ", ".join(_PREBUILT_COLUMNS)
    conn.execute(
        sa.text(
            f"CREATE TEMP TABLE carteco_prebuilt_stage ({cols.replace(',', ' text,')} text) "
            "ON COMMIT DROP"
        )
    )
    text = gzip.decompress(layer.path.read_bytes()).decode("utf-8")
    header = text[: text.find("\n")].split(",")
    if tuple(header) != _PREBUILT_COLUMNS:
        raise ValueError(f"{layer.path}: colonnes {header}, attendu {list(_PREBUILT_COLUMNS)}")
    raw = conn.connection.driver_connection
    with raw.cursor() as cur:  # type: ignore[union-attr]
        # The file is CSV already: PostgreSQL parses it, Python only decompresses.
        with cur.copy(
            f"COPY carteco_prebuilt_stage ({cols}) FROM STDIN WITH (FORMAT csv, HEADER true)"
        ) as copy:
            copy.write(text)
    n = int(conn.execute(sa.text("SELECT count(*) FROM carteco_prebuilt_stage")).scalar_one())
    conn.execute(_PREBUILT_INSERT, {"vintage": layer.vintage, "layer": layer.name})
    conn.execute(sa.text("DROP TABLE carteco_prebuilt_stage"))
    return n


def _load_stations(conn: Connection, layer: Layer) -> int:
    rows = []
    for f in _features(layer.path):
        p = f["properties"]
        rows.append(
            {
                "source_id": f"{p['id_gares']}:{p.get('idrefliga') or p.get('res_com')}",
                "name": p["nom_gares"],
                "mode": p.get("mode"),
                "line": p.get("res_com"),
                "operator": p.get("exploitant"),
                "geom": json.dumps(f["geometry"]),
                "layer": layer.name,
            }
        )
    conn.execute(sa.text("DELETE FROM stations WHERE layer = :layer"), {"layer": layer.name})
    execute_rows(
        conn,
        sa.text(
            """
            INSERT INTO stations (source_id, name, mode, line, operator, geom, layer)
            SELECT source_id, name, mode, line, operator,
                   ST_SetSRID(ST_GeomFromGeoJSON(geom), 4326), layer
              FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(source_id text, name text,
                   mode text, line text, operator text, geom text, layer text)
            ON CONFLICT (source_id) DO NOTHING
            """
        ),
        rows,
    )
    return len(rows)


def _load_contrats_ville(conn: Connection, layer: Layer) -> int:
    rows = [
        {
            "code": f["properties"]["code_cv"],
            "name": f["properties"]["lib_cv"],
            "departement_code": f["properties"]["code_dep"],
            "codgeo": f["properties"].get("codgeo"),
            "geom": json.dumps(f["geometry"]),
            "layer": layer.name,
        }
        for f in _features(layer.path)
    ]
    conn.execute(sa.text("DELETE FROM contrats_ville WHERE layer = :layer"), {"layer": layer.name})
    # A code already loaded by another layer is kept: the first layer of the manifest wins.
    execute_rows(
        conn,
        sa.text(
            """
            INSERT INTO contrats_ville (code, name, departement_code, codgeo, geom, layer)
            SELECT code, name, departement_code, codgeo,
                   ST_SetSRID(ST_GeomFromGeoJSON(geom), 4326), layer
              FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(code text, name text,
                   departement_code text, codgeo text, geom text, layer text)
            ON CONFLICT (code) DO NOTHING
            """
        ),
        rows,
    )
    return len(rows)


def _load_table(conn: Connection, layer: Layer) -> int:
    rows = list(_csv_rows(layer.path))
    if layer.name == "codes_postaux_france":
        conn.execute(sa.text("DELETE FROM postcodes"))
        execute_rows(
            conn,
            sa.text(
                """
                INSERT INTO postcodes (postcode, insee_code, commune_name, delivery_label)
                SELECT code_postal, code_insee, nom_commune, libelle_acheminement
                  FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(code_postal text,
                       code_insee text, nom_commune text, libelle_acheminement text)
                """
            ),
            rows,
        )
        return len(rows)
    params = []
    for r in rows:
        params.append(
            {
                "code": r["code_insee"],
                "type": r.get("type") or "commune-actuelle",
                "name": r["nom"],
                "departement_code": r.get("code_dep") or None,
                "region_code": r.get("code_reg") or ("11" if r.get("type") else None),
                "epci_code": r.get("code_epci") or None,
                "epci_name": r.get("nom_epci") or None,
                "ept_code": r.get("code_ept") or None,
                "parent_code": r.get("commune_parente") or None,
                "population": _int(r.get("population")),
                "postcodes": _split(r.get("codes_postaux")),
                "old_codes": _split(r.get("anciens_codes")),
                "vintage": layer.vintage,
            }
        )
    execute_rows(
        conn,
        sa.text(
            """
            INSERT INTO communes_ref (code, type, name, departement_code, region_code, epci_code,
                epci_name, ept_code, parent_code, population, postcodes, old_codes, vintage)
            SELECT code, type, name, departement_code, region_code, epci_code, epci_name,
                   ept_code, parent_code, population, postcodes, old_codes, vintage
              FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(code text, type text,
                   name text, departement_code text, region_code text, epci_code text,
                   epci_name text, ept_code text, parent_code text, population integer,
                   postcodes text[], old_codes text[], vintage text)
            ON CONFLICT (code, type) DO UPDATE SET name = EXCLUDED.name,
                departement_code = EXCLUDED.departement_code,
                region_code = COALESCE(EXCLUDED.region_code, communes_ref.region_code),
                epci_code = EXCLUDED.epci_code, epci_name = EXCLUDED.epci_name,
                ept_code = COALESCE(EXCLUDED.ept_code, communes_ref.ept_code),
                parent_code = EXCLUDED.parent_code, population = EXCLUDED.population,
                postcodes = EXCLUDED.postcodes, old_codes = EXCLUDED.old_codes,
                vintage = EXCLUDED.vintage
            """
        ),
        params,
    )
    return len(params)


LOADERS: dict[str, Callable[[Connection, Layer], int]] = {
    "territories": _load_territories,
    "stations": _load_stations,
    "contrats_ville": _load_contrats_ville,
    "table": _load_table,
}


@dataclass
class LoadResult:
    """What `load_all` did with one layer."""

    layer: str
    action: str  # "loaded" or "unchanged"
    features: int


def verify_checksums(layers: list[Layer] | None = None) -> None:
    """Raise ChecksumError when a shipped file differs from its manifest entry."""
    for layer in layers or read_manifest():
        actual = file_sha256(layer.path)
        if actual != layer.sha256:
            raise ChecksumError(
                f"{layer.path}: sha256 {actual} differs from the manifest ({layer.sha256})"
            )


def load_all(
    conn: Connection, force: bool = False, progress: Callable[[str], None] | None = None
) -> list[LoadResult]:
    """Load every manifest layer whose checksum changed since its last load; re-tag if needed."""
    layers = read_manifest()
    verify_checksums(layers)
    loaded = {
        r.name: r.checksum
        for r in conn.execute(sa.text("SELECT name, checksum FROM reference_layers"))
    }
    results: list[LoadResult] = []
    # A finer layer changed → the coarser ones that fill around it must be reloaded too.
    dirty = force
    for layer in layers:
        if not dirty and loaded.get(layer.name) == layer.sha256:
            results.append(LoadResult(layer.name, "unchanged", 0))
            continue
        dirty = dirty or layer.kind == "territories"
        if progress:
            progress(layer.name)
        n = LOADERS[layer.kind](conn, layer)
        conn.execute(
            sa.text(
                """
                INSERT INTO reference_layers (name, checksum, vintage, features, loaded_at)
                VALUES (:name, :checksum, :vintage, :features, now())
                ON CONFLICT (name) DO UPDATE SET checksum = EXCLUDED.checksum,
                    vintage = EXCLUDED.vintage, features = EXCLUDED.features, loaded_at = now()
                """
            ),
            {"name": layer.name, "checksum": layer.sha256, "vintage": layer.vintage, "features": n},
        )
        results.append(LoadResult(layer.name, "loaded", n))
    if any(r.action == "loaded" for r in results if _kind(layers, r.layer) == "territories"):
        # Fresh statistics first: without them the planner reads the 35,000 communes through
        # the (level, code) btree for every point tagged (17 ms a point instead of 0.3 ms).
        conn.execute(sa.text("ANALYZE territories"))
        conn.execute(sa.text("SELECT carteco_retag_structures()"))
    return results


def _kind(layers: list[Layer], name: str) -> str:
    return next(la.kind for la in layers if la.name == name)
