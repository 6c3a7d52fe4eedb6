"""docs/settings.md documents every setting, with its current default, and nothing else.

As datasette does for its settings: adding a field to carteco/settings.py without a line in
docs/settings.md (or removing one and leaving the line) fails here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic_core import PydanticUndefined

from carteco.settings import Settings

PAGE = Path(__file__).resolve().parent.parent / "docs" / "settings.md"
ROW = re.compile(r"^\| `CARTECO_([A-Z0-9_]+)` \| (?P<default>[^|]+?) \| (?P<meaning>[^|]+?) \|$")


def _rows() -> dict[str, tuple[str, str]]:
    rows: dict[str, tuple[str, str]] = {}
    for line in PAGE.read_text(encoding="utf-8").splitlines():
        m = ROW.match(line)
        if m:
            name = m.group(1).lower()
            assert name not in rows, f"CARTECO_{m.group(1)} is documented twice"
            rows[name] = (m.group("default"), m.group("meaning"))
    return rows


def _rendered(value: Any) -> str:
    """A default as the page writes it: JSON for lists and booleans, else the plain value."""
    if isinstance(value, bool | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def test_every_setting_is_documented() -> None:
    rows = _rows()
    missing = sorted(f"CARTECO_{n.upper()}" for n in Settings.model_fields if n not in rows)
    assert not missing, f"settings missing from docs/settings.md: {missing}"


def test_the_page_names_no_setting_that_does_not_exist() -> None:
    named = set(re.findall(r"CARTECO_([A-Z0-9_]+)", PAGE.read_text(encoding="utf-8")))
    unknown = sorted(f"CARTECO_{n}" for n in named if n.lower() not in Settings.model_fields)
    assert not unknown, f"docs/settings.md names settings that do not exist: {unknown}"


def test_documented_defaults_are_the_current_ones() -> None:
    rows = _rows()
    for name, field in Settings.model_fields.items():
        if name not in rows:
            continue  # reported by test_every_setting_is_documented
        cell, meaning = rows[name]
        assert meaning.strip(), name
        if field.default is PydanticUndefined:
            if field.default_factory is None:
                continue
            value = field.default_factory()  # type: ignore[call-arg]
            if not isinstance(value, list):
                continue  # computed at run time (the data folder): the page explains it
        else:
            value = field.default
        if value is None:
            assert cell == "unset", f"CARTECO_{name.upper()}: default is unset, page says {cell}"
            continue
        m = re.match(r"`([^`]*)`", cell)
        assert m, f"CARTECO_{name.upper()}: default cell should start with `value`: {cell}"
        assert m.group(1) == _rendered(value), (
            f"CARTECO_{name.upper()}: default is {_rendered(value)}, page says {m.group(1)}"
        )
