"""One error shape for every failure: RFC 9457 problem details, never a raw database error."""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from carteco.errors import CartecoError

log = logging.getLogger("carteco.api")
PROBLEM_JSON = "application/problem+json"

TITLES = {
    400: "Requête invalide",
    401: "Authentification requise",
    403: "Accès refusé",
    404: "Introuvable",
    405: "Méthode non autorisée",
    406: "Format non disponible",
    409: "Conflit",
    412: "Version périmée",
    413: "Requête trop volumineuse",
    415: "Type de contenu non pris en charge",
    422: "Données invalides",
    428: "Précondition requise",
    429: "Trop de requêtes",
    500: "Erreur interne",
    503: "Service momentanément indisponible",
}


# Each kind of domain error (carteco/errors.py) has one status, here and nowhere else.
KIND_STATUS = {
    "invalid": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "too_large": 413,
    "unavailable": 503,
    "internal": 500,
}


class Problem(Exception):
    """An error to send as problem details."""

    def __init__(
        self,
        status: int,
        detail: str,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.title = title or TITLES.get(status, "Erreur")
        self.headers = headers or {}
        self.extra = extra


# Pages people open in a browser (or a partner's iframe): their errors are a French HTML page
# with the same status, unless the client asks for JSON. Their JSON helpers stay JSON.
BROWSER_PATHS = ("/carte", "/carte/integrer", "/embed")
BROWSER_PREFIXES = ("/territoires/",)


def run_db(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a query; database refusals become 400/503 problems (never raw errors)."""
    try:
        return fn(*args, **kwargs)
    except sa.exc.DBAPIError as exc:
        name = type(exc.orig).__name__ if exc.orig is not None else ""
        if name == "QueryCanceled":
            raise Problem(
                503,
                "requête trop longue pour la base de données ; restreignez le filtre",
                headers={"Retry-After": "5"},
            ) from exc
        if isinstance(exc, sa.exc.OperationalError):
            raise
        raise Problem(400, "filtre ou géométrie refusé par la base de données") from exc


def wants_html(request: Request) -> bool:
    """Whether an error on this request should be an HTML page (browser route, no JSON asked)."""
    path = request.url.path.rstrip("/") or "/"
    if path not in BROWSER_PATHS and not path.startswith(BROWSER_PREFIXES):
        return False
    accept = request.headers.get("accept", "").lower()
    asks_json = "json" in accept and "text/html" not in accept
    return not asks_json


def html_error_response(
    request: Request, status: int, detail: str, title: str, headers: dict[str, str] | None
) -> Response:
    """The French error page of the browser routes (detail autoescaped by the template)."""
    from api.templating import TEMPLATES  # late: templating imports assets, not needed by APIs

    return TEMPLATES.TemplateResponse(
        request,
        "erreur.html",
        {"status": status, "title": title, "detail": detail, "embed": request.url.path == "/embed"},
        status_code=status,
        headers=headers,
    )


def problem_response(
    request: Request,
    status: int,
    detail: str,
    title: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    """A problem-details JSON response (an HTML error page on browser routes)."""
    if wants_html(request):
        return html_error_response(
            request, status, detail, title or TITLES.get(status, "Erreur"), headers
        )
    body: dict[str, Any] = {
        "type": f"about:blank#{status}" if not extra.get("type") else extra.pop("type"),
        "title": title or TITLES.get(status, "Erreur"),
        "status": status,
        "detail": detail,
        "instance": request.url.path,
    }
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _describe_validation(exc: RequestValidationError) -> tuple[str, list[dict[str, Any]]]:
    errors = []
    for e in exc.errors():
        loc = [str(p) for p in e.get("loc", ()) if p not in ("query", "path", "body", "header")]
        errors.append({"parameter": ".".join(loc), "reason": e.get("msg", "invalide")})
    detail = "; ".join(f"{e['parameter']} : {e['reason']}" for e in errors) or "paramètre invalide"
    return detail, errors


def install_error_handlers(app: FastAPI) -> None:
    """Route every exception through problem details (400 for validation, not 422)."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> Response:
        return problem_response(
            request, exc.status, exc.detail, exc.title, exc.headers, **exc.extra
        )

    @app.exception_handler(CartecoError)
    async def _domain(request: Request, exc: CartecoError) -> Response:
        status = KIND_STATUS.get(exc.kind, 500)
        if status == 500:
            # An internal failure's message may name files or SQL: the log has it, not the client.
            return await _unexpected(request, exc)
        headers = {"Retry-After": "5"} if status == 503 else None
        extra: dict[str, Any] = {}
        errors = exc.field_errors()
        if errors:
            extra["errors"] = errors
        return problem_response(request, status, exc.detail, headers=headers, **extra)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        detail = exc.detail if isinstance(exc.detail, str) else TITLES.get(exc.status_code, "")
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"aucune ressource à l'adresse {request.url.path}"
        if exc.status_code == 405 and detail == "Method Not Allowed":
            detail = f"méthode {request.method} non autorisée ici"
        return problem_response(request, exc.status_code, detail, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        detail, errors = _describe_validation(exc)
        return problem_response(request, 400, detail, errors=errors)

    @app.exception_handler(sa.exc.DataError)
    async def _bad_value(request: Request, exc: sa.exc.DataError) -> Response:
        # The database refused a value the client sent (out of range, bad encoding…).
        log.info("value refused by the database: %s", type(exc.orig).__name__)
        return problem_response(request, 400, "une valeur de la requête est invalide")

    @app.exception_handler(sa.exc.OperationalError)
    async def _db_down(request: Request, exc: sa.exc.OperationalError) -> Response:
        log.warning("database unavailable: %s", type(exc.orig).__name__)
        return problem_response(
            request,
            503,
            "la base de données ne répond pas ; réessayez dans quelques secondes",
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(sa.exc.TimeoutError)
    async def _pool_timeout(request: Request, exc: sa.exc.TimeoutError) -> Response:
        return problem_response(
            request, 503, "service saturé ; réessayez", headers={"Retry-After": "2"}
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s", request.url.path)
        return problem_response(request, 500, "une erreur interne est survenue")
