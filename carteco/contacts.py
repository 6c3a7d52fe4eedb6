"""What the card shows beyond the columns: contacts, opening hours and images kept in `extra`.

Contact fields edited by hand (PATCH, moderation) live under `phone`, `email`,
`opening_hours`; imports keep their own column names in `extra`, so a few usual aliases are
read too. Only http(s) image addresses are shown.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from carteco.opening_hours import summary
from carteco.structure_fields import url_scheme, validate_structure_fields
from carteco.text import fold

ALIASES = {
    "phone": ("phone", "telephone", "tel", "telephone_fixe", "contact_phone"),
    "email": ("email", "courriel", "mail", "e_mail", "contact_email"),
    "opening_hours": ("opening_hours", "horaires", "horaires_ouverture"),
}
IMAGE_KEYS = ("images", "image", "photo", "photos", "logo", "image_url")
MAX_IMAGES = 4


def _lookup(extra: dict[str, Any], names: tuple[str, ...]) -> Any:
    folded = {fold(str(k)).replace(" ", "_").replace("-", "_"): v for k, v in extra.items()}
    for name in names:
        value = folded.get(name)
        if value not in (None, "", []):
            return value
    return None


def _images(extra: dict[str, Any]) -> list[str]:
    found = _lookup(extra, IMAGE_KEYS)
    items = found if isinstance(found, list) else [found] if found else []
    urls: list[str] = []
    for item in items:
        url = item.get("url") if isinstance(item, dict) else item
        if isinstance(url, str) and url_scheme(url.strip()) in ("http", "https"):
            urls.append(url.strip())
    return urls[:MAX_IMAGES]


def card_details(
    extra: dict[str, Any] | None, source: str | None, now: datetime | None = None
) -> dict[str, Any]:
    """Phone, email, opening hours (French lines, open now), images and sources of a card."""
    extra = extra or {}
    out: dict[str, Any] = {}
    for key, names in ALIASES.items():
        value = _lookup(extra, names)
        text = value if isinstance(value, str) else None
        if text is not None and key != "opening_hours":
            clean, errors = validate_structure_fields({key: text})
            text = clean.get(key) if not errors else None  # never a link the validator refuses
        out[key] = text
    out["opening_hours"] = summary(out["opening_hours"], now)
    out["images"] = _images(extra)
    others = extra.get("_autres_sources")
    origins = [source, *(others if isinstance(others, dict) else {})]
    out["sources"] = [str(s) for s in origins if s]
    return out
