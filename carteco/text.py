"""Small text helpers shared by importers, mappings and search."""

from __future__ import annotations

import json
import math
import re
import unicodedata


def fold(text: str) -> str:
    """Lower case, no accents, runs of non-alphanumerics as one space, trimmed."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    return re.sub(r"[^a-z0-9]+", " ", text).strip()


def header_key(text: str) -> str:
    """Key used to compare column headers: folded, with underscores."""
    return fold(text).replace(" ", "_")


# What must not appear raw inside an HTML <script> element: "<" (no "</script>" nor "<!--"
# can end or derail the element), ">" and "&" (HTML parsers and entity decoders), and the two
# line separators that older JavaScript parsers treat as line ends inside strings.
_SCRIPT_UNSAFE = str.maketrans(
    {
        "<": "\\u003c",
        ">": "\\u003e",
        "&": "\\u0026",
        "\u2028": "\\u2028",
        "\u2029": "\\u2029",
    }
)


def json_for_script(value: object) -> str:
    """JSON text of `value` safe to place inside an HTML <script> element, as data only."""
    # The escapes are valid JSON string escapes, and outside strings JSON has none of these
    # characters: the text still parses to the very same value (JSON.parse, json.loads).
    return json.dumps(value, ensure_ascii=False, default=str).translate(_SCRIPT_UNSAFE)


# Numbers in requests are ASCII only: str.isdigit() accepts '²' and '①' (int() then fails) and
# int()/float() accept Arabic-Indic digits, '_' separators, spaces, 'nan' and 'inf'.
_ASCII_INT = re.compile(r"[0-9]+")
_ASCII_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def ascii_int(text: str, lo: int = 0, hi: int = 2**63 - 1) -> int | None:
    """An ASCII decimal integer (digits only) within [lo, hi], or None."""
    if not _ASCII_INT.fullmatch(text):
        return None
    if len(text.lstrip("0")) > len(str(hi)):
        return None  # never convert a huge digit string (and it is out of range anyway)
    value = int(text)
    return value if lo <= value <= hi else None


def ascii_float(text: str) -> float | None:
    """A finite ASCII decimal number (`-1.5`, `2e3`), or None (no nan, inf or 1e999)."""
    text = text.strip(" ")
    if len(text) > 64 or not _ASCII_NUMBER.fullmatch(text):
        return None
    value = float(text)
    return value if math.isfinite(value) else None


# -- spreadsheet formulas in CSV output (OWASP "CSV injection") ------------------------------
# THE rule, for every CSV Carteco writes (exports built in SQL, /ban/search/csv/, geocode-csv):
# a cell that starts with = + - @ (or their full-width forms), after any leading whitespace or
# control characters, or that starts with a tab or CR, gets a leading apostrophe so that a
# spreadsheet shows it as text instead of running it. Plain numbers (-1.5, +33) are left alone.
# The patterns use only syntax that Python's `re` and PostgreSQL's regular expressions share.
FORMULA_PATTERN = (
    r"^[\u0001-\u0020\u007f-\u00a0\u1680\u180e\u2000-\u200f\u2028-\u202f\u205f-\u206f"
    r"\u3000\ufeff]*[=+@\uff1d\uff0b\uff0d\uff20-]|^[\u0009\u000d]"
)
PLAIN_NUMBER_PATTERN = r"^[+-]?[0-9]+([.,][0-9]+)?([eE][+-]?[0-9]+)?$"
_FORMULA_RE = re.compile(FORMULA_PATTERN)
_PLAIN_NUMBER_RE = re.compile(PLAIN_NUMBER_PATTERN)


def neutralise_formula(cell: str) -> str:
    """The cell as a spreadsheet will show it as text (a quote before a formula's start)."""
    if _FORMULA_RE.search(cell) and not _PLAIN_NUMBER_RE.search(cell):
        return "'" + cell
    return cell


def neutralise_formula_sql(expr: str) -> str:
    """The same rule as :func:`neutralise_formula`, as SQL over a text expression."""
    return (
        f"CASE WHEN ({expr}) ~ '{FORMULA_PATTERN}' AND ({expr}) !~ '{PLAIN_NUMBER_PATTERN}' "
        f"THEN '''' || ({expr}) ELSE ({expr}) END"
    )
