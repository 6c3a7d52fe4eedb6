"""The territory vocabulary, in one place: the levels, their columns, labels and code shapes.

Every module that names a territory level (the OGC collections, the tiled layers, the filters,
the statistics, the public map, the schema) reads it from here. To add a level: add one
`TerritoryLevel` to `LEVELS` (and a migration extending ``territories_level_check``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Code shapes. The département has two on purpose:
# - DEPARTEMENT_CODE is a real département (01…95, 2A, 2B, 971…976 and other 97x): it checks
#   a value that must name one (land data, diagnostics);
# - DEPARTEMENT_FILTER_CODE only checks that a filter value *looks like* a code (2–3 digits,
#   2A, 2B): an unknown code is an empty result, a malformed one a client error.
COMMUNE_CODE = re.compile(r"^([0-9]{5}|2[AB][0-9]{3})$")  # INSEE code (Corsica: 2A/2B)
DEPARTEMENT_CODE = re.compile(r"^(\d{2}|2[AB]|97\d)$")
DEPARTEMENT_FILTER_CODE = re.compile(r"^([0-9]{2,3}|2[AB])$")
EPCI_CODE = re.compile(r"^[0-9]{9}$")  # SIREN
EPT_CODE = re.compile(r"^([0-9]{9}|T1)$")  # SIREN, or T1 (Paris)
# Any territory code in a `territoire=niveau:code` parameter: no quote, so safe in CQL2 text.
TERRITORY_CODE = re.compile(r"^[0-9A-Za-z]{1,15}$")


@dataclass(frozen=True)
class TerritoryLevel:
    """One territory level: its name in ``territories.level`` and everything derived from it."""

    name: str  # territories.level, and the `territoire=niveau:code` spelling
    column: str  # the structures (and territories) column holding this level's code
    label: str  # French, singular, for people
    collection: str  # OGC API collection id (and tiled layer id)
    title: str  # collection title
    description: str  # collection description
    tile_title: str  # tiled layer title
    minzoom: int  # tiled layer zoom range
    maxzoom: int
    filter_pattern: re.Pattern[str] | None = None  # set: a simple structures filter `?name=`


# Ordered from the largest to the smallest (the order of the schema and of the listings).
LEVELS: tuple[TerritoryLevel, ...] = (
    TerritoryLevel(
        "region",
        "region_code",
        "Région",
        "regions",
        "Régions",
        "Régions (COG).",
        "Régions",
        0,
        12,
    ),
    TerritoryLevel(
        "departement",
        "departement_code",
        "Département",
        "departements",
        "Départements",
        "Départements (COG).",
        "Départements",
        0,
        14,
        DEPARTEMENT_FILTER_CODE,
    ),
    TerritoryLevel(
        "epci",
        "epci_code",
        "EPCI",
        "epci",
        "EPCI",
        "Établissements publics de coopération intercommunale.",
        "EPCI",
        5,
        14,
        EPCI_CODE,
    ),
    TerritoryLevel(
        "ept",
        "ept_code",
        "EPT",
        "ept",
        "EPT",
        "Établissements publics territoriaux du Grand Paris.",
        "Établissements publics territoriaux",
        7,
        14,
        EPT_CODE,
    ),
    TerritoryLevel(
        "commune",
        "commune_code",
        "Commune",
        "communes",
        "Communes",
        "Communes (COG).",
        "Communes",
        7,
        16,
        COMMUNE_CODE,
    ),
    TerritoryLevel(
        "arrondissement",
        "arrondissement_code",
        "Arrondissement",
        "arrondissements",
        "Arrondissements municipaux",
        "Arrondissements municipaux de Paris, Lyon et Marseille.",
        "Arrondissements municipaux",
        9,
        16,
    ),
    TerritoryLevel(
        "qpv",
        "qpv_code",
        "Quartier prioritaire",
        "qpv",
        "QPV",
        "Quartiers prioritaires de la politique de la ville.",
        "Quartiers prioritaires",
        9,
        16,
    ),
)
BY_NAME = {lv.name: lv for lv in LEVELS}
LEVEL_NAMES = tuple(BY_NAME)
# Level → the structures column that holds its code.
LEVEL_COLUMNS = {lv.name: lv.column for lv in LEVELS}
# Level → its French label.
LEVEL_LABELS = {lv.name: lv.label for lv in LEVELS}
# The levels filtering structures with a plain `?level=code,code` parameter (filter order).
FILTER_LEVELS = ("commune", "departement", "epci", "ept")
FILTER_PATTERNS = {name: BY_NAME[name].filter_pattern for name in FILTER_LEVELS}
