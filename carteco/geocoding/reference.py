"""The address reference: load BAN / BAL files, derive streets and communes (idempotent)."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from carteco.db import quote_ident, read_sql
from carteco.errors import CartecoError
from carteco.geocoding.normalize import commune_key, street_key, suffix_key

DATA_DIR = Path(__file__).parent / "data"
OLD_COMMUNES = DATA_DIR / "anciennes_communes_idf.csv"
CENTRES = DATA_DIR / "communes_centres_2018.csv"

_TABLES = ("geo_addresses", "geo_streets", "geo_communes")
_GIN_INDEXES = (
    "geo_addresses_key_trgm_idx",
    "geo_addresses_search_idx",
    "geo_streets_key_trgm_idx",
    "geo_communes_key_trgm_idx",
    "geo_communes_postcodes_idx",
)


def flush_gin(conn: Connection) -> None:
    """Merge the GIN pending lists left by bulk loads into the indexes (fast lookups after)."""
    for name in _GIN_INDEXES:
        conn.execute(sa.text("SELECT gin_clean_pending_list(CAST(:n AS regclass))"), {"n": name})


# BAN uses 99999 for named places without a house number (lieux-dits).
NO_NUMBER = 99999


class AddressFileError(CartecoError, ValueError):
    """An address file Carteco cannot read (names the file, row and reason)."""

    kind = "invalid"


@dataclass
class LoadResult:
    """What loading one address file did."""

    file: str
    format: str
    addresses: int
    communes: int
    streets: int
    skipped: int


def _open(path: Path) -> IO[str]:
    raw: IO[bytes] = path.open("rb")
    if path.suffix == ".gz":
        raw = gzip.GzipFile(fileobj=raw)  # type: ignore[assignment]
    return io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")


def _float(v: str | None) -> float | None:
    try:
        return float((v or "").replace(",", "."))
    except ValueError:
        return None


def _detect(header: list[str]) -> str:
    cols = set(header)
    if {"nom_voie", "code_insee", "lon", "lat"} <= cols:
        return "ban"
    if {"voie_nom", "commune_insee", "long", "lat"} <= cols:
        return "bal"
    raise AddressFileError(
        "en-tête non reconnu : colonnes BAN (nom_voie, code_insee, lon, lat) "
        "ou BAL 1.3 (voie_nom, commune_insee, long, lat) attendues"
    )


def _row(fmt: str, r: dict[str, str], postcode_of: dict[str, str]) -> dict[str, Any] | None:
    if fmt == "ban":
        number_s, street, insee = r.get("numero", ""), r.get("nom_voie", ""), r["code_insee"]
        suffix, lon, lat = r.get("rep"), _float(r.get("lon")), _float(r.get("lat"))
        commune, postcode = r.get("nom_commune", ""), r.get("code_postal") or None
        old_code = r.get("code_insee_ancienne_commune") or None
        old_name = r.get("nom_ancienne_commune") or None
        lieu_dit, ptype, ban_id = r.get("nom_ld") or None, r.get("type_position"), r.get("id")
    else:
        number_s, street, insee = r.get("numero", ""), r.get("voie_nom", ""), r["commune_insee"]
        suffix, lon, lat = r.get("suffixe"), _float(r.get("long")), _float(r.get("lat"))
        commune, postcode = r.get("commune_nom", ""), postcode_of.get(insee)
        old_code = r.get("commune_deleguee_insee") or None
        old_name = r.get("commune_deleguee_nom") or None
        lieu_dit, ptype = r.get("lieudit_complement_nom") or None, r.get("position")
        ban_id = r.get("cle_interop") or r.get("uid_adresse")
    if lon is None or lat is None or not street.strip() or not insee:
        return None
    number = int(number_s) if number_s.strip().isdigit() else None
    if number == NO_NUMBER:
        number = None
    return {
        "ban_id": ban_id or None,
        "number": number,
        "suffix": suffix_key(suffix),
        "street": street.strip(),
        "street_key": street_key(street),
        "lieu_dit": lieu_dit,
        "postcode": postcode,
        "insee_code": insee.strip().zfill(5),
        "commune": commune.strip(),
        "old_insee_code": old_code,
        "old_commune": old_name,
        "position_type": ptype or None,
        "geom": f"SRID=4326;POINT({lon} {lat})",
    }


_COPY_COLS = (
    "ban_id",
    "number",
    "suffix",
    "street",
    "street_key",
    "lieu_dit",
    "postcode",
    "insee_code",
    "commune",
    "old_insee_code",
    "old_commune",
    "position_type",
    "source",
    "dataset",
    "geom",
)


def _iter_rows(path: Path) -> Iterator[tuple[str, int, dict[str, str]]]:
    with _open(path) as fh:
        first = fh.readline()
        delim = ";" if first.count(";") >= first.count(",") else ","
        header = next(csv.reader([first], delimiter=delim))
        fmt = _detect([h.strip() for h in header])
        reader = csv.DictReader(fh, fieldnames=[h.strip() for h in header], delimiter=delim)
        for i, r in enumerate(reader, start=2):
            yield fmt, i, r


def load_address_file(
    conn: Connection, path: Path, progress: Callable[[int], None] | None = None
) -> LoadResult:
    """Load one BAN or BAL file; its communes' previous addresses are replaced (idempotent)."""
    postcode_of = _single_postcodes(conn)
    dataset = path.name
    buf = io.StringIO()
    codes: set[str] = set()
    n = skipped = 0
    fmt = "?"
    try:
        for fmt, line, r in _iter_rows(path):
            try:
                row = _row(fmt, r, postcode_of)
            except (KeyError, ValueError) as exc:
                raise AddressFileError(f"{path}, ligne {line} : {exc}") from exc
            if row is None:
                skipped += 1
                continue
            row.update(source=fmt, dataset=dataset)
            codes.add(row["insee_code"])
            buf.write("\t".join(_copy_value(row[c]) for c in _COPY_COLS) + "\n")
            n += 1
            if progress and n % 5000 == 0:
                progress(n)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise AddressFileError(f"{path} : lecture impossible ({exc})") from exc
    code_list = sorted(codes)
    conn.execute(
        sa.text("DELETE FROM geo_addresses WHERE insee_code = ANY(:codes)"), {"codes": code_list}
    )
    raw = conn.connection.driver_connection
    with raw.cursor() as cur:  # type: ignore[union-attr]
        with cur.copy(f"COPY geo_addresses ({', '.join(_COPY_COLS)}) FROM STDIN") as copy:
            copy.write(buf.getvalue())
    if progress:
        progress(n)
    for stmt in _statements(read_sql("geocoding_streets_rebuild.sql")):
        conn.execute(sa.text(stmt), {"codes": code_list})
    streets = conn.execute(
        sa.text("SELECT count(*) FROM geo_streets WHERE insee_code = ANY(:codes)"),
        {"codes": code_list},
    ).scalar_one()
    return LoadResult(path.name, fmt, n, len(codes), int(streets), skipped)


def load_addresses(
    conn: Connection, paths: list[Path], progress: Callable[[str, int], None] | None = None
) -> list[LoadResult]:
    """Load several address files, then refresh the communes and empty the local cache."""
    results = []
    for path in paths:

        def step(n: int, name: str = path.name) -> None:
            if progress:
                progress(name, n)

        results.append(load_address_file(conn, path, step))
    refresh_communes(conn, force=True)
    # Cached answers were computed against the old reference.
    conn.execute(sa.text("DELETE FROM geocode_cache WHERE backend = 'local'"))
    flush_gin(conn)
    for table in ("geo_addresses", "geo_streets", "geo_communes"):
        # Fresh statistics, or the planner ignores the trigram indexes on a new reference.
        conn.execute(sa.text(f"ANALYZE {quote_ident(table, _TABLES)}"))
    return results


def _copy_value(v: Any) -> str:
    if v is None:
        return "\\N"
    s = str(v)
    return s.replace("\\", "\\\\").replace("\t", " ").replace("\n", " ").replace("\r", " ")


def _statements(sql: str) -> list[str]:
    return [s.strip() for s in sql.split(";\n") if s.strip() and not _only_comments(s)]


def _only_comments(s: str) -> bool:
    return all(not line.strip() or line.strip().startswith("--") for line in s.splitlines())


def _single_postcodes(conn: Connection) -> dict[str, str]:
    """Postcode of each commune that has exactly one (BAL files carry no postcode)."""
    rows = conn.execute(
        sa.text(
            "SELECT insee_code, min(postcode) FROM postcodes GROUP BY insee_code "
            "HAVING count(DISTINCT postcode) = 1"
        )
    )
    return {r[0]: r[1] for r in rows}


def _fingerprint(conn: Connection) -> str:
    row = conn.execute(
        sa.text(
            """
            SELECT (SELECT coalesce(string_agg(name || ':' || checksum, ',' ORDER BY name), '')
                      FROM reference_layers),
                   (SELECT count(*) FROM geo_addresses),
                   (SELECT coalesce(max(id), 0) FROM geo_addresses)
            """
        )
    ).one()
    return hashlib.sha256(repr(tuple(row)).encode()).hexdigest()


def refresh_communes(conn: Connection, force: bool = False) -> int:
    """Rebuild geo_communes when the territories or the addresses changed; return its size."""
    fp = _fingerprint(conn)
    if not force:
        done = conn.execute(
            sa.text("SELECT value FROM geo_meta WHERE key = 'communes_fingerprint'")
        ).scalar()
        if done == fp:
            return -1
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}

    def add(**r: Any) -> None:
        r["name_key"] = commune_key(r["name"])
        if r["name_key"]:
            rows.setdefault((r["code"], r["kind"], r["name_key"]), r)

    current: dict[str, dict[str, Any]] = {}
    # Communes with neither a polygon nor an address get a point inside their 2018 polygon
    # (a commune nouvelle: that of its first former commune), so they are still answered.
    centres = _centres()
    for r in conn.execute(sa.text(read_sql("geocoding_communes_source.sql"))).mappings():
        base = {
            "code": r["code"],
            "kind": r["kind"],
            "name": r["name"],
            "current_code": r["code"],
            "parent_code": r["parent_code"],
            "departement_code": r["departement_code"],
            "postcodes": list(r["postcodes"]),
            "population": r["population"],
            "geom": r["geom"]
            or next((centres[o] for o in (r["code"], *r["old_codes"]) if o in centres), None),
        }
        add(**base)
        current[r["code"]] = base
        for old in r["old_codes"]:
            current.setdefault(old, {**base, "kind": "ancienne", "code": old, "old_of": True})
    # Former communes: their own point and name where known (IDF 2018 polygons), else the
    # current commune's; COG delegated/associated communes and BAN "ancienne commune" names.
    named: dict[str, tuple[str, str | None]] = {}
    with OLD_COMMUNES.open(encoding="utf-8", newline="") as fh:
        for o in csv.DictReader(fh):
            named[o["code_insee"]] = (o["nom"], f"SRID=4326;POINT({o['lon']} {o['lat']})")
    for old, oname, parent in conn.execute(
        sa.text(
            "SELECT code, name, parent_code FROM communes_ref "
            "WHERE type IN ('commune-deleguee', 'commune-associee') AND parent_code IS NOT NULL"
        )
    ):
        named.setdefault(old, (oname, None))
        if old not in current and parent in current:
            current[old] = {**current[parent], "kind": "ancienne", "code": old, "old_of": True}
    for old, oname, parent in conn.execute(
        sa.text(
            "SELECT DISTINCT old_insee_code, old_commune, insee_code FROM geo_addresses "
            "WHERE old_insee_code IS NOT NULL AND old_commune IS NOT NULL"
        )
    ):
        named.setdefault(old, (oname, None))
        if old not in current and parent in current:
            current[old] = {**current[parent], "kind": "ancienne", "code": old, "old_of": True}
    for code, c in current.items():
        if not c.get("old_of"):
            continue
        name, geom = named.get(code, (c["name"], None))
        add(**{**c, "name": name, "geom": geom or centres.get(code) or c["geom"]})
    conn.execute(sa.text("DELETE FROM geo_communes"))
    cols = (*_COMMUNE_COLS, "name_key")
    buf = io.StringIO()
    for row in sorted(rows.values(), key=lambda x: (x["code"], x["kind"], x["name_key"])):
        values = dict(row)
        values["postcodes"] = "{" + ",".join(row["postcodes"]) + "}"
        buf.write("\t".join(_copy_value(values.get(col)) for col in cols) + "\n")
    raw = conn.connection.driver_connection
    with raw.cursor() as cur:  # type: ignore[union-attr]
        with cur.copy(f"COPY geo_communes ({', '.join(cols)}) FROM STDIN") as copy:
            copy.write(buf.getvalue())
    conn.execute(
        sa.text(
            "INSERT INTO geo_meta (key, value) VALUES ('communes_fingerprint', :fp) "
            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
        ),
        {"fp": _fingerprint(conn)},
    )
    flush_gin(conn)
    conn.execute(sa.text("ANALYZE geo_communes"))
    return len(rows)


def _centres() -> dict[str, str]:
    """A point inside each commune of 2018, as EWKT, by INSEE code."""
    with CENTRES.open(encoding="utf-8", newline="") as fh:
        return {
            r["code_insee"]: f"SRID=4326;POINT({r['lon']} {r['lat']})" for r in csv.DictReader(fh)
        }


_COMMUNE_COLS = (
    "code",
    "kind",
    "name",
    "current_code",
    "parent_code",
    "departement_code",
    "postcodes",
    "population",
    "geom",
)
