"""ESS family of a legal unit, from its INSEE legal category or a legal-form label."""

from __future__ import annotations

import re
import unicodedata

FAMILY_LABELS = {
    "association": "Association",
    "cooperative": "Coopérative",
    "mutuelle": "Mutuelle",
    "fondation": "Fondation",
    "societe_commerciale_ess": "Société commerciale de l'ESS",
    "inconnue": "Non renseignée",
}

# INSEE "catégories juridiques" (niveau III) that are cooperative forms.
_COOPERATIVE_CODES = {
    "5432",  # SARL union de sociétés coopératives
    "5443",  # SARL coopérative de construction
    "5451",  # SARL coopérative de consommation
    "5453",  # SARL coopérative artisanale
    "5454",  # SARL coopérative d'intérêt maritime
    "5455",  # SARL coopérative de transport
    "5458",  # SARL coopérative ouvrière de production (SCOP)
    "5459",  # SARL union de SCOP
    "5460",  # autre SARL coopérative
    *(f"55{n}" for n in ("51", "52", "53", "54", "55", "58", "59", "60")),  # SA coop. à CA
    *(f"56{n}" for n in ("51", "52", "53", "54", "55", "58", "59", "60")),  # SA coop. à directoire
    "6316",  # CUMA
    "6317",  # société coopérative agricole
    "6318",  # union de sociétés coopératives agricoles
    "6532",  # SICA
}
_MUTUAL_CODES = {"8210", "8250", "8290", "6411"}


def family_from_category(code: str | None, ess_flag: bool | None = None) -> str:
    """ESS family from a 4-digit INSEE legal category and the SIRENE ESS flag."""
    code = (code or "").strip()
    if not re.fullmatch(r"[0-9]{4}", code):
        return "inconnue"
    if code.startswith("92"):
        return "association"
    if code.startswith("93"):
        return "fondation"
    if code in _COOPERATIVE_CODES:
        return "cooperative"
    if code in _MUTUAL_CODES or code.startswith("82"):
        return "mutuelle"
    if ess_flag and code[0] == "5":
        return "societe_commerciale_ess"
    return "inconnue"


def _fold(text: str) -> str:
    text = unicodedata.normalize("NFKD", text)
    return "".join(c for c in text if not unicodedata.combining(c)).lower()


def family_from_label(label: str | None) -> str:
    """ESS family from a free-text legal form such as "Association déclarée" or "SCOP SARL"."""
    t = _fold(label or "")
    if not t.strip():
        return "inconnue"
    if "association" in t or re.search(r"\bloi 1901\b", t):
        return "association"
    if "fondation" in t or "fonds de dotation" in t:
        return "fondation"
    if re.search(r"cooperati|\bscop\b|\bscic\b|\bcae\b|\bcuma\b", t):
        return "cooperative"
    if "mutuel" in t or "mutualiste" in t:
        return "mutuelle"
    return "inconnue"
