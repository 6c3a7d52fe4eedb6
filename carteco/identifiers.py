"""French company identifiers: SIREN, SIRET (Luhn, with La Poste's rule) and RNA numbers."""

from __future__ import annotations

import re

LA_POSTE_SIREN = "356000000"
# W + the 3-character code of the issuing prefecture + 6 digits. The code is not always
# numeric: Corsica issues W2A…/W2B…, overseas prefectures W9R…, W9G…, W9M…, W9C…, W97….
_RNA = re.compile(r"^W[0-9A-Z]{3}[0-9]{6}$")
_SIREN = re.compile(r"[0-9]{9}")
_SIRET = re.compile(r"[0-9]{14}")
_SEPARATORS = re.compile(r"[\s.\-\u00a0]")
# Digit sum of each digit doubled (5 -> 10 -> 1, ..., 9 -> 18 -> 9), as a translation table.
_LUHN_DOUBLED = str.maketrans("0123456789", "0246813579")


def luhn_ok(digits: str) -> bool:
    """True when a string of digits passes the Luhn check."""
    if digits.isascii() and digits.isdigit():
        # Every import row checks two of these: sum the plain and the doubled digits in C.
        rev = digits[::-1]
        total = sum(map(int, rev[0::2])) + sum(map(int, rev[1::2].translate(_LUHN_DOUBLED)))
        return total % 10 == 0
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def clean_digits(value: str) -> str:
    """Remove the spaces, dots and dashes people type inside identifiers."""
    return _SEPARATORS.sub("", value)


def siren_error(value: str) -> str | None:
    """Why `value` is not a valid SIREN, or None when it is."""
    if not _SIREN.fullmatch(value):
        return "un SIREN a 9 chiffres"
    if value == LA_POSTE_SIREN or luhn_ok(value):
        return None
    return "clé de contrôle (Luhn) du SIREN invalide"


def siret_error(value: str) -> str | None:
    """Why `value` is not a valid SIRET, or None when it is."""
    if not _SIRET.fullmatch(value):
        return "un SIRET a 14 chiffres"
    if value.startswith(LA_POSTE_SIREN):
        # La Poste's establishments break the Luhn rule: their digit sum is a multiple of 5.
        if sum(int(c) for c in value) % 5 == 0:
            return None
        return "SIRET de La Poste invalide (somme des chiffres non multiple de 5)"
    if siren_error(value[:9]):
        return "clé de contrôle (Luhn) du SIREN invalide"
    if not luhn_ok(value):
        return "clé de contrôle (Luhn) du SIRET invalide"
    return None


def is_valid_siret(value: str) -> bool:
    """True for a well-formed SIRET whose check digits hold."""
    return siret_error(value) is None


def rna_error(value: str) -> str | None:
    """Why `value` is not an RNA number (W + 9 characters), or None when it is."""
    return (
        None
        if _RNA.match(value.upper())
        else ("un numéro RNA a la forme W + code de préfecture (3 caractères) + 6 chiffres")
    )
