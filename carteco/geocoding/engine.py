"""The local geocoder: candidate search in PostGIS, scoring in Python, deterministic."""

from __future__ import annotations

import difflib
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from carteco.db import read_sql
from carteco.geocoding.normalize import TYPE_WORDS, ParsedAddress, parse

RESULT_TYPES = ("housenumber", "street", "locality", "municipality")
# Below this street similarity a candidate street is not the queried one: answer the commune.
MIN_STREET_SIM = 0.65
# Score of a commune-level answer when the query named a street we could not find.
MUNICIPALITY_FALLBACK = 0.4
# Street similarity required when the street is not in the queried commune (or none given).
STRICT_STREET_SIM = 0.85

_COMMUNES = sa.text(read_sql("geocoding_communes_batch.sql"))
_CANDIDATES = sa.text(read_sql("geocoding_candidates_batch.sql"))
# Memo sizes: commune answers repeat a lot in real files; street rows are per batch.
_MAX_COMMUNE_MEMO = 20000
_REVERSE = sa.text(read_sql("geocoding_reverse.sql"))


@dataclass
class GeocodeResult:
    """One answer, with the api-adresse property names."""

    lon: float
    lat: float
    label: str
    score: float
    type: str
    id: str
    name: str
    postcode: str | None
    citycode: str
    city: str
    context: str = ""
    housenumber: str | None = None
    street: str | None = None
    oldcitycode: str | None = None
    oldcity: str | None = None
    distance: float | None = None

    def properties(self) -> dict[str, Any]:
        """The GeoJSON properties, api-adresse style (empty fields left out)."""
        d = asdict(self)
        d.pop("lon")
        d.pop("lat")
        return {k: v for k, v in d.items() if v is not None}

    def feature(self) -> dict[str, Any]:
        """A GeoJSON Feature."""
        return {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [self.lon, self.lat]},
            "properties": self.properties(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GeocodeResult:
        """Rebuild a result from its `as_dict` form (cache, HTTP answers)."""
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in names})

    def as_dict(self) -> dict[str, Any]:
        """Everything, coordinates included (for the cache)."""
        return asdict(self)


@dataclass
class _Commune:
    code: str
    kind: str
    name: str
    name_key: str
    current_code: str
    current_name: str
    departement_code: str | None
    postcodes: list[str]
    lon: float | None
    lat: float | None
    score: float
    street_codes: list[str] = field(default_factory=list)


def _ratio(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def _dep_of(postcode: str) -> str:
    return postcode[:3] if postcode.startswith("97") else postcode[:2]


class LocalGeocoder:
    """Geocode against the address reference loaded in PostGIS (`geodata load-addresses`)."""

    name = "local"

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._communes_memo: dict[tuple[Any, ...], list[_Commune]] = {}
        self._streets_memo: dict[tuple[Any, ...], list[Any]] = {}
        self._contexts: dict[str, str] | None = None

    # -- communes -------------------------------------------------------------------------
    def _context(self, dep: str | None) -> str:
        if self._contexts is None:
            rows = self.conn.execute(
                sa.text(
                    "SELECT d.code, d.name, r.name FROM territories d "
                    "LEFT JOIN territories r ON r.level = 'region' AND r.code = d.region_code "
                    "WHERE d.level = 'departement' ORDER BY d.code, d.layer"
                )
            )
            self._contexts = {}
            for code, name, region in rows:
                self._contexts.setdefault(code, ", ".join(p for p in (code, name, region) if p))
        if not dep:
            return ""
        return self._contexts.get(dep, dep)

    def _communes(
        self, postcode: str | None, city_key: str, tails: list[str], citycodes: list[str]
    ) -> list[_Commune]:
        key = (postcode, city_key, tuple(tails), tuple(citycodes))
        if key not in self._communes_memo:
            self._prefetch_communes([key])
        return self._communes_memo[key]

    def _prefetch_communes(self, keys: list[tuple[Any, ...]]) -> None:
        """Resolve the communes of many queries in one round trip."""
        todo = sorted({k for k in keys if k not in self._communes_memo}, key=repr)
        if not todo:
            return
        if len(self._communes_memo) > _MAX_COMMUNE_MEMO:
            self._communes_memo.clear()
        rows = self.conn.execute(
            _COMMUNES,
            {
                "postcodes": [k[0] or "" for k in todo],
                "cities": [k[1] for k in todo],
                "tails": ["|".join(k[2]) for k in todo],
                "citycodes": ["|".join(k[3]) for k in todo],
            },
        ).mappings()
        grouped: dict[int, list[Any]] = {}
        for r in rows:
            grouped.setdefault(int(r["i"]) - 1, []).append(r)
        for n, key in enumerate(todo):
            self._communes_memo[key] = self._build_communes(grouped.get(n, []), *key)

    @staticmethod
    def _build_communes(
        rows: list[Any],
        postcode: str | None,
        city_key: str,
        tails: tuple[str, ...],
        citycodes: tuple[str, ...],
    ) -> list[_Commune]:
        out: list[_Commune] = []
        for r in rows:
            if citycodes and r["code"] not in citycodes and r["current_code"] not in citycodes:
                continue
            parts: list[float] = []
            if postcode:
                if r["pc_match"]:
                    parts.append(1.0)
                elif r["departement_code"] and _dep_of(postcode) == r["departement_code"]:
                    parts.append(0.5)
                else:
                    parts.append(0.0)
            if city_key:
                parts.append(max(float(r["city_sim"]), _ratio(city_key, r["name_key"])))
            elif r["name_key"] in tails:
                parts.append(1.0)
            score = sum(parts) / len(parts) if parts else 1.0
            if r["kind"] == "ancienne" and not (city_key or tails):
                score *= 0.9  # a current commune answers a bare postcode better
            out.append(
                _Commune(
                    code=r["code"],
                    kind=r["kind"],
                    name=r["name"],
                    name_key=r["name_key"],
                    current_code=r["current_code"],
                    current_name=r["current_name"] or r["name"],
                    departement_code=r["departement_code"],
                    postcodes=list(r["postcodes"]),
                    lon=r["lon"],
                    lat=r["lat"],
                    score=round(score, 4),
                    street_codes=list(r["street_codes"]),
                )
            )
        out.sort(key=lambda c: (-c.score, c.kind != "commune", c.code, c.name))
        if out:
            best = out[0].score
            out = [c for c in out if c.score >= max(0.3, best - 0.35)][:12]
        return out

    def _street_rows(self, street_key: str, codes: list[str], number: int | None) -> list[Any]:
        key = (street_key, tuple(codes), number)
        if key not in self._streets_memo:
            self._prefetch_streets([key])
        return self._streets_memo[key]

    def _prefetch_streets(self, keys: list[tuple[Any, ...]]) -> None:
        """Fetch the candidate streets (and nearby numbers) of many queries in one round trip."""
        todo = sorted({k for k in keys if k not in self._streets_memo}, key=repr)
        if not todo:
            return
        rows = self.conn.execute(
            _CANDIDATES,
            {
                "keys": [k[0] for k in todo],
                "codes": ["|".join(k[1]) for k in todo],
                "numbers": [k[2] for k in todo],
                "limits": [8 if k[1] else 15 for k in todo],
            },
        ).mappings()
        grouped: dict[int, list[Any]] = {}
        for r in rows:
            grouped.setdefault(int(r["i"]) - 1, []).append(r)
        for n, key in enumerate(todo):
            self._streets_memo[key] = grouped.get(n, [])

    def search_many(self, queries: list[dict[str, Any]]) -> list[list[GeocodeResult]]:
        """`search` for many queries (keyword dicts), with three round trips per batch."""
        self._streets_memo.clear()
        parsed = [parse(q["q"], postcode=q.get("postcode"), city=q.get("city")) for q in queries]
        self._prefetch_communes(
            [(None, "", tuple(t for _, t in p.tails), ()) for p in parsed if p.tails]
        )
        hyps = [
            (h, [q["citycode"]] if q.get("citycode") else [])
            for p, q in zip(parsed, queries, strict=True)
            for h in self._hypotheses(p)
        ]
        self._prefetch_communes(
            [(h.postcode, h.city_key, (), tuple(cc)) for h, cc in hyps if _has_info(h, cc)]
        )
        street_keys = []
        for h, cc in hyps:
            if not h.street_key:
                continue
            communes = self._communes(h.postcode, h.city_key, [], cc) if _has_info(h, cc) else []
            if communes or not _has_info(h, cc):
                codes = sorted({c for cm in communes for c in cm.street_codes})
                street_keys.append((h.street_key, tuple(codes), h.number))
        self._prefetch_streets(street_keys)
        out = [self.search(**q) for q in queries]
        self._streets_memo.clear()
        return out

    def _hypotheses(self, p: ParsedAddress) -> list[ParsedAddress]:
        """The readings of a query: as parsed, and with its last words as the commune."""
        hypotheses = [p]
        if p.tails:
            # No comma: the last words may be the commune ("24 rue x paris 10").
            matched = self._communes(None, "", [t for _, t in p.tails], [])
            hits = {c.name_key for c in matched}
            best_k = max((k for k, t in p.tails if t in hits), default=0)
            if best_k:
                words = p.street_key.split()
                tail = dict(p.tails)[best_k]
                hypotheses.insert(
                    0,
                    ParsedAddress(
                        number=p.number,
                        suffix=p.suffix,
                        street=" ".join(words[:-best_k]),
                        street_key=" ".join(words[:-best_k]),
                        postcode=p.postcode,
                        city=tail,
                        city_key=tail,
                        lieu_dit=p.lieu_dit,
                    ),
                )
        return hypotheses

    # -- search ---------------------------------------------------------------------------
    def search(
        self,
        q: str,
        limit: int = 5,
        postcode: str | None = None,
        citycode: str | None = None,
        type: str | None = None,
        lat: float | None = None,
        lon: float | None = None,
        city: str | None = None,
    ) -> list[GeocodeResult]:
        """Best answers for a free-text address, best first (score in [0, 1])."""
        p = parse(q, postcode=postcode, city=city)
        citycodes = [citycode] if citycode else []
        results: list[GeocodeResult] = []
        for h in self._hypotheses(p):  # both readings compete on score
            results.extend(self._search_parsed(h, citycodes))
        if type:
            results = [r for r in results if r.type == type]
        if lat is not None and lon is not None:
            for r in results:
                d = _km(lat, lon, r.lat, r.lon)
                r.score = round(min(1.0, r.score + 0.05 * max(0.0, 1 - d / 50)), 4)
        # Deterministic order: score, then finer types, then identifier.
        results.sort(key=lambda r: (-r.score, RESULT_TYPES.index(r.type), r.id))
        seen: set[str] = set()
        out = []
        for r in results:
            if r.id not in seen:
                seen.add(r.id)
                out.append(r)
        return out[:limit]

    def _search_parsed(self, p: ParsedAddress, citycodes: list[str]) -> list[GeocodeResult]:
        has_commune_info = _has_info(p, citycodes)
        communes = self._communes(p.postcode, p.city_key, [], citycodes) if has_commune_info else []
        results: list[GeocodeResult] = []
        if p.street_key and (communes or not has_commune_info):
            codes = sorted({c for cm in communes for c in cm.street_codes})
            results.extend(self._streets(p, communes, codes, has_commune_info))
        penalty = MUNICIPALITY_FALLBACK if p.street_key else 1.0
        for c in communes[:5]:
            if c.lon is None or c.lat is None:
                continue
            results.append(self._municipality(c, round(c.score * penalty, 4)))
        return results

    def _municipality(self, c: _Commune, score: float) -> GeocodeResult:
        pc = c.postcodes[0] if len(c.postcodes) == 1 else None
        # Old codes with no name of their own (pre-1968 renumbering) answer as the current one.
        old = c.kind == "ancienne" and c.name != c.current_name
        return GeocodeResult(
            lon=float(c.lon or 0),
            lat=float(c.lat or 0),
            label=f"{c.name} ({c.current_name})" if old else c.name,
            score=score,
            type="municipality",
            id=c.code if old else c.current_code,
            name=c.name,
            postcode=pc,
            citycode=c.current_code,
            city=c.current_name,
            context=self._context(c.departement_code),
            oldcitycode=c.code if old else None,
            oldcity=c.name if old else None,
        )

    def _streets(
        self, p: ParsedAddress, communes: list[_Commune], codes: list[str], has_info: bool
    ) -> list[GeocodeResult]:
        rows = self._street_rows(p.street_key, codes, p.number)
        streets: dict[int, list[Any]] = {}
        for r in rows:
            streets.setdefault(int(r["street_id"]), []).append(r)
        results = []
        for group in streets.values():
            s = group[0]
            ss = _street_sim(p.street_key, s["street_key"], float(s["sim"]))
            cs = self._street_commune_score(s, communes) if has_info else 0.6
            # A look-alike street elsewhere ("rue bellot" / "rue amelot") is not an answer:
            # outside the queried commune, the street must match closely.
            if ss < (MIN_STREET_SIM if cs >= 0.9 else STRICT_STREET_SIM):
                continue
            results.append(self._street_result(p, group, ss, cs))
        return results

    @staticmethod
    def _street_commune_score(s: Any, communes: list[_Commune]) -> float:
        best = 0.0
        for c in communes:
            if s["insee_code"] in c.street_codes:
                score = c.score
                if s["insee_code"] not in (c.code, c.current_code):
                    score *= 0.7  # via the parent commune (Paris for "PARIS 19"), not exact
                if c.kind == "ancienne" and s["old_insee_code"] not in (None, c.code):
                    score *= 0.9
                best = max(best, score)
        return best

    def _street_result(
        self, p: ParsedAddress, group: list[Any], ss: float, cs: float
    ) -> GeocodeResult:
        s = group[0]
        base = {
            "street": s["street"],
            "postcode": s["postcode"],
            "citycode": s["insee_code"],
            "city": s["commune"],
            "context": self._context(_dep_of(s["insee_code"])),
            "oldcitycode": s["old_insee_code"],
            "oldcity": s["old_commune"],
        }
        city_label = " ".join(x for x in (s["postcode"], s["commune"]) if x)
        if p.number is not None:
            addrs = [a for a in group if a["address_id"] is not None]
            same = [a for a in addrs if a["number"] == p.number]
            exact = [a for a in same if a["suffix"] == p.suffix]
            hit = exact[0] if exact else (same[0] if same else None)
            if hit is not None:
                num_score = 1.0 if exact else 0.8
                hn = f"{hit['number']}{' ' + hit['suffix'] if hit['suffix'] else ''}"
                return GeocodeResult(
                    lon=float(hit["lon"]),
                    lat=float(hit["lat"]),
                    label=f"{hn} {s['street']} {city_label}".strip(),
                    score=_score(0.5 * ss + 0.3 * cs + 0.2 * num_score),
                    type="housenumber",
                    id=hit["ban_id"] or f"{s['insee_code']}_{s['street_id']}_{hn}",
                    name=f"{hn} {s['street']}",
                    housenumber=hn,
                    **{**base, "postcode": hit["address_postcode"] or s["postcode"]},
                )
            lon, lat, num_score = _interpolate(p.number, addrs)
            if lon is None or lat is None:
                lon, lat, num_score = float(s["street_lon"]), float(s["street_lat"]), 0.2
            return GeocodeResult(
                lon=lon,
                lat=lat,
                label=f"{s['street']} {city_label}".strip(),
                score=_score(0.5 * ss + 0.3 * cs + 0.2 * num_score),
                type="street",
                id=f"{s['insee_code']}_s{s['street_id']}",
                name=s["street"],
                **base,
            )
        kind = "locality" if (s["is_locality"] or p.lieu_dit) else "street"
        return GeocodeResult(
            lon=float(s["street_lon"]),
            lat=float(s["street_lat"]),
            label=f"{s['street']} {city_label}".strip(),
            score=_score(0.65 * ss + 0.35 * cs),
            type=kind,
            id=f"{s['insee_code']}_s{s['street_id']}",
            name=s["street"],
            **base,
        )

    # -- reverse --------------------------------------------------------------------------
    def reverse(
        self, lon: float, lat: float, limit: int = 1, radius: float = 500.0
    ) -> list[GeocodeResult]:
        """Nearest addresses to a point within `radius` metres (KNN), nearest first."""
        rows = self.conn.execute(
            _REVERSE, {"lon": lon, "lat": lat, "limit": max(limit, 1), "radius": radius}
        ).mappings()
        out = []
        for r in rows:
            hn = f"{r['number']}{' ' + r['suffix'] if r['suffix'] else ''}" if r["number"] else None
            city_label = " ".join(
                x for x in (r["address_postcode"] or r["postcode"], r["commune"]) if x
            )
            name = f"{hn} {r['street']}" if hn else r["street"]
            dist = float(r["distance"])
            out.append(
                GeocodeResult(
                    lon=float(r["lon"]),
                    lat=float(r["lat"]),
                    label=f"{name} {city_label}",
                    score=_score(1 - min(dist, radius) / (radius * 2)),
                    type="housenumber" if hn else "street",
                    id=r["ban_id"] or f"{r['insee_code']}_{r['address_id']}",
                    name=name,
                    housenumber=hn,
                    street=r["street"],
                    postcode=r["address_postcode"] or r["postcode"],
                    citycode=r["insee_code"],
                    city=r["commune"],
                    context=self._context(_dep_of(r["insee_code"])),
                    distance=round(dist, 1),
                )
            )
        return out[:limit]


def _has_info(p: ParsedAddress, citycodes: list[str]) -> bool:
    return bool(p.postcode or p.city_key or citycodes)


def _street_sim(query: str, cand: str, trgm: float) -> float:
    """Similarity of two street keys, bounded by that of their names without the type word."""
    full = max(trgm, _ratio(query, cand))
    qn, cn = _name_part(query), _name_part(cand)
    if qn and cn:
        full = min(full, _ratio(qn, cn) + 0.1)
    return min(full, 1.0)


def _name_part(key: str) -> str:
    words = key.split()
    if words and words[0] in TYPE_WORDS:
        words = words[1:]
    return " ".join(words)


def _score(x: float) -> float:
    return round(max(0.0, min(1.0, x)), 4)


def _km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    x = math.radians(lon2 - lon1) * math.cos(math.radians((lat1 + lat2) / 2))
    y = math.radians(lat2 - lat1)
    return 6371.0 * math.hypot(x, y)


def _interpolate(number: int, addrs: list[Any]) -> tuple[float | None, float | None, float]:
    """Point between the nearest lower and upper numbers of the same side of the street."""
    side = [a for a in addrs if a["number"] is not None and a["number"] % 2 == number % 2]
    lower = max((a for a in side if a["number"] < number), key=lambda a: a["number"], default=None)
    upper = min((a for a in side if a["number"] > number), key=lambda a: a["number"], default=None)
    if lower is None or upper is None:
        return None, None, 0.0
    t = (number - lower["number"]) / (upper["number"] - lower["number"])
    lon = float(lower["lon"]) + t * (float(upper["lon"]) - float(lower["lon"]))
    lat = float(lower["lat"]) + t * (float(upper["lat"]) - float(lower["lat"]))
    return lon, lat, 0.5


def geocode_one(conn: Connection, q: str, **kwargs: Any) -> GeocodeResult | None:
    """The best local answer for one address, or None."""
    res = LocalGeocoder(conn).search(q, limit=1, **kwargs)
    return res[0] if res else None
