"""Synthetic identifiers shared by the benches: Luhn-valid SIRETs."""

from __future__ import annotations

import random


def luhn_digit(body: str) -> str:
    """The digit that makes `body` + digit pass the Luhn check."""
    total = 0
    for i, ch in enumerate(reversed(body + "0")):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return str((10 - total % 10) % 10)


def siret(rnd: random.Random) -> str:
    """A SIRET whose SIREN and SIRET check digits both hold (never La Poste's SIREN)."""
    siren = str(rnd.randint(10_000_000, 99_999_999))
    siren += luhn_digit(siren)
    body = siren + f"{rnd.randint(1, 9999):04d}"
    return body + luhn_digit(body)
