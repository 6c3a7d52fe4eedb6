"""Small text helpers shared by importers, mappings and search."""

from __future__ import annotations

import json
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
