"""THE filter compiler: query parameters and CQL2 → one parameterised SQL WHERE fragment.

Public API (also used by the tiles engine)::

    sql, binds = compile_filter(collection, params)
    conn.execute(sa.text(f"SELECT ... {collection.from_sql()} AND {sql}"),
                 {**collection.base_params(), **binds})

`params` is a mapping of query-parameter names to their (single) string values, e.g.
``{"sector": "alimentation", "bbox": "2.3,48.8,2.5,48.9", "filter": "esus = true"}``.
The fragment refers to the collection's table as alias ``t``; it is ``TRUE`` when nothing
filters. Values are always bound parameters (named ``f0``, ``f1``...); identifiers come only
from the collection's allow-list. Any bad input raises :class:`FilterError` (→ HTTP 400).

Supported: ``bbox`` (4 or 6 numbers) + ``bbox-crs``, ``datetime`` (instant or interval; on
structures it meets the life [opened_on, closed_on], see :func:`_life`),
``filter`` + ``filter-lang`` (cql2-text | cql2-json, parsed by the ``cql2`` library) +
``filter-crs``, and on structures ``sector``, ``family``, ``commune``, ``departement``,
``epci``, ``ept`` (comma-separated lists) and ``q`` (French full text on name+description);
and on every collection ``<queryable>=<value>`` equality (see :func:`equality_params`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any

from carteco.collections import (
    ARRAY,
    BOOLEAN,
    DATE,
    DATETIME,
    INTEGER,
    NUMBER,
    STRING,
    Collection,
)
from carteco.errors import CartecoError
from carteco.sectors import load_taxonomy
from carteco.settings import Settings
from carteco.territory_levels import FILTER_LEVELS, FILTER_PATTERNS, LEVEL_COLUMNS
from carteco.text import ascii_float, ascii_int

CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
CRS84H = "http://www.opengis.net/def/crs/OGC/0/CRS84h"
EPSG4326 = "http://www.opengis.net/def/crs/EPSG/0/4326"
EPSG2154 = "http://www.opengis.net/def/crs/EPSG/0/2154"
# CRS URI → (SRID, axis order swapped relative to x/y = lon/lat)
SUPPORTED_CRS = {CRS84: (4326, False), EPSG4326: (4326, True), EPSG2154: (2154, False)}
CRS_ALIASES = {
    "CRS84": CRS84,
    "OGC:CRS84": CRS84,
    "[OGC:CRS84]": CRS84,
    CRS84H: CRS84,
    "EPSG:4326": EPSG4326,
    "[EPSG:4326]": EPSG4326,
    "EPSG:2154": EPSG2154,
    "[EPSG:2154]": EPSG2154,
}

SIMPLE_FILTERS = ("sector", "family", *FILTER_LEVELS, "q")
FILTER_PARAMS = ("bbox", "bbox-crs", "datetime", "filter", "filter-lang", "filter-crs")
_SIMPLE_COLUMNS = {**{lv: LEVEL_COLUMNS[lv] for lv in FILTER_LEVELS}, "family": "ess_family"}
_MAX_LIST = 200
# Integers bound to SQL stay within PostgreSQL's bigint (larger ones are a client error).
_MAX_INT = 2**63 - 1


@dataclass(frozen=True)
class FilterLimits:
    """Size and nesting bounds of a CQL2 filter, checked before the native parser runs."""

    # Defaults are the settings' own (CARTECO_FILTER_MAX_CHARS / CARTECO_FILTER_MAX_DEPTH).
    max_chars: int = Settings.model_fields["filter_max_chars"].default
    max_depth: int = Settings.model_fields["filter_max_depth"].default

    @classmethod
    def from_settings(cls, settings: Settings) -> FilterLimits:
        """The limits a deployment configured."""
        return cls(settings.filter_max_chars, settings.filter_max_depth)


class FilterError(CartecoError, ValueError):
    """A filter parameter is invalid; `param` names it (the message is French, for users)."""

    kind = "invalid"

    def __init__(self, param: str, message: str, limit: str | None = None) -> None:
        super().__init__(f"{param} : {message}")
        self.param = param
        self.message = message
        self.limit = limit  # the setting that bounded the input, when a limit was hit

    def field_errors(self) -> list[dict[str, str]]:
        """The one parameter at fault (and the setting that bounded it, when one did)."""
        error = {"parameter": self.param, "reason": self.message}
        if self.limit:
            error["limit"] = self.limit
        return [error]


def parse_crs(value: str | None, param: str) -> tuple[str, int, bool]:
    """A CRS parameter → (canonical URI, SRID, lat/lon axis order); CRS84 when absent."""
    if value is None or value == "":
        return CRS84, 4326, False
    uri = CRS_ALIASES.get(value.strip(), value.strip())
    if uri not in SUPPORTED_CRS:
        raise FilterError(param, f"système de coordonnées non pris en charge : {value}")
    srid, swap = SUPPORTED_CRS[uri]
    return uri, srid, swap


class _Binds:
    """Allocates bind parameter names for one compilation."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def add(self, value: Any) -> str:
        name = f"f{len(self.values)}"
        self.values[name] = value
        return ":" + name


def compile_filter(
    collection: Collection, params: Mapping[str, str], limits: FilterLimits | None = None
) -> tuple[str, dict[str, Any]]:
    """Compile the filter parameters of a request to `(sql_fragment, bind_params)`."""
    binds = _Binds()
    parts: list[str] = []
    if params.get("bbox"):
        parts.append(_bbox(collection, params["bbox"], params.get("bbox-crs"), binds))
    elif params.get("bbox-crs"):
        parse_crs(params["bbox-crs"], "bbox-crs")
    if params.get("datetime"):
        dt = _datetime(collection, params["datetime"], binds)
        if dt:
            parts.append(dt)
    if collection.simple_filters:
        parts.extend(_simple(collection, params, binds))
    parts.extend(_property_equality(collection, params, binds))
    if params.get("filter"):
        parts.append(
            _cql2(
                collection,
                params["filter"],
                params.get("filter-lang") or "cql2-text",
                params.get("filter-crs"),
                binds,
                limits or FilterLimits(),
            )
        )
    elif params.get("filter-lang") and params["filter-lang"] not in ("cql2-text", "cql2-json"):
        raise FilterError("filter-lang", "valeurs possibles : cql2-text, cql2-json")
    if not parts:
        return "TRUE", {}
    return "(" + " AND ".join(parts) + ")", binds.values


# -- bbox and datetime -------------------------------------------------------------------------


def parse_bbox(value: str) -> list[float]:
    """`bbox` text → 4 numbers (a 6-number bbox keeps its horizontal extent)."""
    nums = [ascii_float(v) for v in value.split(",")]
    if len(nums) not in (4, 6) or any(n is None for n in nums):
        raise FilterError("bbox", "4 ou 6 nombres séparés par des virgules attendus")
    out = [float(n) for n in nums if n is not None]
    if len(out) == 6:
        out = [out[0], out[1], out[3], out[4]]
    return out


def _envelopes(nums: list[float], srid: int, swap: bool, binds: _Binds, param: str) -> list[str]:
    """The box as one envelope in EPSG:4326, or two when it crosses the antimeridian."""
    if not all(isinstance(n, (int, float)) and math.isfinite(n) for n in nums):
        raise FilterError(param, "coordonnées finies attendues")
    x1, y1, x2, y2 = nums
    if swap:
        x1, y1, x2, y2 = y1, x1, y2, x2
    if srid == 4326 and (min(y1, y2) < -90 or max(y1, y2) > 90 or abs(x1) > 180 or abs(x2) > 180):
        raise FilterError(param, "coordonnées hors des limites longitude/latitude")
    if y1 > y2 or (x1 > x2 and srid != 4326):
        raise FilterError(param, "le coin bas-gauche doit précéder le coin haut-droit")
    if x1 > x2:
        # OGC API Features §7.15.3: a west edge east of the east edge crosses the antimeridian;
        # the box is then the union of [x1, 180] and [-180, x2].
        return _envelopes([x1, y1, 180.0, y2], srid, False, binds, param) + _envelopes(
            [-180.0, y1, x2, y2], srid, False, binds, param
        )
    env = f"ST_MakeEnvelope({binds.add(x1)}, {binds.add(y1)}, {binds.add(x2)}, {binds.add(y2)}"
    if srid == 4326:
        return [env + ", 4326)"]
    # Reproject the query box (densified so its edges stay true), never the indexed column.
    return [f"ST_Transform(ST_Segmentize({env}, {srid}), 1000), 4326)"]


def _envelope_sql(nums: list[float], srid: int, swap: bool, binds: _Binds, param: str) -> str:
    envs = _envelopes(nums, srid, swap, binds, param)
    return envs[0] if len(envs) == 1 else f"ST_Collect({envs[0]}, {envs[1]})"


def _bbox(collection: Collection, value: str, crs: str | None, binds: _Binds) -> str:
    _, srid, swap = parse_crs(crs, "bbox-crs")
    g = collection.q("geom")
    tests = []
    for env in _envelopes(parse_bbox(value), srid, swap, binds, "bbox"):
        if srid == 4326 and collection.geometry_type == "Point":
            # A point is in a lon/lat box exactly when their boxes overlap: the index suffices.
            tests.append(f"({g} && {env})")
        else:
            tests.append(f"({g} && {env} AND ST_Intersects({g}, {env}))")
    return tests[0] if len(tests) == 1 else "(" + " OR ".join(tests) + ")"


def _parse_instant(text: str, end: bool) -> datetime:
    text = text.strip()
    try:
        if len(text) == 10:
            d = date.fromisoformat(text)
            return datetime.combine(d, time.max if end else time.min, tzinfo=UTC)
        dt = datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        raise FilterError("datetime", f"date RFC 3339 invalide : {text}") from None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _datetime(collection: Collection, value: str, binds: _Binds) -> str | None:
    if "/" in value:
        start_s, _, end_s = value.partition("/")
        start = None if start_s in ("", "..") else _parse_instant(start_s, False)
        end = None if end_s in ("", "..") else _parse_instant(end_s, True)
        if start is None and end is None:
            raise FilterError("datetime", "intervalle ouvert des deux côtés")
        if start and end and start > end:
            raise FilterError("datetime", "le début de l'intervalle suit sa fin")
    else:
        start = _parse_instant(value, False)
        end = _parse_instant(value, True) if len(value.strip()) == 10 else start
    if not collection.datetime_column:
        # Collections without a temporal property are not filtered (OGC API Features §7.15.4).
        return None
    if collection.datetime_end_column:
        return _life(collection, start, end, binds)
    col = collection.q(collection.datetime_column)
    conds = []
    if start is not None:
        conds.append(f"{col} >= {binds.add(start)}")
    if end is not None:
        conds.append(f"{col} <= {binds.add(end)}")
    return "(" + " AND ".join(conds) + ")"


def _life(
    collection: Collection, start: datetime | None, end: datetime | None, binds: _Binds
) -> str:
    """`datetime` on a life [opened, closed]: the rows whose life meets the instant/interval.

    OGC API Features §7.15.4 with a start and an end property: a feature is selected when its
    interval intersects the requested one. A date the registry does not know decides nothing
    in the row's favour: an unknown opening date never meets a bounded end, an unknown
    closing date of a closed structure never meets a bounded start; a structure not closed
    is alive until today (its life has no end).
    """
    assert collection.datetime_column and collection.datetime_end_column
    opened = collection.q(collection.datetime_column)
    closed = collection.q(collection.datetime_end_column)
    conds = []
    if end is not None:
        conds.append(f"{opened} <= {binds.add(end.astimezone(UTC).date())}")
    if start is not None:
        alive = f"{closed} IS NULL"
        if collection.column("status") is not None:
            alive += f" AND {collection.q('status')} <> 'closed'"
        conds.append(f"({closed} >= {binds.add(start.astimezone(UTC).date())} OR ({alive}))")
    return "(" + " AND ".join(conds) + ")"


# -- simple filters ----------------------------------------------------------------------------


def _list(param: str, value: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items or len(items) > _MAX_LIST:
        raise FilterError(param, f"liste de 1 à {_MAX_LIST} valeurs attendue")
    return items


def _geometry_error(node: dict[str, Any]) -> str | None:
    """Why a GeoJSON geometry literal is unusable (shapely's validity rules), or None."""
    from shapely.geometry import shape
    from shapely.validation import explain_validity

    try:
        geom = shape(node)
    except (ValueError, TypeError, AttributeError, KeyError, IndexError) as exc:
        return str(exc) or type(exc).__name__
    if geom.is_empty:
        return "géométrie vide"
    if not geom.is_valid:
        return explain_validity(geom)
    return None


# Territory codes have known shapes: a malformed one is a client error, not an empty result.
_CODE_PATTERNS = FILTER_PATTERNS


def _simple(collection: Collection, params: Mapping[str, str], binds: _Binds) -> list[str]:
    parts: list[str] = []
    if params.get("sector"):
        taxonomy = load_taxonomy()
        known = taxonomy.by_code()
        codes: set[str] = set()
        for code in _list("sector", params["sector"]):
            if code not in known:
                raise FilterError("sector", f"secteur inconnu : {code}")
            # A filière matches the structures tagged with any of its activities.
            codes |= taxonomy.descendants(code)
        parts.append(f"{collection.q('sectors')} && CAST({binds.add(sorted(codes))} AS text[])")
    for param, column in _SIMPLE_COLUMNS.items():
        if params.get(param):
            values = _list(param, params[param])
            pattern = _CODE_PATTERNS.get(param)
            if pattern is not None:
                bad = [v for v in values if not pattern.match(v)]
                if bad:
                    raise FilterError(param, f"code mal formé : {bad[0]}")
            col = collection.column(column)
            if col is not None and col.enum:
                bad = [v for v in values if v not in col.enum]
                if bad:
                    raise FilterError(param, f"valeur inconnue : {bad[0]}")
            parts.append(f"{collection.q(column)} = ANY(CAST({binds.add(values)} AS text[]))")
    if params.get("q"):
        q = params["q"].strip()
        if len(q) > 200:
            raise FilterError("q", "200 caractères au plus")
        parts.append(f"{collection.q('search')} @@ websearch_to_tsquery('french', {binds.add(q)})")
    return parts


def equality_params(collection: Collection) -> set[str]:
    """Queryables usable as `?name=value` (Part 3 queryables-as-query-parameters)."""
    return {
        c.name
        for c in collection.columns
        if c.queryable and c.type in (STRING, INTEGER, NUMBER, BOOLEAN)
    }


def _property_equality(
    collection: Collection, params: Mapping[str, str], binds: _Binds
) -> list[str]:
    parts = []
    for name in sorted(equality_params(collection) & set(params)):
        col = collection.column(name)
        assert col is not None
        raw = params[name]
        value: Any = raw
        if col.type in (INTEGER, NUMBER):
            value = (
                ascii_int(raw.lstrip("-"), 0, _MAX_INT) if col.type == INTEGER else ascii_float(raw)
            )
            if value is None:
                raise FilterError(name, "nombre attendu")
            if col.type == INTEGER and raw.startswith("-"):
                value = -value
        if col.type == BOOLEAN:
            if raw.lower() not in ("true", "false"):
                raise FilterError(name, "true ou false attendu")
            value = raw.lower() == "true"
        if col.enum and value not in col.enum:
            raise FilterError(name, f"valeur inconnue : {raw}")
        parts.append(f"{collection.q(name)} = {binds.add(value)}")
    return parts


# -- CQL2 --------------------------------------------------------------------------------------

_COMPARISONS = {"=": "=", "<>": "<>", "!=": "<>", "<": "<", ">": ">", "<=": "<=", ">=": ">="}
_SPATIAL = {
    "s_intersects": "ST_Intersects",
    "s_within": "ST_Within",
    "s_contains": "ST_Contains",
    "s_disjoint": "ST_Disjoint",
    "s_equals": "ST_Equals",
    "s_touches": "ST_Touches",
    "s_crosses": "ST_Crosses",
    "s_overlaps": "ST_Overlaps",
}
_ARRAYS = {"a_contains": "@>", "a_containedby": "<@", "a_overlaps": "&&", "a_equals": "="}


class _Cql:
    """Walks a CQL2-JSON tree (as normalised by the cql2 library) into SQL."""

    def __init__(self, collection: Collection, srid: int, swap: bool, binds: _Binds) -> None:
        self.c = collection
        self.srid = srid
        self.swap = swap
        self.binds = binds

    def fail(self, message: str) -> FilterError:
        return FilterError("filter", message)

    # expressions return (sql, type) where type is a queryable type or "geometry"/"literal"
    def prop(self, name: str) -> tuple[str, str]:
        if name == "geom" or name == "geometry":
            return self.c.q("geom"), "geometry"
        col = self.c.column(name)
        if col is None or not col.queryable:
            raise self.fail(f"propriété inconnue ou non interrogeable : {name}")
        return self.c.q(name), col.type

    def geometry(self, node: Any) -> str:
        if isinstance(node, dict) and "bbox" in node:
            box = node["bbox"]
            if not isinstance(box, list) or len(box) not in (4, 6):
                raise self.fail("BBOX attend 4 ou 6 nombres")
            nums = [_number(v) for v in (box if len(box) == 4 else box[:2] + box[3:5])]
            return _envelope_sql(nums, self.srid, self.swap, self.binds, "filter")
        if isinstance(node, dict) and "type" in node and "coordinates" in node:
            reason = _geometry_error(node)
            if reason:
                raise self.fail(f"géométrie invalide : {reason}")
            gj = self.binds.add(json.dumps(node))
            g = f"ST_SetSRID(ST_GeomFromGeoJSON({gj}), {self.srid})"
            if self.swap:
                g = f"ST_FlipCoordinates({g})"
            return g if self.srid == 4326 else f"ST_Transform({g}, 4326)"
        if isinstance(node, dict) and "property" in node:
            sql, typ = self.prop(node["property"])
            if typ != "geometry":
                raise self.fail(f"{node['property']} n'est pas une géométrie")
            return sql
        raise self.fail("géométrie attendue (GeoJSON, WKT ou BBOX)")

    def literal(self, value: Any, typ: str) -> str:
        if isinstance(value, dict):
            if "date" in value:
                value = _parse_instant(str(value["date"]), False).date()
            elif "timestamp" in value:
                value = _parse_instant(str(value["timestamp"]), False)
            else:
                raise self.fail("valeur littérale attendue")
        if typ == STRING and not isinstance(value, str):
            raise self.fail("une chaîne est attendue")
        if typ in (INTEGER, NUMBER) and (
            isinstance(value, bool) or not isinstance(value, (int, float))
        ):
            raise self.fail("un nombre est attendu")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = _number(value)
        if typ == BOOLEAN and not isinstance(value, bool):
            raise self.fail("true ou false attendu")
        if typ in (DATE, DATETIME):
            if isinstance(value, str):
                value = _parse_instant(value, False)
                if typ == DATE:
                    value = value.date()
            if not isinstance(value, (date, datetime)):
                raise self.fail("une date est attendue")
        if typ == ARRAY:
            raise self.fail("utilisez A_CONTAINS / A_OVERLAPS pour les listes")
        if typ == INTEGER and isinstance(value, float) and value.is_integer():
            value = int(value)
        return self.binds.add(value)

    def scalar(self, node: Any, other_type: str | None = None) -> tuple[str, str]:
        if isinstance(node, dict) and "property" in node:
            return self.prop(str(node["property"]))
        if isinstance(node, dict) and node.get("op") in ("casei", "accenti"):
            inner, typ = self.scalar(node["args"][0], STRING)
            if typ != STRING:
                raise self.fail(f"{node['op'].upper()} s'applique à une chaîne")
            return (f"lower({inner})" if node["op"] == "casei" else f"unaccent({inner})"), typ
        if isinstance(node, dict) and "op" in node:
            raise self.fail(f"fonction non prise en charge : {node['op']}")
        return self.literal(node, other_type or _guess(node)), other_type or _guess(node)

    def pair(self, args: list[Any]) -> tuple[str, str]:
        if len(args) != 2:
            raise self.fail("deux opérandes attendus")
        a, b = args
        a_is_value = not (isinstance(a, dict) and ("property" in a or "op" in a))
        if a_is_value:
            rhs, typ = self.scalar(b)
            lhs, _ = self.scalar(a, typ)
        else:
            lhs, typ = self.scalar(a)
            rhs, _ = self.scalar(b, typ)
        return lhs, rhs

    def walk(self, node: Any) -> str:
        if isinstance(node, bool):
            return "TRUE" if node else "FALSE"
        if not isinstance(node, dict) or "op" not in node:
            raise self.fail("expression booléenne attendue")
        op = str(node["op"]).lower()
        args = node.get("args") or []
        if not isinstance(args, list):
            raise self.fail("arguments invalides")
        if op in ("and", "or"):
            if len(args) < 2:
                raise self.fail(f"{op.upper()} attend au moins deux opérandes")
            return "(" + f" {op.upper()} ".join(self.walk(a) for a in args) + ")"
        if op == "not":
            return f"(NOT {self.walk(args[0])})"
        if op in _COMPARISONS:
            lhs, rhs = self.pair(args)
            return f"({lhs} {_COMPARISONS[op]} {rhs})"
        if op == "like":
            lhs, rhs = self.pair(args)
            return f"({lhs} LIKE {rhs})"
        if op == "between":
            if len(args) != 3:
                raise self.fail("BETWEEN attend trois opérandes")
            lhs, typ = self.scalar(args[0])
            lo, _ = self.scalar(args[1], typ)
            hi, _ = self.scalar(args[2], typ)
            return f"({lhs} BETWEEN {lo} AND {hi})"
        if op == "in":
            lhs, typ = self.scalar(args[0])
            if len(args) != 2 or not isinstance(args[1], list) or not args[1]:
                raise self.fail("IN attend une liste de valeurs")
            if len(args[1]) > _MAX_LIST:
                raise self.fail(f"IN : {_MAX_LIST} valeurs au plus")
            values = ", ".join(self.literal(v, typ) for v in args[1])
            return f"({lhs} IN ({values}))"
        if op == "isnull":
            lhs, _ = self.scalar(args[0]) if "property" in (args[0] or {}) else ("", "")
            if not lhs:
                raise self.fail("IS NULL s'applique à une propriété")
            return f"({lhs} IS NULL)"
        if op in _SPATIAL:
            if len(args) != 2:
                raise self.fail(f"{op.upper()} attend deux géométries")
            return f"{_SPATIAL[op]}({self.geometry(args[0])}, {self.geometry(args[1])})"
        if op == "s_dwithin":
            if len(args) != 3 or not isinstance(args[2], (int, float)) or args[2] < 0:
                raise self.fail("S_DWITHIN attend deux géométries et une distance en mètres")
            a, b = self.geometry(args[0]), self.geometry(args[1])
            d = self.binds.add(float(_number(args[2])))
            # The bounding-box test lets the GiST index work; the geography test is exact.
            return (
                f"({a} && ST_Expand({b}, {d} / 111000.0 / "
                f"greatest(cos(radians(least(85, greatest(abs(ST_YMin({b})), "
                f"abs(ST_YMax({b})))))), 0.01)) "
                f"AND ST_DWithin({a}::geography, {b}::geography, {d}))"
            )
        if op in _ARRAYS:
            if len(args) != 2 or not isinstance(args[1], list):
                raise self.fail(f"{op.upper()} attend une propriété et une liste")
            lhs, typ = self.scalar(args[0])
            if typ != ARRAY or not all(isinstance(v, str) for v in args[1]):
                raise self.fail(f"{op.upper()} s'applique à une liste de chaînes")
            return f"({lhs} {_ARRAYS[op]} CAST({self.binds.add(list(args[1]))} AS text[]))"
        raise self.fail(f"opérateur non pris en charge : {op}")


def _number(value: Any) -> float | int:
    """A CQL2 number usable in SQL: finite, integers within bigint (1e999 parses as inf)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FilterError("filter", "un nombre est attendu")
    if isinstance(value, float) and not math.isfinite(value):
        raise FilterError("filter", "nombre hors limites (infini ou NaN)")
    if isinstance(value, int) and abs(value) > _MAX_INT:
        raise FilterError("filter", "entier hors limites")
    return value


def _guess(value: Any) -> str:
    if isinstance(value, bool):
        return BOOLEAN
    if isinstance(value, (int, float)):
        return NUMBER
    if isinstance(value, dict) and "date" in value:
        return DATE
    if isinstance(value, dict) and "timestamp" in value:
        return DATETIME
    return STRING


# Tokens of the CQL2-text pre-scan: strings and quoted names, words, numbers, brackets,
# separators, operators (anything else is left to the parser, which refuses it).
_TOKEN = re.compile(
    r"""\s+|'(?:[^']|'')*'?|"[^"]*"?|([A-Za-z_][A-Za-z0-9_.:]*)|([0-9.]+(?:[eE][+-]?[0-9]+)?)"""
    r"|([(\[])|([)\]])|(,)|(.)",
    re.DOTALL,
)
_SEPARATORS = {"AND", "OR"}
_OPERATORS = {"NOT", "LIKE", "BETWEEN", "IN", "IS", "DIV"}


def filter_depth(text: str, lang: str) -> int:
    """Upper bound of a CQL2 filter's nesting, found without parsing it (linear, no recursion).

    cql2-text: each bracket, and each operator (NOT, signs, comparisons, arithmetic) between
    two AND/OR/commas of the same bracket, may open one level of the parse tree. cql2-json:
    the nesting of objects and arrays, two per tree level (an operation and its `args`).
    """
    if lang == "cql2-json":
        depth = deepest = 0
        for m in re.finditer(r'"(?:[^"\\]|\\.)*"?|([\[{])|([\]}])', text):
            if m.group(1):
                depth += 1
                deepest = max(deepest, depth)
            elif m.group(2):
                depth = max(0, depth - 1)
        return (deepest + 1) // 2
    stack: list[tuple[int, int]] = []
    base = cur = deepest = 0
    for m in _TOKEN.finditer(text):
        word, _num, opening, closing, comma, other = m.groups()
        if opening:
            stack.append((base, cur))
            cur += 1
            base = cur
        elif closing:
            base, cur = stack.pop() if stack else (0, 0)
        elif comma or (word and word.upper() in _SEPARATORS):
            cur = base
        elif (word and word.upper() in _OPERATORS) or (other and not other.isspace()):
            cur += 1
        deepest = max(deepest, cur)
    return deepest


def parse_cql2(text: str, lang: str, limits: FilterLimits | None = None) -> Any:
    """Parse and validate a CQL2 filter with the `cql2` library → its CQL2-JSON tree.

    The text's size and nesting are bounded first: the native parser recurses without limit
    and a deep enough filter overflows its stack, killing the whole worker process.
    """
    import cql2

    limits = limits or FilterLimits()
    if lang not in ("cql2-text", "cql2-json"):
        raise FilterError("filter-lang", "valeurs possibles : cql2-text, cql2-json")
    if len(text) > limits.max_chars:
        raise FilterError(
            "filter",
            f"{limits.max_chars} caractères au plus (réglage CARTECO_FILTER_MAX_CHARS)",
            limit="CARTECO_FILTER_MAX_CHARS",
        )
    if filter_depth(text, lang) > limits.max_depth:
        raise FilterError(
            "filter",
            f"expression trop imbriquée : {limits.max_depth} niveaux au plus "
            "(réglage CARTECO_FILTER_MAX_DEPTH)",
            limit="CARTECO_FILTER_MAX_DEPTH",
        )
    try:
        if lang == "cql2-text":
            expr = cql2.parse_text(text)
        elif lang == "cql2-json":
            expr = cql2.parse_json(text)
        else:
            raise FilterError("filter-lang", "valeurs possibles : cql2-text, cql2-json")
        tree = expr.to_json()
    except FilterError:
        raise
    except (
        cql2.ParseError,
        cql2.ValidationError,
        ValueError,
        OverflowError,
        RecursionError,
    ) as exc:
        raise FilterError("filter", f"expression {lang} invalide") from exc
    return tree


def _cql2(
    collection: Collection,
    text: str,
    lang: str,
    crs: str | None,
    binds: _Binds,
    limits: FilterLimits,
) -> str:
    tree = parse_cql2(text, lang, limits)
    _, srid, swap = parse_crs(crs, "filter-crs")
    try:
        return _Cql(collection, srid, swap, binds).walk(tree)
    except FilterError:
        raise
    except (
        TypeError,
        KeyError,
        IndexError,
        AttributeError,
        ValueError,
        OverflowError,
        RecursionError,
    ) as exc:
        # Whatever else the tree holds (bad floats, huge numbers...) is the client's error.
        raise FilterError("filter", "expression mal formée") from exc
