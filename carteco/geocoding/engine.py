"""The local geocoder: candidate search in memory, housenumbers in PostGIS, deterministic.

Retrieval does not depend on a parse: the query is cut into tokens (`analyse`), every run of
words is looked up as a commune name (exact, word prefix, misspelt; in memory), every 5-digit
group as a postcode; candidate streets are those of the named communes plus, nationwide, those
holding words close to the query's rarest words (in-memory word and trigram index). Each
candidate is then scored on the run of words that best matches it, the commune named by
*other* words or a postcode, and the number.
"""

from __future__ import annotations

import array
import bisect
import collections
import difflib
import functools
import math
import re
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

import sqlalchemy as sa
from pyproj import Transformer
from sqlalchemy.engine import Connection

from carteco.db import read_sql
from carteco.geocoding.normalize import TYPE_WORDS, Analysis, analyse, commune_key
from carteco.settings import get_settings

RESULT_TYPES = ("housenumber", "street", "locality", "municipality")
# Below this street similarity a candidate street is not the queried one: answer the commune.
MIN_STREET_SIM = 0.65
# Score of a commune-level answer when the query named a street we could not find.
MUNICIPALITY_FALLBACK = 0.4
# Street similarity required when the street is not in the queried commune (or none given).
STRICT_STREET_SIM = 0.85

# Longest run of words tried as a commune name, and the words that never start a prefix
# search on their own (they begin hundreds of names).
_MAX_GRAM = 5
_GENERIC = frozenset(
    {
        "saint",
        "sainte",
        "saints",
        "saintes",
        "notre",
        "mont",
        "pont",
        "port",
        "bourg",
        "villeneuve",
        "ville",
        "val",
        "bois",
        "chateau",
        "fontaine",
        "grand",
        "petit",
        "neuf",
        "vieux",
        "haute",
        "haut",
        "bas",
        "basse",
    }
)
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
    importance: float | None = None

    def properties(self) -> dict[str, Any]:
        """The GeoJSON properties, api-adresse style (empty fields left out; x, y Lambert-93)."""
        d = asdict(self)
        d.pop("lon")
        d.pop("lat")
        x, y = _to_l93().transform(self.lon, self.lat)
        d["x"], d["y"] = round(x, 2), round(y, 2)
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
    population: int | None = None


@dataclass
class _Hit:
    """A commune named by a query: by a run of its words (span), a postcode or a code."""

    mode: str
    span: tuple[int, int] | None
    sim: float
    code: str
    kind: str
    name: str
    name_key: str
    current_code: str
    current_name: str
    departement_code: str | None
    postcodes: list[str]
    population: int | None
    lon: float | None
    lat: float | None
    street_codes: frozenset[str]


@dataclass
class _Query:
    a: Analysis
    citycode: str | None
    grams: dict[tuple[str, str], list[tuple[int, int]]]
    hits: list[_Hit] = field(default_factory=list)
    rows: list[Any] = field(default_factory=list)


@dataclass
class _CommuneRow:
    code: str
    kind: str
    name: str
    name_key: str
    current_code: str
    current_name: str
    departement_code: str | None
    postcodes: list[str]
    population: int | None
    lon: float | None
    lat: float | None
    street_codes: frozenset[str]


class _CommuneIndex:
    """Every commune, arrondissement and former commune in memory: names are looked up for
    every run of words of every query, far too many lookups for round trips."""

    def __init__(self, rows: list[_CommuneRow]) -> None:
        self.by_name: dict[str, list[_CommuneRow]] = {}
        self.by_postcode: dict[str, list[_CommuneRow]] = {}
        self.by_code: dict[str, list[_CommuneRow]] = {}
        self.by_start: dict[str, list[_CommuneRow]] = {}
        for r in rows:
            self.by_name.setdefault(r.name_key, []).append(r)
            for pc in r.postcodes:
                self.by_postcode.setdefault(pc, []).append(r)
            for code in {r.code, r.current_code}:
                self.by_code.setdefault(code, []).append(r)
            self.by_start.setdefault(r.name_key[:2], []).append(r)
        self.names = sorted(self.by_name)
        self.word_freq: collections.Counter[str] = collections.Counter()
        self.streets = _StreetIndex()
        self.contexts: dict[str, str] = {}  # département code → "code, name, region"

    def prefixed(self, gram: str) -> list[_CommuneRow]:
        """Communes whose name starts with these words ("saint ouen" → Saint-Ouen-sur-Seine)."""
        start = gram + " "
        i = bisect.bisect_left(self.names, start)
        out: list[_CommuneRow] = []
        while i < len(self.names) and self.names[i].startswith(start) and len(out) < 60:
            out.extend(self.by_name[self.names[i]])
            i += 1
        return out

    def fuzzy(self, gram: str) -> list[tuple[_CommuneRow, float]]:
        """Communes whose name is within a typo or two of these words."""
        out = []
        for r in self.by_start.get(gram[:2], []) + self.by_start.get(gram[:1] + "?", []):
            if abs(len(r.name_key) - len(gram)) > 2:
                continue
            sm = difflib.SequenceMatcher(None, gram, r.name_key, autojunk=False)
            if sm.real_quick_ratio() < 0.8 or sm.quick_ratio() < 0.8:
                continue
            sim = sm.ratio()
            if sim >= 0.8:
                out.append((r, round(sim, 4)))
        return out


_INDEXES: dict[str, _CommuneIndex] = {}
_ALL_COMMUNES = sa.text(read_sql("geocoding_communes_all.sql"))
_ALL_STREETS = sa.text(
    "SELECT id, street, street_key, insee_code, commune, postcode, old_insee_code, old_commune, "
    "is_locality, addresses, ST_X(geom) AS lon, ST_Y(geom) AS lat FROM geo_streets ORDER BY id"
)


def _commune_index(conn: Connection) -> _CommuneIndex:
    """The commune index of this reference (rebuilt when `refresh_communes` changed it)."""
    fp = (
        conn.execute(
            sa.text("SELECT value FROM geo_meta WHERE key = 'communes_fingerprint'")
        ).scalar()
        or ""
    )
    if fp not in _INDEXES:
        rows = conn.execute(_ALL_COMMUNES).mappings().all()
        children: dict[str, list[str]] = {}
        for r in rows:
            if r["kind"] == "arrondissement" and r["parent_code"]:
                children.setdefault(r["parent_code"], []).append(r["code"])
        built = []
        for r in rows:
            codes = {*children.get(r["current_code"], ()), r["current_code"], r["code"]}
            built.append(
                _CommuneRow(
                    code=r["code"],
                    kind=r["kind"],
                    name=r["name"],
                    name_key=r["name_key"],
                    current_code=r["current_code"],
                    current_name=r["current_name"] or r["name"],
                    departement_code=r["departement_code"],
                    postcodes=list(r["postcodes"]),
                    population=r["population"],
                    lon=r["lon"],
                    lat=r["lat"],
                    street_codes=frozenset(codes),
                )
            )
        index = _CommuneIndex(built)
        # How many streets hold each word: the nationwide probes use the rarest words.
        for r in conn.execute(_ALL_STREETS).mappings():
            key = r["street_key"]
            index.word_freq.update(set(key.split()))
            index.streets.add(
                _Street(
                    id=int(r["id"]),
                    street=r["street"],
                    street_key=key,
                    insee_code=r["insee_code"],
                    commune=r["commune"],
                    postcode=r["postcode"],
                    old_insee_code=r["old_insee_code"],
                    old_commune=r["old_commune"],
                    is_locality=bool(r["is_locality"]),
                    addresses=int(r["addresses"]),
                    lon=float(r["lon"]),
                    lat=float(r["lat"]),
                    trgm=_trgm(_ALNUM.findall(key)),
                    nwords=len(_ALNUM.findall(key)),
                )
            )
        for code, name, region in conn.execute(_CONTEXTS):
            index.contexts.setdefault(code, ", ".join(p for p in (code, name, region) if p))
        total = conn.execute(sa.text("SELECT count(*) FROM geo_addresses")).scalar_one()
        if total <= get_settings().geocoder_memory_addresses:
            index.streets.numbers = _load_numbers(conn)
        _INDEXES.clear()  # one reference per database: keep the latest only
        _INDEXES[fp] = index
    return _INDEXES[fp]


# -- in-memory street index ---------------------------------------------------------------
# Candidate streets are found in memory (no SQL round trip): the streets of the named
# communes whose key resembles some run of the query's words, plus, nationwide, the streets
# holding a word close to one of the query's rarest words (addok's idea). The similarity is
# pg_trgm's word_similarity (Jaccard of trigram sets against the best run of words), so the
# candidates are those the SQL of earlier versions found. Only the housenumbers are read from
# PostGIS, one round trip per batch.
_MIN_WORD_SIM = 0.3  # pg_trgm's word_similarity floor of the candidate streets
_RARE_WORD_SIM = 0.6  # pg_trgm.word_similarity_threshold (`street_key %> word`)
_COMMUNE_LIMIT = 15
_RARE_LIMIT = 30
_ALNUM = re.compile(r"[a-z0-9]+")
_ADDRESSES = sa.text(read_sql("geocoding_street_numbers.sql"))
_ADDRESS_FIELDS = ("address_id", "ban_id", "number", "suffix", "address_postcode", "lon", "lat")


@functools.lru_cache(maxsize=200_000)
def _word_trgm(word: str) -> frozenset[str]:
    """pg_trgm's trigrams of one word (two spaces before, one after)."""
    s = f"  {word} "
    return frozenset(sys.intern(s[i : i + 3]) for i in range(len(s) - 2))


def _trgm(words: list[str] | tuple[str, ...]) -> frozenset[str]:
    out: set[str] = set()
    for w in words:
        out |= _word_trgm(w)
    return frozenset(out)


@dataclass(slots=True)
class _Street:
    id: int
    street: str
    street_key: str
    insee_code: str
    commune: str
    postcode: str | None
    old_insee_code: str | None
    old_commune: str | None
    is_locality: bool
    addresses: int
    lon: float
    lat: float
    trgm: frozenset[str]
    nwords: int


@dataclass(slots=True)
class _Numbers:
    """The numbered addresses of one street, sorted by number, suffix (none first), id."""

    ids: array.array[int]
    numbers: array.array[int]
    lons: array.array[float]
    lats: array.array[float]
    suffixes: list[str | None]
    postcodes: list[str | None]
    ban_ids: list[str | None]

    def near(self, number: int) -> list[dict[str, Any]]:
        """At most 12 addresses numbered within 60 of `number`, nearest first, then in order."""
        lo = bisect.bisect_left(self.numbers, number - 60)
        hi = bisect.bisect_right(self.numbers, number + 60)
        nums, suf, ids = self.numbers, self.suffixes, self.ids
        picked = sorted(
            range(lo, hi),
            key=lambda k: (
                abs(nums[k] - number),
                nums[k],
                suf[k] is not None,
                suf[k] or "",
                ids[k],
            ),
        )[:12]
        picked.sort()  # the arrays are already in (number, suffix, id) order
        return [
            {
                "address_id": ids[k],
                "ban_id": self.ban_ids[k],
                "number": nums[k],
                "suffix": suf[k],
                "address_postcode": self.postcodes[k],
                "lon": self.lons[k],
                "lat": self.lats[k],
            }
            for k in picked
        ]


class _StreetIndex:
    """Every street of the reference in memory: by commune code, by word, by trigram."""

    def __init__(self) -> None:
        self.by_code: dict[str, list[_Street]] = {}
        self.by_word: dict[str, list[_Street]] = {}
        self.by_trgm: dict[str, list[str]] = {}  # trigram → words of the street keys
        # street id → its numbered addresses, when the reference is small enough to hold them
        self.numbers: dict[int, _Numbers] | None = None

    def add(self, s: _Street) -> None:
        """Index one street."""
        self.by_code.setdefault(s.insee_code, []).append(s)
        if s.old_insee_code and s.old_insee_code != s.insee_code:
            self.by_code.setdefault(s.old_insee_code, []).append(s)
        for w in set(_ALNUM.findall(s.street_key)):
            streets = self.by_word.get(w)
            if streets is None:
                self.by_word[w] = streets = []
                for t in _word_trgm(w):
                    self.by_trgm.setdefault(t, []).append(w)
            streets.append(s)

    def close_words(self, word: str) -> list[str]:
        """Street words within pg_trgm's word-similarity threshold of this word."""
        tw = _word_trgm(word)
        counts: collections.Counter[str] = collections.Counter()
        for t in tw:
            counts.update(self.by_trgm.get(t, ()))
        n = len(tw)
        out = []
        for w, c in counts.items():
            if c / n < _RARE_WORD_SIM:
                continue  # even a perfect extent could not reach the threshold
            if c / (n + len(_word_trgm(w)) - c) >= _RARE_WORD_SIM:
                out.append(w)
        return out


class _Runs:
    """The trigram sets of every run of the query's words (pg_trgm's extents, word-aligned)."""

    def __init__(self, text: str) -> None:
        words = _ALNUM.findall(text)
        self.all = _trgm(words)
        self.by_len: dict[int, list[tuple[frozenset[str], int]]] = {}
        n = len(words)
        for i in range(n):
            acc: set[str] = set()
            for j in range(i, min(n, i + 8)):
                acc |= _word_trgm(words[j])
                self.by_len.setdefault(j - i + 1, []).append((frozenset(acc), len(acc)))
        self.cache: dict[int, float] = {}

    def sim(self, s: _Street) -> float:
        """word_similarity(street_key, query) over word-aligned extents."""
        got = self.cache.get(s.id)
        if got is not None:
            return got
        k = s.trgm
        lk = len(k)
        best = 0.0
        if lk and len(k & self.all) / lk >= _MIN_WORD_SIM:  # upper bound first
            for length in range(max(1, s.nwords - 2), s.nwords + 3):
                for r, lr in self.by_len.get(length, ()):
                    inter = len(k & r)
                    if inter:
                        sim = inter / (lk + lr - inter)
                        if sim > best:
                            best = sim
        best = round(best, 6)
        self.cache[s.id] = best
        return best


_CONTEXTS = sa.text(
    "SELECT d.code, d.name, r.name FROM territories d "
    "LEFT JOIN territories r ON r.level = 'region' AND r.code = d.region_code "
    "WHERE d.level = 'departement' ORDER BY d.code, d.layer"
)
_ALL_NUMBERS = sa.text(
    "SELECT street_id, id, ban_id, number, suffix, postcode, ST_X(geom) AS lon, ST_Y(geom) AS lat "
    "FROM geo_addresses WHERE street_id IS NOT NULL AND number IS NOT NULL "
    "ORDER BY street_id, number, suffix NULLS FIRST, id"
)


def _load_numbers(conn: Connection) -> dict[int, _Numbers]:
    """Every numbered address, grouped by street, in compact arrays."""
    out: dict[int, _Numbers] = {}
    cur: _Numbers | None = None
    last = None
    intern: dict[str, str] = {}
    for sid, aid, ban_id, number, suffix, pc, lon, lat in conn.execute(_ALL_NUMBERS):
        if sid != last:
            cur = _Numbers(
                array.array("q"), array.array("i"), array.array("d"), array.array("d"), [], [], []
            )
            out[int(sid)] = cur
            last = sid
        assert cur is not None
        cur.ids.append(int(aid))
        cur.numbers.append(int(number))
        cur.lons.append(float(lon))
        cur.lats.append(float(lat))
        cur.suffixes.append(intern.setdefault(suffix, suffix) if suffix else None)
        cur.postcodes.append(intern.setdefault(pc, pc) if pc else None)
        cur.ban_ids.append(ban_id)
    return out


def _hit(c: _CommuneRow, mode: str, span: tuple[int, int] | None, sim: float) -> _Hit:
    return _Hit(
        mode=mode,
        span=span,
        sim=sim,
        code=c.code,
        kind=c.kind,
        name=c.name,
        name_key=c.name_key,
        current_code=c.current_code,
        current_name=c.current_name,
        departement_code=c.departement_code,
        postcodes=c.postcodes,
        population=c.population,
        lon=c.lon,
        lat=c.lat,
        street_codes=c.street_codes,
    )


def _grams(a: Analysis) -> dict[tuple[str, str], list[tuple[int, int]]]:
    """Every run of up to five words as a possible commune name: (key, mode) → spans."""
    out: dict[tuple[str, str], list[tuple[int, int]]] = {}
    words = a.words
    n = len(words)
    for i in range(n):
        for j in range(i + 1, min(n, i + _MAX_GRAM) + 1):
            key = commune_key(" ".join(words[i:j]))
            if not key or key.isdigit():
                continue
            out.setdefault((key, "exact"), []).append((i, j))
            one = j - i == 1
            if len(key) >= 4 and not (one and key in _GENERIC):
                out.setdefault((key, "prefix"), []).append((i, j))
            # Misspelt names: the trailing words, or the words after a postcode-less comma.
            if j == n and j - i <= 4 and len(key) >= 5:
                out.setdefault((key, "fuzzy"), []).append((i, j))
    if a.number is not None and a.number_pos == n and n:
        # "PARIS 10", "Marseille 3e": a number after the last word may end a commune name.
        for i in range(max(0, n - _MAX_GRAM + 1), n):
            key = commune_key(" ".join([*words[i:], str(a.number)]))
            out.setdefault((key, "exact"), []).append((i, n))
    return out


def _inside(span: tuple[int, int] | None, spans: set[tuple[int, int]]) -> bool:
    """Whether a run of words lies strictly inside another run that names a commune."""
    if span is None:
        return False
    return any(o[0] <= span[0] and span[1] <= o[1] and o != span for o in spans)


def _first(x: tuple[float, Any]) -> float:
    return x[0]


def _names_start(words: list[str], span: tuple[int, int] | None, s: Any, covered: set[int]) -> bool:
    """Whether free words outside the street's run begin the name of its commune (or old one)."""
    names = [commune_key(x) for x in (s["commune"], s["old_commune"]) if x]
    for i in range(len(words)):
        for j in range(i + 1, min(len(words), i + _MAX_GRAM) + 1):
            if (span and i < span[1] and span[0] < j) or covered & set(range(i, j)):
                continue
            start = " ".join(words[i:j]) + " "
            if len(start) >= 4 and any(n.startswith(start) for n in names):
                return True
    return False


def _rare_words(words: list[str], freq: collections.Counter[str]) -> list[str]:
    """The nationwide trigram probes: the two rarest street words of the query (addok's idea:
    rare tokens select few candidates), and its longest word unknown to the streets (a typo).
    """
    cands = {w for w in words if len(w) >= 4 and w not in TYPE_WORDS and not w.isdigit()}
    known = sorted((w for w in cands if freq[w]), key=lambda w: (freq[w], -len(w), w))
    unknown = sorted((w for w in cands if not freq[w]), key=lambda w: (-len(w), w))
    return known[:2] + unknown[:1]


@functools.lru_cache(maxsize=65536)
def _best_window(words: tuple[str, ...], key: str) -> tuple[float, tuple[int, int] | None]:
    """Best similarity of a street key to a run of the query's words, and that run."""
    n = len(key.split())
    best, span = 0.0, None
    # One matcher per key: difflib indexes its second sequence once, windows change the first.
    sm = difflib.SequenceMatcher(None, "", key, autojunk=False)
    for length in range(max(1, n - 1), n + 2):
        for i in range(0, len(words) - length + 1):
            window = " ".join(words[i : i + length])
            sm.set_seq1(window)
            # Cheap upper bounds first: most windows are nowhere near the street.
            if sm.real_quick_ratio() <= best or sm.quick_ratio() <= best:
                continue
            sim = _street_sim(window, key, 0.0)
            if sim > best:
                best, span = sim, (i, i + length)
    return best, span


def _commune_of(h: _Hit) -> _Commune:
    return _Commune(
        code=h.code,
        kind=h.kind,
        name=h.name,
        name_key=h.name_key,
        current_code=h.current_code,
        current_name=h.current_name,
        departement_code=h.departement_code,
        postcodes=h.postcodes,
        lon=h.lon,
        lat=h.lat,
        score=h.sim,
        population=h.population,
    )


@functools.lru_cache(maxsize=1)
def _to_l93() -> Transformer:
    return Transformer.from_crs(4326, 2154, always_xy=True)


def _importance(n: int | None, scale: float) -> float:
    """api-adresse's importance in [0, 1]: grows with the log of a size (people, addresses)."""
    return round(min(1.0, math.log10((n or 0) + 1) / scale), 4)


@functools.lru_cache(maxsize=65536)
def _ratio(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def _dep_of(postcode: str) -> str:
    return postcode[:3] if postcode.startswith("97") else postcode[:2]


class LocalGeocoder:
    """Geocode against the address reference loaded in PostGIS (`geodata load-addresses`)."""

    name = "local"

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._commune_idx: _CommuneIndex | None = None

    # -- communes -------------------------------------------------------------------------
    def _context(self, dep: str | None) -> str:
        if not dep:
            return ""
        return self._index().contexts.get(dep, dep)

    def _index(self) -> _CommuneIndex:
        # Checked once per geocoder (a request, a batch): a reload is seen by the next one.
        if self._commune_idx is None:
            self._commune_idx = _commune_index(self.conn)
        return self._commune_idx

    # -- search ---------------------------------------------------------------------------
    def search_many(self, queries: list[dict[str, Any]]) -> list[list[GeocodeResult]]:
        """`search` for many queries (keyword dicts), with two round trips per batch."""
        prepared = [self._prepare(q) for q in queries]
        self._resolve_communes(prepared)
        self._fetch_streets(prepared)
        return [self._answer(p, q) for p, q in zip(prepared, queries, strict=True)]

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
        return self.search_many(
            [
                {
                    "q": q,
                    "limit": limit,
                    "postcode": postcode,
                    "citycode": citycode,
                    "type": type,
                    "lat": lat,
                    "lon": lon,
                    "city": city,
                }
            ]
        )[0]

    @staticmethod
    def _prepare(q: dict[str, Any]) -> _Query:
        a = analyse(q["q"], postcode=q.get("postcode"), city=q.get("city"))
        return _Query(a, q.get("citycode") or None, _grams(a))

    def _resolve_communes(self, prepared: list[_Query]) -> None:
        """The communes each query names anywhere (postcode, name, old name, INSEE code)."""
        index = self._index()
        for p in prepared:
            for pc in p.a.postcodes:
                p.hits.extend(_hit(c, "pc", None, 1.0) for c in index.by_postcode.get(pc, ()))
            if p.citycode:
                p.hits.extend(_hit(c, "code", None, 1.0) for c in index.by_code.get(p.citycode, ()))
            exact_tail = False
            for (gram, mode), spans in p.grams.items():
                if mode == "exact":
                    found = [(c, 1.0) for c in index.by_name.get(gram, ())]
                    exact_tail = exact_tail or bool(found and spans[-1][1] == len(p.a.words))
                elif mode == "prefix":
                    found = [(c, 0.9) for c in index.prefixed(gram)]
                else:
                    continue
                for c, sim in found:
                    p.hits.extend(_hit(c, mode, span, sim) for span in spans)
            # "paris 19" names the 19th arrondissement: "paris" inside it is not a second name.
            named_spans = {h.span for h in p.hits if h.span and h.mode != "fuzzy"}
            p.hits = [h for h in p.hits if not _inside(h.span, named_spans)]
            if not exact_tail and not any(h.mode == "pc" for h in p.hits):
                # Misspelt names are looked for among the trailing words only.
                for (gram, mode), spans in p.grams.items():
                    if mode == "fuzzy":
                        for c, sim in index.fuzzy(gram):
                            p.hits.extend(_hit(c, mode, span, sim) for span in spans)

    def _fetch_streets(self, prepared: list[_Query]) -> None:
        """Candidate streets of every query, found in memory (see _StreetIndex), and the
        addresses numbered around the queried number in one round trip for the batch."""
        todo = [p for p in prepared if p.a.words]
        if not todo:
            return
        index = self._index()
        freq, streets = index.word_freq, index.streets
        wanted: set[tuple[int, int]] = set()
        found: list[list[tuple[_Street, float]]] = []
        for p in todo:
            # The streets of the communes named by a name or a postcode, the best-named first;
            # a prefix can name dozens of communes ("saint denis"): cap their number.
            hits = sorted(p.hits, key=lambda h: (-h.sim, h.mode == "prefix", h.code))
            cc: set[str] = set()
            for h in hits[:40]:
                cc |= h.street_codes
            runs = _Runs(p.a.text)
            local = []
            for code in cc:
                for s in streets.by_code.get(code, ()):
                    sim = runs.sim(s)
                    if sim >= _MIN_WORD_SIM:
                        local.append((s, sim))
            local.sort(key=lambda x: (-x[1], x[0].id))
            far: dict[int, _Street] = {}
            for w in _rare_words(p.a.words, freq):
                for v in streets.close_words(w):
                    for s in streets.by_word[v]:
                        far[s.id] = s
            wide = [(s, runs.sim(s)) for s in far.values()]
            wide = [x for x in wide if x[1] >= _MIN_WORD_SIM]
            wide.sort(key=lambda x: (-x[1], x[0].id))
            seen: set[int] = set()
            cands = []
            for s, sim in local[:_COMMUNE_LIMIT] + wide[:_RARE_LIMIT]:
                if s.id not in seen:
                    seen.add(s.id)
                    cands.append((s, sim))
            cands.sort(key=lambda x: (-x[1], x[0].id))
            found.append(cands)
            if p.a.number is not None:
                wanted.update((s.id, p.a.number) for s, _ in cands)
        addrs: dict[tuple[int, int], list[dict[str, Any]]] = {}
        held = streets.numbers
        if held is not None:
            for sid, number in wanted:
                got = held.get(sid)
                if got is not None:
                    addrs[(sid, number)] = got.near(number)
        elif wanted:
            pairs = sorted(wanted)
            rows = self.conn.execute(
                _ADDRESSES,
                {"ids": [x[0] for x in pairs], "numbers": [x[1] for x in pairs]},
            ).mappings()
            for r in rows:
                addrs.setdefault((int(r["street_id"]), int(r["qnum"])), []).append(dict(r))
        none = [dict.fromkeys(_ADDRESS_FIELDS)]
        for p, cands in zip(todo, found, strict=True):
            for s, sim in cands:
                base = {
                    "street_id": s.id,
                    "street": s.street,
                    "street_key": s.street_key,
                    "insee_code": s.insee_code,
                    "commune": s.commune,
                    "postcode": s.postcode,
                    "old_insee_code": s.old_insee_code,
                    "old_commune": s.old_commune,
                    "is_locality": s.is_locality,
                    "sim": sim,
                    "addresses": s.addresses,
                    "street_lon": s.lon,
                    "street_lat": s.lat,
                }
                near = none if p.a.number is None else addrs.get((s.id, p.a.number)) or none
                p.rows.extend({**base, **a} for a in near)

    def _answer(self, p: _Query, q: dict[str, Any]) -> list[GeocodeResult]:
        results = self._street_results(p) + self._municipality_results(p)
        if p.citycode:
            results = [r for r in results if p.citycode in (r.citycode, r.oldcitycode)]
        if q.get("type"):
            results = [r for r in results if r.type == q["type"]]
        lat, lon = q.get("lat"), q.get("lon")
        if lat is not None and lon is not None:
            for r in results:
                d = _km(lat, lon, r.lat, r.lon)
                r.score = round(min(1.0, r.score + 0.05 * max(0.0, 1 - d / 50)), 4)
        # Deterministic order: score, then finer types, the bigger place, then identifier.
        results.sort(
            key=lambda r: (-r.score, RESULT_TYPES.index(r.type), -(r.importance or 0), r.id)
        )
        seen: set[str] = set()
        out = []
        for r in results:
            if r.id not in seen:
                seen.add(r.id)
                out.append(r)
        return out[: int(q.get("limit") or 5)]

    def _municipality_results(self, p: _Query) -> list[GeocodeResult]:
        words = p.a.words
        named = [h for h in p.hits if h.span is not None]
        out = []
        for h in p.hits:
            if h.lon is None or h.lat is None or h.mode == "code":
                continue
            if h.span is None and named:
                score = 0.4 * self._pc_score(p, h.postcodes, None)
                if not any(n.code == h.code for n in named):
                    score *= 0.5
            else:
                score = h.sim if h.span is not None else 1.0
                if p.a.postcodes and h.span is not None:
                    score = 0.6 * score + 0.4 * self._pc_score(p, h.postcodes, h.departement_code)
                if h.kind == "ancienne" and not named:
                    score *= 0.9  # a current commune answers a bare postcode better
                if h.mode == "prefix" and h.kind == "ancienne":
                    score *= 0.95
            covered = set(range(*h.span)) if h.span else set()
            rest = [w for k, w in enumerate(words) if k not in covered and not w.isdigit()]
            # "PARIS 10": the number belongs to the name.
            number_used = (
                h.span is not None
                and p.a.number_pos == h.span[1]
                and h.name_key.endswith(f" {p.a.number}")
            )
            if rest and h.span and all(w in TYPE_WORDS for w in words[h.span[0] : h.span[1]]):
                continue  # "rue …" does not name the commune of Rue (Somme)
            if rest or (p.a.number is not None and not number_used):
                score *= MUNICIPALITY_FALLBACK  # the query named a street we could not find
            out.append(self._municipality(_commune_of(h), _score(score)))
        return out

    @staticmethod
    def _pc_score(p: _Query, postcodes: list[str] | str | None, dep: str | None) -> float:
        if not p.a.postcodes:
            return 0.0
        pcs = [postcodes] if isinstance(postcodes, str) else (postcodes or [])
        if any(pc in pcs for pc in p.a.postcodes):
            return 1.0
        deps = {_dep_of(pc) for pc in pcs} | ({dep} if dep else set())
        if any(_dep_of(pc) in deps for pc in p.a.postcodes):
            return 0.5
        return 0.0

    def _street_results(self, p: _Query) -> list[GeocodeResult]:
        streets: dict[int, list[Any]] = {}
        for r in p.rows:
            streets.setdefault(int(r["street_id"]), []).append(r)
        if not streets:
            return []
        words = p.a.words
        # Words that name a commune in full ("paris 19") are not the start of another name.
        covered = {
            k
            for h in p.hits
            if h.span and h.mode == "exact" and h.span[1] - h.span[0] > 1
            for k in range(*h.span)
        }
        results = []
        best_sql = max(float(g[0]["sim"]) for g in streets.values())
        for group in streets.values():
            s = group[0]
            if float(s["sim"]) < best_sql - 0.35:
                continue
            codes = {s["insee_code"], s["old_insee_code"]} - {None}
            # The street must be read in words other than those naming its commune: try each
            # run that names it, masked ("12 rue des inconnus mont-bonvillers" is not
            # "Bonvillers Village"); "rue de paris, paris" keeps one "paris" for each.
            own = sorted({h.span for h in p.hits if h.span and codes & h.street_codes})
            ss, span = (0.0, None) if own else _best_window(tuple(words), s["street_key"])
            for o in own:
                masked = tuple("\0" if o[0] <= k < o[1] else w for k, w in enumerate(words))
                ss, span = max((ss, span), _best_window(masked, s["street_key"]), key=_first)
            name = 0.0
            named = named_after = False
            for h in p.hits:
                if h.span is None:
                    continue
                if span and h.span[0] < span[1] and span[0] < h.span[1]:
                    continue  # the same words cannot name both the street and the commune
                named = True
                if h.mode != "fuzzy" and span is not None and h.span[0] >= span[1]:
                    named_after = True
                if not codes & h.street_codes:
                    continue
                sim = h.sim
                if not codes & {h.code, h.current_code}:
                    sim *= 0.9  # via the parent commune (Paris for a street of "PARIS 19")
                name = max(name, sim)
            if name < 0.85 and _names_start(words, span, s, covered):
                # "saint ouen" for Saint-Ouen-sur-Seine, "digne" for Digne-les-Bains.
                name, named, named_after = 0.85, True, True
            pc = 0.0
            if p.a.postcodes:
                pcs = {s["postcode"], *(a["address_postcode"] for a in group)} - {None}
                pc = max(
                    self._pc_score(p, sorted(pcs), _dep_of(s["insee_code"])),
                    max(
                        (
                            self._pc_score(p, h.postcodes, None)
                            for h in p.hits
                            # Own codes only: 13007 names Marseille 7e, not all Marseille.
                            if h.mode == "pc" and codes & {h.code, h.current_code}
                        ),
                        default=0.0,
                    ),
                )
                cs = 0.4 * pc + 0.6 * name if named else pc
            else:
                cs = name if named else 0.5
            # The query names a commune (after the street) or a postcode, and this street is in
            # none of them: the same street elsewhere is not an answer.
            if name == 0 and ((named_after and pc < 1) or (p.a.postcodes and pc == 0)):
                continue
            # A look-alike street elsewhere ("rue bellot" / "rue amelot") is not an answer:
            # outside the queried commune, the street must match closely.
            if ss < (MIN_STREET_SIM if cs >= 0.7 else STRICT_STREET_SIM):
                continue
            results.append(self._street_result(p.a, group, ss, cs))
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
            importance=_importance(c.population, 6.5),
        )

    def _street_result(self, p: Analysis, group: list[Any], ss: float, cs: float) -> GeocodeResult:
        s = group[0]
        base = {
            "street": s["street"],
            "postcode": s["postcode"],
            "citycode": s["insee_code"],
            "city": s["commune"],
            "context": self._context(_dep_of(s["insee_code"])),
            "oldcitycode": s["old_insee_code"],
            "oldcity": s["old_commune"],
            "importance": _importance(s["addresses"], 3.0),
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


def _street_sim(query: str, cand: str, trgm: float) -> float:
    """Similarity of two street keys, bounded by that of their names without the type word."""
    full = max(trgm, _ratio(query, cand))
    qn, cn = _name_part(query), _name_part(cand)
    qw, cw = query.split(), cand.split()
    if qn == query and cn != cand and len(qw) > 1 and _ratio(qw[0], cw[0]) >= 0.7:
        qn = " ".join(qw[1:])  # a misspelt street type ("boulevarrd") is still the type
    if cn and not qn:
        return 0.0  # a street type alone ("boulevard") names no street
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
