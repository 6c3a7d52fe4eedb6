"""Jinja2 templates of the public pages (French)."""

from __future__ import annotations

from pathlib import Path

from fastapi.templating import Jinja2Templates

from api.assets import ASSETS

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
# Escape every value whatever the template's file name (Starlette's default only escapes
# .html/.htm/.xml): imported text reaches the pages as escaped data, never as markup.
TEMPLATES.env.autoescape = True
# `{{ static('carteco/carte.js') }}` → a content-hashed URL, cached for a year by browsers.
TEMPLATES.env.globals["static"] = ASSETS.url
