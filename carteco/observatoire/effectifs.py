"""SIRENE headcount bands (tranches d'effectifs) and sums of them given as ranges.

SIRENE publishes a band, never a headcount: "20 à 49 salariés". A sum over structures is
therefore a range (the sum of the lower bounds, the sum of the upper bounds), and an open band
("10 000 salariés et plus") or a structure without a band leaves the upper bound unknown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# INSEE codes of trancheEffectifsEtablissement / trancheEffectifsUniteLegale.
BANDS: dict[str, tuple[int, int | None, str]] = {
    "00": (0, 0, "0 salarié"),
    "01": (1, 2, "1 ou 2 salariés"),
    "02": (3, 5, "3 à 5 salariés"),
    "03": (6, 9, "6 à 9 salariés"),
    "11": (10, 19, "10 à 19 salariés"),
    "12": (20, 49, "20 à 49 salariés"),
    "21": (50, 99, "50 à 99 salariés"),
    "22": (100, 199, "100 à 199 salariés"),
    "31": (200, 249, "200 à 249 salariés"),
    "32": (250, 499, "250 à 499 salariés"),
    "41": (500, 999, "500 à 999 salariés"),
    "42": (1000, 1999, "1 000 à 1 999 salariés"),
    "51": (2000, 4999, "2 000 à 4 999 salariés"),
    "52": (5000, 9999, "5 000 à 9 999 salariés"),
    "53": (10000, None, "10 000 salariés et plus"),
}
# "NN": not an employer in the reference year, or unknown; blank: never given.
UNKNOWN = "NN"
# Keys under which imports keep the band in `extra` (SIRENE column names and common aliases).
EXTRA_KEYS = (
    "trancheEffectifsEtablissement",
    "trancheEffectifsUniteLegale",
    "tranche_effectifs",
    "tranche_effectif",
)


def band_of(raw: Any) -> str | None:
    """The INSEE band code of a raw value ('12', '12.0', 12), or None when unknown."""
    if raw is None:
        return None
    text = str(raw).strip()
    if text.endswith(".0"):
        text = text[:-2]
    if text.isascii() and text.isdigit() and len(text) == 1:
        text = "0" + text
    return text if text in BANDS else None


@dataclass
class Employment:
    """Structures per band and the employees they sum to, as a range."""

    by_band: dict[str, int]
    unknown: int

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: bands in INSEE order, the range, and why a bound is missing."""
        known = sum(self.by_band.values())
        low = sum(BANDS[b][0] * n for b, n in self.by_band.items())
        open_band = any(BANDS[b][1] is None for b in self.by_band)
        high = None if open_band else sum((BANDS[b][1] or 0) * n for b, n in self.by_band.items())
        reason = None
        if not known:
            reason = "aucune tranche d'effectifs connue (SIRENE non rapproché)"
            low_out: int | None = None
            high = None
        else:
            low_out = low
            if self.unknown:
                high = None
                reason = (
                    f"{self.unknown} structure(s) sans tranche d'effectifs connue : "
                    "la borne haute n'est pas connue"
                )
            elif open_band:
                reason = "une tranche « 10 000 salariés et plus » n'a pas de borne haute"
        return {
            "by_band": [
                {"code": b, "label": BANDS[b][2], "structures": self.by_band[b]}
                for b in BANDS
                if b in self.by_band
            ],
            "structures_with_band": known,
            "structures_without_band": self.unknown,
            "employees_min": low_out,
            "employees_max": high,
            "reason": reason,
        }


def employment(bands: list[str | None]) -> Employment:
    """Count the structures per band (None = unknown band)."""
    by: dict[str, int] = {}
    unknown = 0
    for b in bands:
        if b is None:
            unknown += 1
        else:
            by[b] = by.get(b, 0) + 1
    return Employment(by, unknown)
