"""Realistic noise on reference addresses, shared by the geocoding tests and the benchmark."""

from __future__ import annotations

import csv
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

NOISE_KINDS = (
    "exact",
    "case",
    "abbreviations",
    "no_postcode",
    "typo1",
    "typo2",
    "bis_ter",
    "cedex",
)
ABBREVIATE = {
    "rue": "R",
    "avenue": "AV",
    "boulevard": "BD",
    "place": "PL",
    "chemin": "CHE",
    "impasse": "IMP",
    "allee": "ALL",
    "allée": "ALL",
    "square": "SQ",
    "faubourg": "FG",
    "saint": "ST",
    "sainte": "STE",
    "general": "GEN",
    "général": "GEN",
    "marechal": "MAL",
    "maréchal": "MAL",
    "president": "PDT",
    "président": "PDT",
    "route": "RTE",
}


@dataclass(frozen=True)
class RefAddress:
    """One reference address with its true position."""

    number: str
    suffix: str
    street: str
    postcode: str
    commune: str
    lon: float
    lat: float

    def text(self, postcode: bool = True) -> str:
        """The clean one-line address."""
        num = f"{self.number}{' ' + self.suffix if self.suffix else ''}"
        city = f"{self.postcode} {self.commune}" if postcode and self.postcode else self.commune
        return f"{num} {self.street}, {city}"


def read_bal(path: Path, postcode: str) -> list[RefAddress]:
    """Addresses of a BAL 1.3 file (which carries no postcode: give the commune's)."""
    with path.open(encoding="utf-8") as fh:
        return [
            RefAddress(
                r["numero"],
                r["suffixe"],
                r["voie_nom"],
                postcode,
                r["commune_nom"],
                float(r["long"]),
                float(r["lat"]),
            )  # fmt: skip
            for r in csv.DictReader(fh, delimiter=";")
            if r["numero"] and r["numero"] != "99999"
        ]


def read_ban(path: Path) -> list[RefAddress]:
    """Addresses of a BAN per-département CSV."""
    with path.open(encoding="utf-8") as fh:
        return [
            RefAddress(
                r["numero"],
                r["rep"],
                r["nom_voie"],
                r["code_postal"],
                r["nom_commune"],
                float(r["lon"]),
                float(r["lat"]),
            )  # fmt: skip
            for r in csv.DictReader(fh, delimiter=";")
            if r["numero"] and r["numero"] != "99999"
        ]


def _typo(word: str, rng: random.Random) -> str:
    if len(word) < 4:
        return word
    i = rng.randrange(1, len(word) - 1)
    op = rng.choice(("swap", "drop", "double", "replace"))
    if op == "swap":
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if op == "drop":
        return word[:i] + word[i + 1 :]
    if op == "double":
        return word[:i] + word[i] + word[i:]
    return word[:i] + rng.choice("aeioustrn") + word[i + 1 :]


def _typos(street: str, n: int, rng: random.Random) -> str:
    words = street.split()
    long_ = [i for i, w in enumerate(words) if len(w) >= 5] or [len(words) - 1]
    for _ in range(n):
        i = rng.choice(long_)
        words[i] = _typo(words[i], rng)
    return " ".join(words)


def noisy(a: RefAddress, kind: str, rng: random.Random) -> str:
    """The address written with one kind of real-world noise."""
    if kind == "exact":
        return a.text()
    if kind == "case":
        return rng.choice((str.upper, str.lower))(a.text())
    if kind == "abbreviations":
        words = [ABBREVIATE.get(w.lower(), w) for w in a.street.split()]
        street = " ".join(w for w in words if w.lower() not in ("de", "du", "la", "des"))
        return f"{a.number} {a.suffix} {street} {a.postcode} {a.commune}".upper().replace("  ", " ")
    if kind == "no_postcode":
        return a.text(postcode=False)
    if kind == "typo1":
        return f"{a.number} {_typos(a.street, 1, rng)}, {a.postcode} {a.commune}"
    if kind == "typo2":
        return f"{a.number} {_typos(a.street, 2, rng)}, {a.postcode} {a.commune}"
    if kind == "bis_ter":
        # Glued suffix ("12B", "3TER") as often written by hand.
        suffix = a.suffix.upper() if a.suffix else ""
        return f"{a.number}{suffix} {a.street} {a.postcode} {a.commune}"
    if kind == "cedex":
        return f"{a.text()} CEDEX {rng.randint(1, 20):02d}"
    raise ValueError(kind)


def queries(
    refs: list[RefAddress], n: int, seed: int = 42
) -> Iterator[tuple[str, str, RefAddress]]:
    """`n` (kind, noisy text, truth) triples, kinds in turn, addresses drawn with a fixed seed."""
    rng = random.Random(seed)
    for i in range(n):
        kind = NOISE_KINDS[i % len(NOISE_KINDS)]
        pool = [a for a in refs if a.suffix] if kind == "bis_ter" else refs
        a = rng.choice(pool or refs)
        yield kind, noisy(a, kind, rng), a


def metres(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Distance in metres (equirectangular, fine below a few km)."""
    x = math.radians(lon2 - lon1) * math.cos(math.radians((lat1 + lat2) / 2))
    y = math.radians(lat2 - lat1)
    return 6371000.0 * math.hypot(x, y)
