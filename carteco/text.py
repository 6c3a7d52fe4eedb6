"""Small text helpers shared by importers, mappings and search."""

from __future__ import annotations

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
