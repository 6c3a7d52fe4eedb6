"""Duplicate structures within and across sources: candidate pairs, a score with its reasons,
merges that keep every source link, and remembered decisions.

Candidates come from blocks, never from all pairs. The whole registry (or a large subset):
points within `RADIUS_M` whose names share a key of a rare word, paired in numpy
(`carteco.duplicate_blocks`), then equality joins in SQL — the same normalised name in the
same commune (any distance: one source may place a structure at its commune's centre), equal
SIRET or RNA, the same website host or phone number in one commune, the trigram index for
structures without a point (`carteco/sql/duplicates_blocks_full.sql`). A few structures (an
import's new rows, one pair): index probes around each (`duplicates_blocks_subset.sql`).
`name_key` and `geom_l93` are kept by the `carteco_structure_keys` trigger (migration 0019).
Each candidate pair gets a score in [0, 1] from its features (`score_pair`) and the French
reasons behind it; the address is compared only for the pairs it could lift to the threshold.

A merge moves every `structure_sources` link of the merged structure to the survivor, so a
re-import of its source updates the survivor instead of creating the structure again;
the merged row is deleted (tiles are invalidated by the structures triggers), its id
redirects (`structure_merges`) and the values each source gave are kept as provenance.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from carteco.db import read_sql
from carteco.duplicate_blocks import name_grid_pairs, read_registry
from carteco.errors import CartecoError
from carteco.territory_levels import LEVEL_COLUMNS, TERRITORY_CODE

RADIUS_M = 150.0  # candidates by distance: points closer than this (metres, Lambert-93)
NAME_SIMILARITY = 0.4  # trigram similarity of normalised names that makes a nearby candidate
DEFAULT_MIN_SCORE = 0.6
# Extra keys where sources put a phone number (the registry has no phone column).
PHONE_KEYS = ("telephone", "téléphone", "tel", "phone", "telephone_fixe")
# Fields compared and kept in the provenance of a merge ("which source said what").
MERGE_FIELDS = (
    "siret",
    "siren",
    "rna",
    "name",
    "legal_category",
    "legal_form",
    "ess_family",
    "description",
    "address_line",
    "postcode",
    "commune_name",
    "insee_code",
    "website",
    "opened_on",
    "closed_on",
)


class DuplicateError(CartecoError):
    """A duplicate decision that cannot be applied (unknown structure, same id, merged)."""


@dataclass
class Pair:
    """A candidate pair (a < b), its score in [0, 1] and the reasons behind it."""

    a: dict[str, Any]
    b: dict[str, Any]
    score: float
    reasons: list[str] = field(default_factory=list)
    distance_m: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "a": self.a,
            "b": self.b,
            "score": round(self.score, 3),
            "distance_m": None if self.distance_m is None else round(self.distance_m, 1),
            "reasons": self.reasons,
        }


# --- candidates ---------------------------------------------------------------------------

# A whole registry (or a large subset): name-and-place pairs in numpy, equality joins in SQL.
# A few structures (an import's new rows, one pair): index probes around each of them.
_FULL = sa.text(read_sql("duplicates_blocks_full.sql") + read_sql("duplicates_features.sql"))
_SUBSET = sa.text(read_sql("duplicates_blocks_subset.sql") + read_sql("duplicates_features.sql"))
_DETAILS = sa.text(read_sql("duplicates_details.sql"))
# Index probes cost about a quarter of a millisecond per structure, the whole-registry blocks
# about 14 µs per structure of the registry (bench/duplicates/README.md): a subset of more than
# SUBSET_PROBES structures and PROBE_SHARE of the registry goes through the blocks.
SUBSET_PROBES = 2000
PROBE_SHARE = 0.05
MAX_GROUP = 10  # a website host or phone number shared by more structures pairs none of them
ADDRESS_WEIGHT = 0.15  # what `same_address` adds to a score (see score_pair)

_WEB_HOST = re.compile(r"^(?:[a-z][a-z0-9+.-]*://)?(?:www\.)?([^/?#:]+)")
# Hosts that hold many unrelated pages: the same host says nothing.
_SHARED_HOSTS = {"facebook.com", "fr-fr.facebook.com", "instagram.com", "linkedin.com"}


def website_host(url: str | None) -> str | None:
    """`https://www.Example.org/x` → `example.org`; None for empty or shared hosts."""
    if not url:
        return None
    m = _WEB_HOST.match(url.strip().lower())
    host = m.group(1).rstrip(".") if m else ""
    return host if host and host not in _SHARED_HOSTS else None


def normalise_phone(text: str | None) -> str | None:
    """A French phone number in E.164 (`+33…`), other numbers as `+digits`; None if unusable."""
    if not text:
        return None
    digits = re.sub(r"\D", "", str(text))
    if digits.startswith("0033"):
        digits = "0" + digits[4:]
    elif digits.startswith("33") and len(digits) == 11:
        digits = "0" + digits[2:]
    if len(digits) == 10 and digits.startswith("0"):
        return "+33" + digits[1:]
    return "+" + digits if len(digits) >= 8 else None


def edit_distance(a: str, b: str) -> int:
    """Optimal-string-alignment distance: insertions, deletions, substitutions, swaps.

    Hyyrö's bit-parallel algorithm (2003): one column of the edit matrix is a pair of bit
    vectors (Python integers), so a pair of names costs a few operations per letter of `b`
    instead of len(a) × len(b) cells.
    """
    if not a or not b:
        return len(a) + len(b)
    m = len(a)
    mask, top = (1 << m) - 1, 1 << (m - 1)
    peq: dict[str, int] = {}
    for i, c in enumerate(a):
        peq[c] = peq.get(c, 0) | (1 << i)
    vp, vn, d0, pm_prev, dist = mask, 0, 0, 0, m
    for c in b:
        pm = peq.get(c, 0)
        tr = (((~d0) & pm) << 1) & pm_prev
        d0 = ((((pm & vp) + vp) ^ vp) | pm | vn | tr) & mask
        hp = (vn | ~(d0 | vp)) & mask
        hn = d0 & vp
        if hp & top:
            dist += 1
        elif hn & top:
            dist -= 1
        x = (hp << 1) | 1
        vn = x & d0
        vp = ((hn << 1) | ~(x | d0)) & mask
        pm_prev = pm
    return dist


def name_similarity(key_a: str | None, key_b: str | None, trigram: float) -> float:
    """Similarity (0–1) of two normalised names, led by the words they do not share.

    Names of one kind share their common words ("épicerie solidaire …"): the trigram
    similarity of the whole names is high for two different épiceries. The words one name
    has and the other lacks decide: their edit distance (a typo costs one edit), squared.
    """
    words_a, words_b = (key_a or "").split(), (key_b or "").split()
    only_a = [w for w in words_a if w not in words_b and not _misspelt_filler(w)]
    only_b = [w for w in words_b if w not in words_a and not _misspelt_filler(w)]
    if not only_a and not only_b:
        return 1.0
    ra, rb = " ".join(only_a), " ".join(only_b)
    if not only_a or not only_b:  # one name is the other plus words
        longer = max(len(key_a or ""), len(key_b or ""), 1)
        return max(0.0, 1.0 - 2.0 * len(ra or rb) / longer)
    distance = edit_distance(ra, rb)
    if distance <= 1:  # one typo
        return 0.9
    rest = 1.0 - distance / max(len(ra), len(rb))
    return 0.25 * trigram + 0.75 * rest * rest


# The words carteco_name_key drops (migration 0009), of three letters or more.
_FILLERS = (
    "assoc association asso ass sarl sas sasu scop scic sca eurl sci gie ste societe "
    "cooperative coop fondation mutuelle ets etablissement etablissements les une des "
    "du aux sur pour the"
).split()


def _one_edit(a: str, b: str) -> bool:
    """`edit_distance(a, b) == 1` in one pass: a letter replaced, added, dropped or swapped."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    i, n = 0, min(len(a), len(b))
    while i < n and a[i] == b[i]:
        i += 1
    if len(a) > len(b):
        return a[i + 1 :] == b[i:]
    if len(a) < len(b):
        return a[i:] == b[i + 1 :]
    return a[i + 1 :] == b[i + 1 :] or (
        a[i + 2 :] == b[i + 2 :] and a[i] == b[i + 1] and a[i + 1] == b[i]
    )


@lru_cache(maxsize=65536)
def _misspelt_filler(word: str) -> bool:
    """A legal form or article with one typo (`assocation`, `ls`): a word to ignore."""
    return any(_one_edit(word, f) for f in _FILLERS)


def score_pair(f: dict[str, Any]) -> tuple[float, list[str]]:
    """Score (0–1) and French reasons from a candidate pair's features (see `_CANDIDATES`)."""
    reasons: list[str] = []
    sim = float(f.get("sim") or 0.0)
    score = 0.55 * sim
    if sim >= 0.999:
        reasons.append("même nom (normalisé)")
    elif sim >= 0.3:
        reasons.append(f"noms proches ({sim:.2f})")
    dist = f.get("dist")
    if dist is not None:
        if dist <= 50:
            score += 0.3
        elif dist <= RADIUS_M:
            score += 0.2
        if dist <= RADIUS_M:
            reasons.append(f"à {dist:.0f} m")
        elif f.get("same_commune"):  # apart: two places of one name in a town, or a move
            reasons.append(f"même commune (à {dist:.0f} m)")
    elif f.get("same_commune"):
        score += 0.1
        reasons.append("même commune")
    if f.get("same_siret"):
        score += 0.4
        reasons.append("même SIRET")
    elif f.get("same_siren"):
        score += 0.1
        reasons.append("même SIREN")
    if f.get("same_rna"):
        score += 0.4
        reasons.append("même RNA")
    if f.get("same_address"):
        score += ADDRESS_WEIGHT
        reasons.append("même adresse")
    if f.get("same_web"):
        score += 0.15
        reasons.append("même site web")
    if f.get("same_phone"):
        score += 0.15
        reasons.append("même téléphone")
    reasons.append("même source" if f.get("same_source") else "sources différentes")
    return min(score, 1.0), reasons


def _features(row: Any) -> dict[str, Any]:
    f = dict(row._mapping)
    phones_a = {normalise_phone(v) for v in f.pop("phones_a") or ()} - {None}
    phones_b = {normalise_phone(v) for v in f.pop("phones_b") or ()} - {None}
    f["trigram"] = f["sim"]
    f["sim"] = name_similarity(f["key_a"], f["key_b"], float(f["sim"] or 0.0))
    host_a, host_b = website_host(f["web_a"]), website_host(f["web_b"])
    f["same_web"] = host_a is not None and host_a == host_b
    f["same_phone"] = bool(phones_a & phones_b)
    return f


class _Clock:
    """Seconds spent in each phase, into `timings` when the caller gave one (benchmarks)."""

    def __init__(self, timings: dict[str, float] | None) -> None:
        self.timings = timings
        self.t = time.perf_counter()

    def __call__(self, phase: str) -> None:
        now = time.perf_counter()
        if self.timings is not None:
            self.timings[phase] = self.timings.get(phase, 0.0) + now - self.t
        self.t = now


def _block_params(
    conn: Connection, ids: Sequence[int] | None, radius_m: float, clock: _Clock
) -> dict[str, Any]:
    """Parameters of the whole-registry blocks: the name-and-place pairs computed in numpy."""
    reg = read_registry(conn)
    clock("read the registry (one query)")
    rows_a, rows_b = name_grid_pairs(reg, radius_m)
    clock("name and place blocks (numpy)")
    return {
        "grid_a": reg.ids[rows_a].tolist(),
        "grid_b": reg.ids[rows_b].tolist(),
        "everything": ids is None,
        "ids": list(ids or []),
        "shared_hosts": sorted(_SHARED_HOSTS),
        "max_group": MAX_GROUP,
    }


def _probe(conn: Connection, n: int) -> bool:
    """Whether `n` structures are better compared by index probes than by the blocks."""
    if n <= SUBSET_PROBES:
        return True
    size = conn.execute(
        sa.text("SELECT reltuples FROM pg_class WHERE oid = CAST('structures' AS regclass)")
    ).scalar()
    return n <= PROBE_SHARE * float(size or 0)


def candidate_pairs(
    conn: Connection,
    ids: Sequence[int] | None = None,
    min_score: float = DEFAULT_MIN_SCORE,
    radius_m: float = RADIUS_M,
    timings: dict[str, float] | None = None,
) -> list[Pair]:
    """Scored candidate pairs (undecided) at or above `min_score`, best first.

    Without `ids`, the whole registry; with `ids`, the pairs with one of those structures.
    `timings`, when given, receives the seconds spent in each phase.
    """
    clock = _Clock(timings)
    conn.execute(
        sa.text(
            "SELECT set_config('pg_trgm.similarity_threshold', :t, true), "
            "set_config('jit', 'off', true)"  # compiling this plan costs more than running it
        ),
        {"t": str(max(NAME_SIMILARITY, 0.5))},
    )
    params: dict[str, Any] = {
        "radius": radius_m,
        "sim": NAME_SIMILARITY,
        "phone_keys": list(PHONE_KEYS),
    }
    if ids is not None and _probe(conn, len(ids)):
        sql, params["ids"] = _SUBSET, list(ids)
    else:
        sql = _FULL
        params.update(_block_params(conn, ids, radius_m, clock))
    rows = conn.execute(sql, params).all()
    clock("equality blocks and features (SQL)")
    # Scored without the address first: only the pairs it could lift to the threshold
    # need it (a normalised address costs a regular expression per side).
    pending: dict[tuple[int, int], tuple[float, list[str], dict[str, Any]]] = {}
    for row in rows:
        f = _features(row)
        score, reasons = score_pair(f)
        if score + (ADDRESS_WEIGHT if f["address_comparable"] else 0.0) >= min_score:
            pending[(int(f["a_id"]), int(f["b_id"]))] = (score, reasons, f)
    clock("scores (Python)")
    out: list[Pair] = []
    if not pending:
        return out
    a_ids, b_ids = zip(*pending, strict=True)
    details = conn.execute(_DETAILS, {"a": list(a_ids), "b": list(b_ids)}).mappings().all()
    clock("addresses and summaries (SQL)")
    for d in details:
        score, reasons, f = pending[(int(d["a_id"]), int(d["b_id"]))]
        if d["same_address"]:
            f["same_address"] = True
            score, reasons = score_pair(f)
        if score >= min_score:
            out.append(Pair(d["ja"], d["jb"], score, reasons, f["dist"]))
    out.sort(key=lambda p: (-p.score, p.a["id"], p.b["id"]))
    clock("scores (Python)")
    return out


def territory_ids(conn: Connection, territory: str) -> list[int]:
    """Ids of the structures in `niveau:code` (e.g. `departement:79`); invalid → error."""
    level, _, code = territory.partition(":")
    column = LEVEL_COLUMNS.get(level.strip())
    if column is None or not TERRITORY_CODE.match(code.strip()):
        raise DuplicateError(
            f"territoire : niveau:code attendu (niveaux : {', '.join(LEVEL_COLUMNS)}), "
            f"reçu {territory!r}"
        )
    # The column comes from LEVEL_COLUMNS (an allow-list), the code is bound.
    sql = f"SELECT id FROM structures WHERE {column} = :c"  # noqa: S608
    return [int(i) for i in conn.execute(sa.text(sql), {"c": code.strip()}).scalars()]


def list_duplicates(
    conn: Connection,
    min_score: float = DEFAULT_MIN_SCORE,
    territory: str | None = None,
    timings: dict[str, float] | None = None,
) -> list[Pair]:
    """Candidate pairs of the registry (or of one territory) at or above `min_score`."""
    if not 0 <= min_score <= 1:
        raise DuplicateError("min_score : un nombre entre 0 et 1 est attendu")
    ids = territory_ids(conn, territory) if territory else None
    if ids is not None and not ids:
        return []
    return candidate_pairs(conn, ids, min_score, timings=timings)


# --- decisions ------------------------------------------------------------------------------


def merged_into(conn: Connection, structure_id: int) -> int | None:
    """The structure a merged id now lives in, or None when it was never merged."""
    into = conn.execute(
        sa.text("SELECT into_id FROM structure_merges WHERE merged_id = :i"), {"i": structure_id}
    ).scalar()
    return None if into is None else int(into)


def merged_structure(conn: Connection, collection: str, feature_id: str) -> int | None:
    """For `GET …/structures/items/{id}` of a merged id: the survivor's id, else None."""
    if collection != "structures" or not feature_id.isascii() or not feature_id.isdigit():
        return None
    if len(feature_id) > 18:
        return None
    return merged_into(conn, int(feature_id))


def _lock_pair(conn: Connection, a: int, b: int) -> dict[int, dict[str, Any]]:
    if a == b:
        raise DuplicateError("une structure ne peut pas être fusionnée avec elle-même")
    rows = {
        int(r["id"]): dict(r)
        for r in conn.execute(
            sa.text(
                "SELECT s.*, ST_AsGeoJSON(s.geom) AS geojson FROM structures s "
                "WHERE id = ANY(:ids) ORDER BY id FOR UPDATE"
            ),
            {"ids": [a, b]},
        ).mappings()
    }
    for sid in (a, b):
        if sid not in rows:
            into = merged_into(conn, sid)
            if into is not None:
                raise DuplicateError(
                    f"la structure {sid} a déjà été fusionnée dans {into}", kind="conflict"
                )
            raise DuplicateError(f"structure inconnue : {sid}", kind="not_found")
    return rows


def _record_decision(
    conn: Connection, a: int, b: int, decision: str, by: str | None, pair: Pair | None
) -> None:
    conn.execute(
        sa.text(
            """
            INSERT INTO duplicate_decisions (a_id, b_id, decision, decided_by, score, reasons)
            VALUES (:a, :b, :d, :by, :score, CAST(:reasons AS jsonb))
            ON CONFLICT (a_id, b_id) DO UPDATE
               SET decision = EXCLUDED.decision, decided_at = now(),
                   decided_by = EXCLUDED.decided_by, score = EXCLUDED.score,
                   reasons = EXCLUDED.reasons
            """
        ),
        {
            "a": min(a, b),
            "b": max(a, b),
            "d": decision,
            "by": by,
            "score": pair.score if pair else None,
            "reasons": json.dumps(pair.reasons if pair else []),
        },
    )


def _pair_of(conn: Connection, a: int, b: int) -> Pair | None:
    for p in candidate_pairs(conn, [a], min_score=0.0):
        if {p.a["id"], p.b["id"]} == {a, b}:
            return p
    return None


def keep_apart(conn: Connection, a: int, b: int, by: str | None = None) -> dict[str, Any]:
    """Remember that `a` and `b` are distinct structures: never proposed as a pair again."""
    _lock_pair(conn, a, b)
    pair = _pair_of(conn, a, b)
    _record_decision(conn, a, b, "kept_apart", by, pair)
    return {"a": min(a, b), "b": max(a, b), "decision": "kept_apart"}


def _empty(v: Any) -> bool:
    return v in (None, "", [], {})


def _jsonable(v: Any) -> Any:
    return v.isoformat() if hasattr(v, "isoformat") else v


def merge(
    conn: Connection, keep: int, other: int, by: str | None = None, version: int | None = None
) -> dict[str, Any]:
    """Merge `other` into `keep` (one transaction: the caller's); what was done.

    The survivor keeps its values and fills its empty ones from the other (sectors united);
    every source link moves to it; the values each source gave are kept as provenance; the
    merged id redirects; the decision is remembered. `version`, when given, must be the
    survivor's current version (If-Match).
    """
    rows = _lock_pair(conn, keep, other)
    survivor, gone = rows[keep], rows[other]
    if version is not None and int(survivor["version"]) != version:
        raise DuplicateError(
            f"la structure {keep} a changé (version {survivor['version']})", kind="conflict"
        )
    pair = _pair_of(conn, keep, other)
    provenance: dict[str, dict[str, Any]] = {}
    changes: dict[str, Any] = {}
    label_keep = f"{survivor['source']}:{survivor['source_id']}"
    label_gone = f"{gone['source']}:{gone['source_id']}"
    for f in MERGE_FIELDS:
        va, vb = survivor[f], gone[f]
        if _empty(vb):
            continue
        if _empty(va):
            changes[f] = vb
            provenance[f] = {label_gone: _jsonable(vb)}
        elif va != vb:
            provenance[f] = {label_keep: _jsonable(va), label_gone: _jsonable(vb)}
    sectors = sorted(set(survivor["sectors"] or []) | set(gone["sectors"] or []))
    if sectors != sorted(survivor["sectors"] or []):
        changes["sectors"] = sectors
    if survivor["esus"] is False and gone["esus"] is True:
        changes["esus"] = True
    extra = dict(survivor["extra"] or {})
    also = dict(extra.get("_autres_sources", {}))
    also[gone["source"]] = gone["source_id"]
    for src, sid in (gone["extra"] or {}).get("_autres_sources", {}).items():
        also.setdefault(src, sid)
    extra["_autres_sources"] = also
    changes["extra"] = extra
    point = survivor["geom"] is None and gone["geom"] is not None
    snapshot = {
        k: _jsonable(v)
        for k, v in gone.items()
        if k not in ("geom", "geom_l93", "search", "name_key", "geojson")
    }
    snapshot["geometry"] = json.loads(gone["geojson"]) if gone["geojson"] else None
    # Every source link of the merged structure (its own and those merged into it) moves.
    moved = conn.execute(
        sa.text(
            "UPDATE structure_sources SET structure_id = :keep WHERE structure_id = :gone "
            "RETURNING source, source_id"
        ),
        {"keep": keep, "gone": other},
    ).all()
    for table in ("structure_location_history", "land_needs"):
        # Table names are literals of this module.
        conn.execute(
            sa.text(f"UPDATE {table} SET structure_id = :keep WHERE structure_id = :gone"),  # noqa: S608
            {"keep": keep, "gone": other},
        )
    conn.execute(
        sa.text("UPDATE structure_merges SET into_id = :keep WHERE into_id = :gone"),
        {"keep": keep, "gone": other},
    )
    # Decisions about the merged structure now concern the survivor.
    conn.execute(
        sa.text(
            """
            INSERT INTO duplicate_decisions (a_id, b_id, decision, decided_at, decided_by,
                                             score, reasons)
            SELECT least(n, :keep), greatest(n, :keep), decision, decided_at, decided_by,
                   score, reasons
              FROM (SELECT CASE WHEN a_id = :gone THEN b_id ELSE a_id END AS n, *
                      FROM duplicate_decisions WHERE :gone IN (a_id, b_id)) d
             WHERE n <> :keep
            ON CONFLICT (a_id, b_id) DO NOTHING
            """
        ),
        {"keep": keep, "gone": other},
    )
    conn.execute(sa.text("DELETE FROM structures WHERE id = :gone"), {"gone": other})
    conn.execute(
        sa.text(
            """
            INSERT INTO structure_merges (merged_id, into_id, merged_by, snapshot, provenance)
            VALUES (:gone, :keep, :by, CAST(:snap AS jsonb), CAST(:prov AS jsonb))
            """
        ),
        {
            "gone": other,
            "keep": keep,
            "by": by,
            "snap": json.dumps(snapshot, default=str),
            "prov": json.dumps(provenance, default=str),
        },
    )
    _record_decision(conn, keep, other, "merged", by, pair)
    _apply(conn, keep, changes, gone["geojson"] if point else None)
    return {
        "kept": keep,
        "merged": other,
        "sources": [f"{s}:{i}" for s, i in moved],
        "filled": sorted(k for k in changes if k != "extra"),
        "provenance": provenance,
        "score": None if pair is None else round(pair.score, 3),
        "reasons": [] if pair is None else pair.reasons,
    }


# Columns `merge` may write (an allow-list) and their SQL casts.
_CASTS = {"sectors": "text[]", "opened_on": "date", "closed_on": "date", "extra": "jsonb"}
_WRITABLE = {*MERGE_FIELDS, "sectors", "esus", "extra"}


def _apply(conn: Connection, sid: int, changes: dict[str, Any], geojson: str | None) -> None:
    sets: list[str] = []
    params: dict[str, Any] = {"id": sid}
    for k, v in changes.items():
        if k not in _WRITABLE:
            continue
        cast = _CASTS.get(k)
        sets.append(f"{k} = CAST(:p_{k} AS {cast})" if cast else f"{k} = :p_{k}")
        params[f"p_{k}"] = json.dumps(v) if k == "extra" else _jsonable(v)
    if geojson:
        sets.append(
            "geom = ST_SetSRID(ST_GeomFromGeoJSON(:geo), 4326), location_precision = 'provided', "
            "location_source = 'fusion', geocode_status = NULL, located_at = now()"
        )
        params["geo"] = geojson
    if sets:
        # Keys from _WRITABLE (an allow-list); values bound.
        conn.execute(
            sa.text(f"UPDATE structures SET {', '.join(sets)} WHERE id = :id"),  # noqa: S608
            params,
        )


# --- imports --------------------------------------------------------------------------------

REPORT_LIMIT = 500  # pairs and conflicts listed in an import report (all are counted)

# The file's rows that carry a SIRET or an RNA: sent as JSON by the row path, read from the
# staging table by the bulk path (carteco/importer/bulk.py). Fixed texts, nothing user-given.
_ROWS_SENT = """jsonb_to_recordset(CAST(:rows AS jsonb))
           AS r(source_id text, name text, commune_name text, insee_code text, postcode text)"""
_ROWS_STAGED = """(SELECT source_id, v->>'name' AS name, v->>'commune_name' AS commune_name,
                   v->>'insee_code' AS insee_code, v->>'postcode' AS postcode
              FROM bulk_stage WHERE siret IS NOT NULL OR rna IS NOT NULL) AS r"""

_CONFLICTS = """
    SELECT r.source_id, s.id, s.source, s.source_id AS owner_id, s.siret, s.rna,
           s.name, s.commune_name, s.insee_code, s.postcode,
           r.name AS new_name, r.commune_name AS new_commune, r.insee_code AS new_insee,
           r.postcode AS new_postcode
      FROM /*rows*/
      JOIN structure_sources l ON l.source = :source AND l.source_id = r.source_id
      JOIN structures s ON s.id = l.structure_id
     WHERE (s.source, s.source_id) <> (:source, r.source_id)
       AND (carteco_name_key(s.name) <> carteco_name_key(r.name)
            OR (r.insee_code IS NOT NULL AND s.insee_code IS NOT NULL
                AND r.insee_code <> s.insee_code)
            OR (r.insee_code IS NULL AND r.commune_name IS NOT NULL AND s.commune_name IS NOT NULL
                AND carteco_name_key(r.commune_name) <> carteco_name_key(s.commune_name)))
    """


def _commune(name: str | None, code: str | None) -> str | None:
    """`Niort (79191)`, or whichever of the two is known."""
    if name and code:
        return f"{name} ({code})"
    return name or code


def review_import(
    conn: Connection, source: str, records: Iterable[Any], min_score: float = DEFAULT_MIN_SCORE
) -> dict[str, Any]:
    """Possible duplicates and field conflicts of an import, inside its transaction.

    Possible duplicates: structures this import created that look like structures of other
    sources (score ≥ `min_score`). Conflicts: rows matched to another source's structure by
    SIRET or RNA whose name or commune differ, with the value each source gave.
    """
    rows = [
        {
            "source_id": r.source_id,
            "name": r.values.get("name"),
            "commune_name": r.values.get("commune_name"),
            "insee_code": r.values.get("insee_code"),
            "postcode": r.values.get("postcode"),
        }
        for r in records
        if r.values.get("siret") or r.values.get("rna")
    ]
    sent = {"rows": json.dumps(rows, default=str)} if rows else None
    return _review(conn, source, min_score, _ROWS_SENT, sent)


def review_staged(
    conn: Connection, source: str, min_score: float = DEFAULT_MIN_SCORE, first_load: bool = False
) -> dict[str, Any]:
    """The same review for the bulk path, the file's rows read from its staging table.

    `first_load`: the registry was empty before this import. Then no structure of another
    source exists to be a duplicate, and each row's link names the structure made from it:
    nothing to compare, and the review is empty without reading the million rows again.
    """
    if first_load:
        return _review_result([], [])
    return _review(conn, source, min_score, _ROWS_STAGED, {})


def _review(
    conn: Connection,
    source: str,
    min_score: float,
    rows_sql: str,
    rows_params: dict[str, Any] | None,
) -> dict[str, Any]:
    others = conn.execute(
        sa.text("SELECT EXISTS (SELECT 1 FROM structures WHERE source <> :s)"), {"s": source}
    ).scalar()
    # The structures this import created: its source's, created in this very transaction.
    created = (
        []
        if not others
        else [
            int(i)
            for i in conn.execute(
                sa.text("SELECT id FROM structures WHERE source = :s AND created_at = now()"),
                {"s": source},
            ).scalars()
        ]
    )
    dups = []
    if created:
        new = set(created)
        for p in candidate_pairs(conn, created, min_score):
            other = p.b if p.a["id"] in new else p.a
            if other["source"] != source:
                dups.append(p.as_dict())
    conflicts = []
    if rows_params is not None:
        sql = sa.text(_CONFLICTS.replace("/*rows*/", rows_sql))
        for c in conn.execute(sql, {**rows_params, "source": source}).mappings():
            by = "SIRET" if c["siret"] else "RNA"
            fields = {}
            if c["name"] != c["new_name"]:
                fields["name"] = {c["source"]: c["name"], source: c["new_name"]}
            if (c["insee_code"], c["commune_name"]) != (c["new_insee"], c["new_commune"]):
                fields["commune"] = {
                    c["source"]: _commune(c["commune_name"], c["insee_code"]),
                    source: _commune(c["new_commune"], c["new_insee"]),
                }
            conflicts.append(
                {
                    "structure_id": int(c["id"]),
                    "source_id": c["source_id"],
                    "matched_by": by,
                    "identifier": c["siret"] or c["rna"],
                    "fields": fields,
                }
            )
    return _review_result(dups, conflicts)


def _review_result(dups: list[dict[str, Any]], conflicts: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "possible_duplicates": len(dups),
        "duplicates": dups[:REPORT_LIMIT],
        "field_conflicts": len(conflicts),
        "conflicts": conflicts[:REPORT_LIMIT],
    }
