"""Answer helpers shared by the routes: media types, compact JSON, French HTML pages."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, Response

from api.templating import TEMPLATES

GEOJSON = "application/geo+json"


def json_bytes(obj: Any) -> bytes:
    """Compact UTF-8 JSON."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=str).encode()


def html(request: Request, template: str, **ctx: Any) -> HTMLResponse:
    """Render a French HTML page."""
    return TEMPLATES.TemplateResponse(request, template, ctx)


def feature_collection(features: str, meta: dict[str, Any]) -> Response:
    """A GeoJSON FeatureCollection from PostGIS-built features text and its members."""
    body = (
        '{"type":"FeatureCollection","features":' + features + "," + json_bytes(meta).decode()[1:]
    )
    return Response(body.encode(), media_type=GEOJSON)
