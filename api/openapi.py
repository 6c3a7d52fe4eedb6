"""An OpenAPI 3.0.3 document (FastAPI emits 3.1, which GDAL, OWSLib and OGC validators reject)."""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi


def to_openapi30(node: Any) -> Any:
    """Rewrite the JSON Schema 2020-12 constructs of OpenAPI 3.1 into their 3.0 equivalents."""
    if isinstance(node, list):
        return [to_openapi30(v) for v in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("anyOf", "oneOf") and isinstance(value, list):
            non_null = [v for v in value if not (isinstance(v, dict) and v.get("type") == "null")]
            if len(non_null) < len(value):
                out["nullable"] = True
            if len(non_null) == 1:
                out.update(to_openapi30(non_null[0]))
                continue
            out[key] = to_openapi30(non_null)
        elif key == "type" and isinstance(value, list):
            types = [t for t in value if t != "null"]
            if len(types) < len(value):
                out["nullable"] = True
            out["type"] = types[0] if len(types) == 1 else "string"
        elif key == "const":
            out["enum"] = [value]
        elif key == "examples" and isinstance(value, list) and "in" not in node:
            # Schema-level `examples` (3.1) → `example` (3.0); parameter examples keep theirs.
            if value:
                out["example"] = to_openapi30(value[0])
        elif key in ("contentMediaType", "contentEncoding", "$schema", "prefixItems"):
            continue
        elif key == "exclusiveMinimum" and not isinstance(value, bool):
            out["minimum"] = value
            out["exclusiveMinimum"] = True
        elif key == "exclusiveMaximum" and not isinstance(value, bool):
            out["maximum"] = value
            out["exclusiveMaximum"] = True
        else:
            out[key] = to_openapi30(value)
    if "$ref" in out and len(out) > 1:
        # 3.0 ignores siblings of $ref: wrap them in allOf.
        ref = out.pop("$ref")
        out["allOf"] = [{"$ref": ref}]
    if out.get("format") == "binary" and out.get("type") is None and "properties" not in out:
        out["type"] = "string"
    return out


PROBLEM_RESPONSE = {
    "description": "Requête invalide (RFC 9457 problem details)",
    "content": {
        "application/problem+json": {
            "schema": {
                "type": "object",
                "properties": {
                    "type": {"type": "string"},
                    "title": {"type": "string"},
                    "status": {"type": "integer"},
                    "detail": {"type": "string"},
                    "instance": {"type": "string"},
                },
            }
        }
    },
}


# Problems any operation may answer: a malformed request, a missing resource (path
# parameters), the rate limit, an overloaded or unreachable database.
_ANY = {"400", "429", "503"}
_WITH_PATH_PARAMS = {"404"}
_WRITES = {"401", "403", "404", "409", "412", "413", "415", "428"}
_FORMATS = {
    "json": "application/json",
    "geojson": "application/geo+json",
    "html": "text/html",
    "csv": "text/csv",
    "gpkg": "application/geopackage+sqlite3",
    "fgb": "application/flatgeobuf",
    "mvt": "application/vnd.mapbox-vector-tile",
}
# Operations whose 200 is GeoJSON (features and feature collections).
_GEOJSON_PATH = re.compile(r"/items|/structures(/|$)|/nearby|/within")


def _document_problems(method: str, path: str, op: dict[str, Any]) -> None:
    """Declare every problem status the operation can send, with the problem-details body."""
    codes = set(_ANY)
    if "{" in path:
        codes |= _WITH_PATH_PARAMS
    if method.lower() in ("post", "put", "patch", "delete") or path.startswith(
        ("/imports", "/duplicates")
    ):
        codes |= _WRITES  # token-guarded (import reports and duplicate lists are private too)
    if path.startswith(("/moderation", "/contribuer/")):
        codes |= _WRITES  # staff session or signed link
    # Browser routes answer their errors as a French HTML page (JSON when the client asks it).
    browser = path in ("/carte", "/carte/integrer", "/embed", "/besoins-fonciers") or (
        path.startswith(("/territoires/", "/moderation", "/contribuer/"))
    )
    response = (
        {
            "description": "Page d'erreur en français (problem details si Accept le demande)",
            "content": {**PROBLEM_RESPONSE["content"], "text/html": {"schema": {"type": "string"}}},
        }
        if browser
        else PROBLEM_RESPONSE
    )
    for code in sorted(codes):
        op["responses"].setdefault(code, response)
    if browser:  # the 400 documented earlier too
        for code in list(op["responses"]):
            if code[:1] in ("4", "5"):
                op["responses"][code] = response
    ok = op["responses"].get("200")
    if ok is None:
        return
    content = ok.setdefault("content", {})
    if _GEOJSON_PATH.search(path):
        content.setdefault("application/geo+json", {"schema": {"type": "object"}})
    if path.endswith("/queryables"):
        content.setdefault("application/schema+json", {"schema": {"type": "object"}})
    # An `f` parameter chooses the encoding: document the media type of each value.
    for param in op.get("parameters", []):
        if param.get("name") == "f" and param.get("in") == "query":
            for fmt in param.get("schema", {}).get("enum", []):
                media = _FORMATS.get(fmt)
                if media:
                    content.setdefault(
                        media,
                        {"schema": {"type": "string"}}
                        if not media.endswith("json")
                        else {"schema": {"type": "object"}},
                    )


def _problems_not_422(doc: dict[str, Any]) -> None:
    """Document the 400 problems the API really sends (not FastAPI's 422); dedupe parameters."""
    for path, item in doc.get("paths", {}).items():
        for method, op in item.items():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            if op.get("parameters"):
                # Parameters documented by hand (OGC style) replace FastAPI's own.
                unique = {(p.get("name"), p.get("in")): p for p in op["parameters"]}
                op["parameters"] = list(unique.values())
            if op["responses"].pop("422", None) is not None or op.get("parameters"):
                op["responses"].setdefault("400", PROBLEM_RESPONSE)
            _document_problems(method, path, op)
    schemas = doc.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)


def install_openapi(app: FastAPI) -> None:
    """Make `app.openapi()` (served at /openapi.json) return an OpenAPI 3.0.3 document."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        doc = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
            tags=app.openapi_tags,
            servers=app.servers,
        )
        doc = to_openapi30(doc)
        _problems_not_422(doc)
        doc["openapi"] = "3.0.3"
        doc.pop("jsonSchemaDialect", None)
        doc.pop("webhooks", None)
        app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]
