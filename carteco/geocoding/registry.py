"""Geocode the registry: place structures, cache lookups, check communes, correct by hand."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from carteco.db import read_sql
from carteco.geocoding.backends import Backend, Query
from carteco.geocoding.engine import GeocodeResult, _km
from carteco.geocoding.normalize import analyse
from carteco.geocoding.reference import refresh_communes

DEFAULT_MIN_SCORE = 0.5
# Points that a person or the source placed are never moved by a geocoding run.
PROTECTED = ("provided", "manual")


@dataclass
class GeocodeSummary:
    """What one `carteco geocode` run did."""

    structures: int = 0
    lookups: int = 0
    cache_hits: int = 0
    by_type: dict[str, int] = field(default_factory=dict)
    geocoded: int = 0
    to_review: int = 0
    failed: int = 0
    mismatches: int = 0


def query_text(address: str | None, postcode: str | None, commune: str | None) -> str:
    """The one-line address sent to a geocoder."""
    tail = " ".join(p for p in (postcode, commune) if p)
    return ", ".join(p for p in (address, tail) if p)


def cache_key(backend: str, text: str) -> str:
    """Cache key: backend and the normalised parts of the address."""
    return f"{backend}|{analyse(text).key()}"


_SELECT = sa.text(
    """
    SELECT id, address_line, postcode, commune_name, insee_code
      FROM structures
     WHERE (location_precision IS NULL OR location_precision NOT IN ('provided', 'manual'))
       AND (geocode_status = 'to_geocode'
            OR (:all AND (address_line IS NOT NULL OR postcode IS NOT NULL
                          OR commune_name IS NOT NULL)))
       AND (CAST(:source AS text) IS NULL OR source = :source)
     ORDER BY id
    """
)

_HISTORY = sa.text(
    """
    INSERT INTO structure_location_history (structure_id, geom, location_precision,
        location_score, location_source, located_at, replaced_by, reason)
    SELECT id, geom, location_precision, location_score, location_source, located_at,
           :by, :reason
      FROM structures
     WHERE id = :id AND geom IS NOT NULL
       AND NOT ST_Equals(geom, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326))
    """
)

_PLACE = sa.text(
    """
    UPDATE structures
       SET geom = CASE WHEN CAST(:lon AS float8) IS NULL THEN geom
                       ELSE ST_SetSRID(ST_MakePoint(:lon, :lat), 4326) END,
           location_precision = COALESCE(CAST(:precision AS text), location_precision),
           location_score = COALESCE(CAST(:score AS float8), location_score),
           location_source = COALESCE(CAST(:backend AS text), location_source),
           located_at = CASE WHEN CAST(:lon AS float8) IS NULL THEN located_at ELSE now() END,
           geocode_status = :status
     WHERE id = :id
       AND (location_precision IS NULL OR location_precision NOT IN ('provided', 'manual'))
    """
)


def geocode_structures(
    engine: Engine,
    backend: Backend,
    source: str | None = None,
    all_: bool = False,
    min_score: float = DEFAULT_MIN_SCORE,
    chunk: int = 200,
    progress: Callable[[int, int], None] | None = None,
) -> GeocodeSummary:
    """Place the structures to geocode; below `min_score`: to_review; provided/manual never move."""
    summary = GeocodeSummary()
    with engine.begin() as conn:
        refresh_communes(conn)
        rows = conn.execute(_SELECT, {"all": all_, "source": source}).mappings().all()
    summary.structures = len(rows)
    done = 0
    for start in range(0, len(rows), chunk):
        part = rows[start : start + chunk]
        texts = [query_text(r["address_line"], r["postcode"], r["commune_name"]) for r in part]
        keys = [cache_key(backend.name, t) for t in texts]
        with engine.begin() as conn:
            cached = _cache_get(conn, keys)
        missing = sorted({k for k in keys if k not in cached})
        if missing:
            first = {k: i for i, k in reversed(list(enumerate(keys)))}
            queries = [Query(texts[first[k]]) for k in missing]
            found = backend.geocode_batch(queries)
            summary.lookups += len(queries)
            fresh = dict(zip(missing, found, strict=True))
            with engine.begin() as conn:
                _cache_put(conn, backend.name, fresh)
            cached.update({k: (v.as_dict() if v else None) for k, v in fresh.items()})
        summary.cache_hits += sum(1 for k in keys if k not in missing)
        with engine.begin() as conn:
            for r, k in zip(part, keys, strict=True):
                res = cached.get(k)
                _place(
                    conn,
                    r["id"],
                    GeocodeResult.from_dict(res) if res else None,
                    backend.name,
                    min_score,
                    summary,
                )
            check_locations(conn, [r["id"] for r in part])
        done += len(part)
        if progress:
            progress(done, len(rows))
    with engine.begin() as conn:
        check_locations(conn)
        summary.mismatches = int(
            conn.execute(
                sa.text(
                    "SELECT count(*) FROM structures "
                    "WHERE location_check IN ('postcode_mismatch', 'insee_mismatch')"
                )
            ).scalar_one()
        )
    return summary


def _place(
    conn: Connection,
    sid: int,
    res: GeocodeResult | None,
    backend: str,
    min_score: float,
    summary: GeocodeSummary,
) -> None:
    if res is None:
        conn.execute(
            _PLACE,
            {"id": sid, "lon": None, "lat": None, "precision": None, "score": None,
             "backend": None, "status": "failed"},
        )  # fmt: skip
        summary.failed += 1
        return
    status = "geocoded" if res.score >= min_score else "to_review"
    conn.execute(
        _HISTORY,
        {"id": sid, "by": f"geocode:{backend}", "reason": "géocodage", "lon": res.lon,
         "lat": res.lat},
    )  # fmt: skip
    conn.execute(
        _PLACE,
        {"id": sid, "lon": res.lon, "lat": res.lat, "precision": res.type, "score": res.score,
         "backend": backend, "status": status},
    )  # fmt: skip
    summary.by_type[res.type] = summary.by_type.get(res.type, 0) + 1
    if status == "geocoded":
        summary.geocoded += 1
    else:
        summary.to_review += 1


def _cache_get(conn: Connection, keys: list[str]) -> dict[str, dict[str, Any] | None]:
    rows = conn.execute(
        sa.text("SELECT key, result FROM geocode_cache WHERE key = ANY(:keys)"),
        {"keys": sorted(set(keys))},
    )
    return {r[0]: r[1] for r in rows}


def _cache_put(conn: Connection, backend: str, fresh: dict[str, GeocodeResult | None]) -> None:
    conn.execute(
        sa.text(
            "INSERT INTO geocode_cache (key, backend, result) "
            "VALUES (:key, :backend, CAST(:result AS jsonb)) "
            "ON CONFLICT (key) DO UPDATE SET result = EXCLUDED.result, created_at = now()"
        ),
        [
            {
                "key": k,
                "backend": backend,
                "result": json.dumps(v.as_dict(), ensure_ascii=False) if v else None,
            }
            for k, v in fresh.items()
        ],
    )


def check_locations(conn: Connection, ids: list[int] | None = None) -> int:
    """Flag located structures whose declared postcode / INSEE code disagrees with the point."""
    return len(conn.execute(sa.text(read_sql("geocoding_check.sql")), {"ids": ids}).all())


def review_rows(conn: Connection, limit: int = 100) -> list[dict[str, Any]]:
    """Structures to review or with a commune mismatch, worst first."""
    rows = conn.execute(
        sa.text(
            """
            SELECT id, name, address_line, postcode, commune_name, location_precision,
                   location_score, location_source, geocode_status, location_check,
                   commune_code, arrondissement_code
              FROM structures
             WHERE geocode_status IN ('to_review', 'failed')
                OR location_check IN ('postcode_mismatch', 'insee_mismatch')
             ORDER BY (location_check IN ('postcode_mismatch', 'insee_mismatch')) DESC,
                      geocode_status = 'failed' DESC,
                      location_score ASC NULLS FIRST, id
             LIMIT :limit
            """
        ),
        {"limit": limit},
    ).mappings()
    return [dict(r) for r in rows]


def set_manual_location(
    conn: Connection,
    sid: int,
    lon: float,
    lat: float,
    by: str,
    score: float | None = None,
    reason: str = "correction manuelle",
) -> dict[str, Any] | None:
    """Set a structure's point by hand (precision manual), keeping the previous one in history."""
    exists = conn.execute(
        sa.text("SELECT id FROM structures WHERE id = :id FOR UPDATE"), {"id": sid}
    ).scalar()
    if exists is None:
        return None
    conn.execute(_HISTORY, {"id": sid, "by": by, "reason": reason, "lon": lon, "lat": lat})
    row = (
        conn.execute(
            sa.text(
                """
            UPDATE structures
               SET geom = ST_SetSRID(ST_MakePoint(:lon, :lat), 4326),
                   location_precision = 'manual', location_score = :score,
                   location_source = :by, located_at = now(), geocode_status = 'geocoded'
             WHERE id = :id
            RETURNING id, ST_X(geom) AS lon, ST_Y(geom) AS lat, location_precision,
                      location_score, location_source, located_at, commune_code, version
            """
            ),
            {"id": sid, "lon": lon, "lat": lat, "score": score, "by": by},
        )
        .mappings()
        .one()
    )
    check_locations(conn, [sid])
    out = dict(row)
    # check_locations may write location_check, which bumps the version again: read both
    # after the last write, so the caller's ETag is the row's final version.
    after = (
        conn.execute(
            sa.text("SELECT location_check, version FROM structures WHERE id = :id"), {"id": sid}
        )
        .mappings()
        .one()
    )
    out["location_check"], out["version"] = after["location_check"], after["version"]
    out["history"] = int(
        conn.execute(
            sa.text("SELECT count(*) FROM structure_location_history WHERE structure_id = :id"),
            {"id": sid},
        ).scalar_one()
    )
    return out


@dataclass
class Move:
    """What a re-geocode would do to one structure (nothing is written)."""

    id: int
    name: str
    address: str
    old_type: str | None
    new_type: str | None
    old_score: float | None
    new_score: float | None
    metres: float | None  # None: no new answer (or no old point)
    old_lon: float | None = None
    old_lat: float | None = None
    new_lon: float | None = None
    new_lat: float | None = None


@dataclass
class DryRun:
    """A re-geocode diff: what would move, and by how much; protected points are listed apart."""

    compared: int = 0
    unchanged: int = 0
    moves: list[Move] = field(default_factory=list)
    lost: list[Move] = field(default_factory=list)
    protected: int = 0

    def buckets(self) -> dict[str, int]:
        """How many structures would move by less than 10 m, 10-50 m, 50-500 m, over 500 m."""
        out = {"< 10 m": 0, "10–50 m": 0, "50–500 m": 0, "> 500 m": 0}
        for m in self.moves:
            d = m.metres or 0.0
            out[next(k for k, top in _BUCKETS if d < top)] += 1
        return out


_BUCKETS = (("< 10 m", 10.0), ("10–50 m", 50.0), ("50–500 m", 500.0), ("> 500 m", float("inf")))
_DRY_SELECT = sa.text(
    """
    SELECT id, name, address_line, postcode, commune_name, location_precision, location_score,
           ST_X(geom) AS lon, ST_Y(geom) AS lat,
           (location_precision IN ('provided', 'manual')) AS protected
      FROM structures
     WHERE (address_line IS NOT NULL OR postcode IS NOT NULL OR commune_name IS NOT NULL)
       AND (CAST(:source AS text) IS NULL OR source = :source)
     ORDER BY id
    """
)


def geocode_dry_run(
    engine: Engine,
    backend: Backend,
    source: str | None = None,
    tolerance_m: float = 1.0,
    chunk: int = 500,
) -> DryRun:
    """Re-geocode every structure with an address, bypassing the cache, and report what would
    move and by how much, without writing anything; provided/manual points are only counted."""
    out = DryRun()
    with engine.connect() as conn:
        rows = conn.execute(_DRY_SELECT, {"source": source}).mappings().all()
    todo = [r for r in rows if not r["protected"]]
    out.protected = len(rows) - len(todo)
    for start in range(0, len(todo), chunk):
        part = todo[start : start + chunk]
        texts = [query_text(r["address_line"], r["postcode"], r["commune_name"]) for r in part]
        found = backend.geocode_batch([Query(t) for t in texts])
        for r, text, res in zip(part, texts, found, strict=True):
            out.compared += 1
            has_old = r["lon"] is not None and r["lat"] is not None
            dist = (
                round(_km(r["lat"], r["lon"], res.lat, res.lon) * 1000, 1)
                if res is not None and has_old
                else None
            )
            move = Move(
                id=int(r["id"]),
                name=r["name"],
                address=text,
                old_type=r["location_precision"],
                new_type=res.type if res else None,
                old_score=r["location_score"],
                new_score=res.score if res else None,
                metres=dist,
                old_lon=r["lon"],
                old_lat=r["lat"],
                new_lon=res.lon if res else None,
                new_lat=res.lat if res else None,
            )
            if res is None:
                if has_old:
                    out.lost.append(move)
                else:
                    out.unchanged += 1
            elif dist is not None and dist <= tolerance_m and move.old_type == move.new_type:
                out.unchanged += 1
            else:
                out.moves.append(move)
    out.moves.sort(key=lambda m: (-(m.metres if m.metres is not None else 1e12), m.id))
    return out
