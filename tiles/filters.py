"""Request parameters → the one filter compiler (carteco.filters), for tiles."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from carteco.collections import get_collection
from carteco.errors import CartecoError
from carteco.filters import SIMPLE_FILTERS, FilterLimits, compile_filter
from carteco.history import PARAM as AS_OF
from carteco.history import cutoff, parse_as_of, structures_source
from carteco.territory_levels import FILTER_LEVELS, LEVEL_COLUMNS, TERRITORY_CODE
from tiles.mvt import NO_FILTER, TileFilter

# Parameters that change tile content (and so the cache key).
TILE_FILTER_PARAMS = (*SIMPLE_FILTERS, "filter", "filter-lang", "filter-crs", "datetime")
# French aliases used by the public map and the embed URLs.
ALIASES = {"secteur": "sector", "famille": "family"}
# Levels with a plain filter parameter; the others go through a CQL2 equality on their column.
_SIMPLE_LEVELS = FILTER_LEVELS
_CQL_LEVELS = {lv: col for lv, col in LEVEL_COLUMNS.items() if lv not in FILTER_LEVELS}
_CODE = TERRITORY_CODE


class TerritoryParamError(CartecoError, ValueError):
    """A `territoire=niveau:code` parameter that cannot be understood."""

    kind = "invalid"

    def field_errors(self) -> list[dict[str, str]]:
        """The `territoire` parameter and why it was refused."""
        return [{"parameter": "territoire", "reason": str(self).removeprefix("territoire : ")}]


def parse_territory(value: str) -> tuple[str, str]:
    """`departement:93` → ("departement", "93"); raise TerritoryParamError when malformed."""
    level, sep, code = value.partition(":")
    level, code = level.strip(), code.strip()
    if not sep or level not in (*_SIMPLE_LEVELS, *_CQL_LEVELS) or not _CODE.match(code):
        raise TerritoryParamError(
            "territoire : attendu niveau:code, niveau parmi "
            + ", ".join((*_SIMPLE_LEVELS, *_CQL_LEVELS))
        )
    return level, code


def normalise_params(params: Mapping[str, str]) -> dict[str, str]:
    """The filter parameters of a request, French aliases and `territoire` resolved."""
    out: dict[str, str] = {}
    for name, value in params.items():
        name = ALIASES.get(name, name)
        if name in TILE_FILTER_PARAMS and value != "":
            out[name] = value
    if params.get("territoire"):
        level, code = parse_territory(params["territoire"])
        if level in _SIMPLE_LEVELS:
            out[level] = code
        elif "filter" in out:
            raise TerritoryParamError(
                f"territoire : le niveau {level} ne se combine pas avec filter"
            )
        else:
            # The code matched _CODE (no quote possible) before it is put in CQL2 text.
            out["filter"] = f"{_CQL_LEVELS[level]} = '{code}'"
            out["filter-lang"] = "cql2-text"
    return out


def tile_filter(params: Mapping[str, str], limits: FilterLimits | None = None) -> TileFilter:
    """Compile the request's filters on structures (raises carteco FilterError on bad input).

    The CQL2 text goes through the same bounded parse as the items (size and depth `limits`).
    """
    norm = normalise_params(params)
    as_of = params.get(AS_OF) or None
    if not norm and as_of is None:
        return NO_FILTER
    collection = get_collection("structures")
    assert collection is not None
    sql, binds = compile_filter(collection, norm, limits) if norm else ("TRUE", {})
    source = ""
    if as_of is not None:
        # A past date (ASCII, not in the future: AsOfError → 400) reads the history.
        day = parse_as_of(as_of)
        source = structures_source("tile_as_of")
        binds = {**binds, "tile_as_of": cutoff(day)}
        norm = {**norm, AS_OF: day.isoformat()}
    if sql == "TRUE" and not source:
        return NO_FILTER
    canonical = "&".join(f"{k}={norm[k]}" for k in sorted(norm))
    key = hashlib.sha1(canonical.encode(), usedforsecurity=False).hexdigest()[:20]
    return TileFilter("" if sql == "TRUE" else sql, binds, key, source)
