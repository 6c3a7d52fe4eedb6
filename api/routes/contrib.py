"""Public contributions (`/contributions`, `/contribuer/fiche`) and the moderation pages.

Visitors propose a structure, a change or a closure (JSON, from the map's forms); a structure
updates its own card through a signed link; staff log in to `/moderation` (server-side
session cookie, CSRF token in every form) to decide. The work is the core's
(`carteco.proposals`, `carteco.accounts`, `carteco.editlinks`); mails leave after each commit.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy.engine import Engine
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from api.deps import client_of, get_engine, get_settings
from api.errors import Problem
from api.templating import TEMPLATES
from api.urls import public_base
from carteco import accounts, editlinks, mail, proposals
from carteco.accounts import StaffUser
from carteco.errors import CartecoError
from carteco.families import FAMILY_LABELS
from carteco.land import survey
from carteco.models import PROPOSAL_KINDS, PROPOSAL_ORIGINS, PROPOSAL_STATUSES
from carteco.sectors import load_taxonomy
from carteco.settings import Settings

COOKIE = "carteco_session"
NO_STORE = {"Cache-Control": "no-store"}
# Staff pages are never framed (clickjacking): a second CSP header narrows the page's own.
STAFF_HEADERS = {
    **NO_STORE,
    "Content-Security-Policy": "frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
}
STATUS_LABELS = {
    "received": "reçue (non vérifiée)",
    "pending": "à modérer",
    "approved": "acceptée",
    "rejected": "refusée",
    "needs_info": "précision demandée",
    "spam": "indésirable",
    "merged": "fusionnée",
}
KIND_LABELS = {
    "create": "ajout",
    "update": "modification",
    "close": "fermeture",
    "land_need": "besoin foncier",
}
# The needs survey form's fields (carteco.land.survey), plus its robot checks.
NEED_FORM_FIELDS = (*survey.FIELD_LABELS, "form_token", proposals.HONEYPOT)
ORIGIN_LABELS = {
    "contribution": "visiteur",
    "self_update": "la structure elle-même",
    "reconcile": "rapprochement",
    "staff": "équipe",
}
PRECISION_LABELS = {
    "housenumber": "au numéro",
    "street": "à la rue",
    "locality": "au lieu-dit",
    "municipality": "à la commune (approximative)",
    "manual": "placée à la main",
    "provided": "fournie",
}
REDIRECT: dict[int | str, dict[str, Any]] = {
    303: {"description": "Redirection vers la page suivante (file de modération)"}
}
ACTIONS = ("approuver", "refuser", "precisions", "fusionner", "deplacer")


def _mailer(engine: Engine, settings: Settings) -> BackgroundTask:
    """Send the mails queued by the request, once its answer is gone."""
    return BackgroundTask(mail.deliver, engine, settings)


def _secure(request: Request, settings: Settings) -> bool:
    return (settings.public_url or "").startswith("https://")


def _staff(request: Request, engine: Engine) -> StaffUser | None:
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    with engine.connect() as conn:
        return accounts.session_user(conn, token)


def _form_value(form: Any, name: str, limit: int = 2000) -> str:
    value = form.get(name)
    if not isinstance(value, str):
        return ""
    if len(value) > limit or "\x00" in value:
        raise Problem(400, f"{name} : valeur trop longue ou invalide")
    return value


def _sectors() -> list[dict[str, str]]:
    tax = load_taxonomy()
    return [{"code": code, "label": s.label} for code, s in sorted(tax.by_code().items())]


async def _form_proposal(
    engine: Engine,
    st: Settings,
    submit: Callable[[], dict[str, Any]],
    page: Callable[..., HTMLResponse],
    **kept: Any,
) -> HTMLResponse:
    """The end of a public form's post: store the proposal (`submit`, a blocking core call
    that also runs the robot checks), then answer with the form's `page`: the receipt, or the
    errors (429 over the rate, else 400) with what the page shows back (`kept`)."""
    try:
        answer = await run_in_threadpool(submit)
    except CartecoError as exc:
        status = 429 if exc.kind == "too_many" else 400
        errors: list[dict[str, Any]] = exc.field_errors() or [
            {"field": "", "reason": str(exc), "value": None}
        ]
        return page(status=status, errors=errors, **kept)
    await run_in_threadpool(mail.deliver, engine, st)
    return page(done=answer)


def contrib_router() -> APIRouter:
    """Public submission endpoints, the self-update page and `/moderation`."""
    router = APIRouter(tags=["contributions"])

    # ---- public JSON ---------------------------------------------------------------------

    @router.get("/contributions/jeton", summary="Jeton d'un formulaire de contribution")
    def jeton(st: Settings = Depends(get_settings)) -> JSONResponse:
        return JSONResponse({"form_token": proposals.form_token(st.secret_key)}, headers=NO_STORE)

    @router.post(
        "/contributions",
        status_code=202,
        summary="Proposer une structure, une modification ou une fermeture (modérée)",
    )
    async def post_contribution(
        request: Request,
        engine: Engine = Depends(get_engine),
        st: Settings = Depends(get_settings),
    ) -> JSONResponse:
        body = await request.body()  # BodyLimitMiddleware caps it (contrib_max_bytes)
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise Problem(400, "corps JSON attendu") from exc
        if not isinstance(payload, dict):
            raise Problem(400, "objet JSON attendu")
        if "\\u0000" in json.dumps(payload):
            raise Problem(400, "caractère NUL interdit")
        client = client_of(request)
        answer = await run_in_threadpool(proposals.submit, engine, st, payload, client=client)
        return JSONResponse(
            {
                **answer,
                "message": "Merci ! Votre proposition sera examinée par l'équipe de modération.",
            },
            status_code=202,
            headers=NO_STORE,
            background=_mailer(engine, st),
        )

    @router.get("/contributions/{proposal_id}", summary="État d'une proposition (avec son reçu)")
    def get_contribution(
        proposal_id: int,
        recu: str = Query(..., max_length=100, description="Reçu donné à l'envoi"),
        engine: Engine = Depends(get_engine),
    ) -> JSONResponse:
        with engine.connect() as conn:
            return JSONResponse(proposals.public_status(conn, proposal_id, recu), headers=NO_STORE)

    # ---- needs survey ----------------------------------------------------------------------

    def _need_page(
        request: Request,
        st: Settings,
        status: int = 200,
        form_token: str | None = None,
        **extra: Any,
    ) -> HTMLResponse:
        ctx = {
            "kinds": survey.KIND_LABELS,
            "labels": survey.FIELD_LABELS,
            "v": {},
            "form_token": form_token or proposals.form_token(st.secret_key),
            **extra,
        }
        return TEMPLATES.TemplateResponse(
            request, "besoins_fonciers.html", ctx, status_code=status, headers=NO_STORE
        )

    @router.get(
        "/besoins-fonciers",
        response_class=HTMLResponse,
        summary="Formulaire public : déclarer un besoin foncier (modéré)",
    )
    def need_form(request: Request, st: Settings = Depends(get_settings)) -> HTMLResponse:
        return _need_page(request, st)

    @router.post(
        "/besoins-fonciers",
        response_class=HTMLResponse,
        summary="Envoyer un besoin foncier (file de modération)",
    )
    async def need_post(
        request: Request,
        engine: Engine = Depends(get_engine),
        st: Settings = Depends(get_settings),
    ) -> HTMLResponse:
        _same_origin(request)
        form = await request.form(max_files=0, max_fields=30)
        values = {k: _form_value(form, k, 2000) for k in NEED_FORM_FIELDS if k in form}
        return await _form_proposal(
            engine,
            st,
            lambda: proposals.submit_need(engine, st, values, client=client_of(request)),
            partial(_need_page, request, st),
            # A refused form keeps what was typed, and its original token (its age).
            v={k: v for k, v in values.items() if k in survey.FIELD_LABELS},
            form_token=values.get("form_token"),
        )

    # ---- self-update link --------------------------------------------------------------------

    def _link_page(
        request: Request, st: Settings, engine: Engine, lien: str, status: int = 200, **extra: Any
    ) -> HTMLResponse:
        with engine.connect() as conn:
            link = editlinks.check_link(conn, st.secret_key, lien)
            current = proposals.current_fields(conn, link.structure_id) or {}
        return TEMPLATES.TemplateResponse(
            request,
            "contribuer_fiche.html",
            {"lien": lien, "s": current, "families": FAMILY_LABELS, **extra},
            status_code=status,
            headers=NO_STORE,
        )

    @router.get("/contribuer/fiche", response_class=HTMLResponse, summary="Mettre à jour sa fiche")
    def fiche_page(
        request: Request,
        lien: str = Query("", max_length=200),
        engine: Engine = Depends(get_engine),
        st: Settings = Depends(get_settings),
    ) -> HTMLResponse:
        return _link_page(request, st, engine, lien)

    @router.post("/contribuer/fiche", response_class=HTMLResponse, summary="Envoyer sa mise à jour")
    async def fiche_post(
        request: Request,
        engine: Engine = Depends(get_engine),
        st: Settings = Depends(get_settings),
    ) -> HTMLResponse:
        form = await request.form(max_files=0, max_fields=30)
        lien = _form_value(form, "lien", 200)
        with engine.connect() as conn:
            link = editlinks.check_link(conn, st.secret_key, lien)
            current = proposals.current_fields(conn, link.structure_id) or {}
        fields: dict[str, Any] = {}
        for key in proposals.PUBLIC_FIELDS:
            if key == "sectors" or key not in form:
                continue
            value = _form_value(form, key)
            old = current.get(key)
            if value.strip() != (old or ""):
                fields[key] = value
        payload = {"fields": fields, "contributor_email": _form_value(form, "contributor_email")}
        return await _form_proposal(
            engine,
            st,
            lambda: proposals.submit(
                engine,
                st,
                payload,
                client=client_of(request),
                structure_id=link.structure_id,
                origin="self_update",
                link_id=link.id,
            ),
            partial(_link_page, request, st, engine, lien),
        )

    # ---- moderation ------------------------------------------------------------------------

    def _page(
        request: Request, name: str, user: StaffUser | None, status: int = 200, **ctx: Any
    ) -> HTMLResponse:
        return TEMPLATES.TemplateResponse(
            request,
            name,
            {
                "user": user,
                "status_labels": STATUS_LABELS,
                "kind_labels": KIND_LABELS,
                "origin_labels": ORIGIN_LABELS,
                "precision_labels": PRECISION_LABELS,
                **ctx,
            },
            status_code=status,
            headers=STAFF_HEADERS,
        )

    def _check_csrf(user: StaffUser, form: Any) -> None:
        if not accounts.csrf_ok(user, _form_value(form, "csrf", 200) or None):
            raise Problem(403, "jeton CSRF manquant ou invalide : rechargez la page")

    def _same_origin(request: Request) -> None:
        """Refuse a state-changing form posted from another site (Origin header)."""
        origin = request.headers.get("origin")
        if origin and origin != "null" and origin.rstrip("/") != public_base(request):
            raise Problem(403, "formulaire envoyé depuis un autre site : refusé")

    @router.get("/moderation", response_class=HTMLResponse, summary="File de modération")
    def moderation(
        request: Request,
        statut: str = Query("pending", max_length=20),
        origine: str = Query("", max_length=20),
        type: str = Query("", max_length=20),  # noqa: A002 - the French query name
        engine: Engine = Depends(get_engine),
    ) -> HTMLResponse:
        user = _staff(request, engine)
        if user is None:
            return _page(request, "moderation_login.html", None)
        if statut not in PROPOSAL_STATUSES:
            raise Problem(400, f"statut inconnu : {statut}")
        if origine and origine not in PROPOSAL_ORIGINS:
            raise Problem(400, f"origine inconnue : {origine}")
        if type and type not in PROPOSAL_KINDS:
            raise Problem(400, f"type inconnu : {type}")
        with engine.connect() as conn:
            items = proposals.list_proposals(
                conn, statuses=(statut,), origin=origine or None, kind=type or None, limit=200
            )
            counts = proposals.queue_counts(conn)
        return _page(
            request,
            "moderation_file.html",
            user,
            items=items,
            counts=counts,
            filtre={"statut": statut, "origine": origine, "type": type},
            statuses=PROPOSAL_STATUSES,
            origins=PROPOSAL_ORIGINS,
            kinds=PROPOSAL_KINDS,
        )

    @router.post(
        "/moderation/connexion",
        response_class=HTMLResponse,
        responses=REDIRECT,
        summary="Connexion de l'équipe de modération",
    )
    async def login(
        request: Request,
        engine: Engine = Depends(get_engine),
        st: Settings = Depends(get_settings),
    ) -> Response:
        _same_origin(request)
        form = await request.form(max_files=0, max_fields=5)
        name = _form_value(form, "identifiant", 100)
        password = _form_value(form, "mot_de_passe", 200)
        old = request.cookies.get(COOKIE)
        try:
            token, _ = await run_in_threadpool(
                lambda: accounts.open_session(
                    engine,
                    name,
                    password,
                    client_of(request),
                    max_failures=st.login_failures_max,
                    hours=st.session_hours,
                    old_token=old,
                )  # fmt: skip
            )
        except CartecoError as exc:
            status = 429 if exc.kind == "too_many" else 401
            return _page(request, "moderation_login.html", None, status=status, erreur=str(exc))
        resp = RedirectResponse("/moderation", status_code=303, headers=NO_STORE)
        resp.set_cookie(
            COOKIE,
            token,
            max_age=st.session_hours * 3600,
            httponly=True,
            samesite="lax",
            secure=_secure(request, st),
            path="/",
        )
        return resp

    @router.post(
        "/moderation/deconnexion",
        response_class=HTMLResponse,
        responses=REDIRECT,
        summary="Déconnexion",
    )
    async def logout(request: Request, engine: Engine = Depends(get_engine)) -> Response:
        user = _staff(request, engine)
        if user is not None:
            form = await request.form(max_files=0, max_fields=5)
            _check_csrf(user, form)
            with engine.begin() as conn:
                accounts.logout(conn, request.cookies.get(COOKIE, ""))
        resp = RedirectResponse("/moderation", status_code=303)
        resp.delete_cookie(COOKIE, path="/")
        return resp

    def _require(request: Request, engine: Engine) -> StaffUser:
        user = _staff(request, engine)
        if user is None:
            raise Problem(401, "connexion requise : ouvrez /moderation")
        return user

    @router.get(
        "/moderation/propositions/{proposal_id}",
        response_class=HTMLResponse,
        summary="Une proposition : différences, carte, décision",
    )
    def proposal_page(
        proposal_id: int, request: Request, engine: Engine = Depends(get_engine)
    ) -> HTMLResponse:
        user = _require(request, engine)
        with engine.connect() as conn:
            p = proposals.get(conn, proposal_id)
            if p is None:
                raise Problem(404, f"proposition inconnue : {proposal_id}")
            rows = proposals.diff(conn, p)
        point = (p["changes"] or {}).get("location")
        if point is None and p.get("structure_id"):
            with engine.connect() as conn:
                cur = proposals.current_fields(conn, int(p["structure_id"])) or {}
            point = cur.get("location")
        detail = p["origin_detail"] or {}
        return _page(
            request,
            "moderation_proposition.html",
            user,
            p=p,
            rows=rows,
            detail=detail,
            point=point,
            map_config={
                "point": point,
                "territoryTiles": "/collections/{layer}/tiles/WebMercatorQuad/{z}/{y}/{x}",
                "precision": detail.get("precision"),
            },
            decidable=p["status"] in proposals.DECIDABLE,
        )

    @router.post(
        "/moderation/propositions/{proposal_id}/{action}",
        response_class=HTMLResponse,
        responses=REDIRECT,
        summary="Décider d'une proposition",
    )
    async def decide(
        proposal_id: int,
        action: str,
        request: Request,
        engine: Engine = Depends(get_engine),
        st: Settings = Depends(get_settings),
    ) -> Response:
        if action not in ACTIONS:
            raise Problem(404, f"action inconnue : {action}")
        _same_origin(request)
        user = _require(request, engine)
        form = await request.form(max_files=0, max_fields=10)
        _check_csrf(user, form)
        who = f"staff:{user.login}"

        def run() -> None:
            with engine.begin() as conn:
                if action == "approuver":
                    proposals.approve(conn, st, proposal_id, who)
                elif action == "refuser":
                    proposals.reject(conn, proposal_id, who, _form_value(form, "motif"))
                elif action == "precisions":
                    proposals.needs_info(conn, proposal_id, who, _form_value(form, "question"))
                elif action == "fusionner":
                    target = _form_value(form, "structure", 20).strip()
                    if not (target.isascii() and target.isdigit()):
                        raise Problem(400, "structure : numéro attendu")
                    proposals.merge(conn, st, proposal_id, who, int(target))
                else:
                    try:
                        lon = float(_form_value(form, "lon", 30))
                        lat = float(_form_value(form, "lat", 30))
                    except ValueError as exc:
                        raise Problem(400, "lon, lat : nombres attendus") from exc
                    proposals.move(conn, proposal_id, who, lon, lat)

        await run_in_threadpool(run)
        back = f"/moderation/propositions/{proposal_id}" if action == "deplacer" else "/moderation"
        return RedirectResponse(back, status_code=303, background=_mailer(engine, st))

    @router.get("/moderation/journal", response_class=HTMLResponse, summary="Journal des actions")
    def journal(request: Request, engine: Engine = Depends(get_engine)) -> HTMLResponse:
        user = _require(request, engine)
        with engine.connect() as conn:
            lines = accounts.recent_audit(conn, 200)
            mails = mail.outbox(conn, 50)
        return _page(request, "moderation_journal.html", user, lines=lines, mails=mails)

    @router.post(
        "/moderation/structures/{structure_id}/{action}",
        response_class=HTMLResponse,
        summary="Confiance et liens de mise à jour d'une structure (administrateurs)",
    )
    async def structure_admin(
        structure_id: int,
        action: str,
        request: Request,
        engine: Engine = Depends(get_engine),
        st: Settings = Depends(get_settings),
    ) -> Response:
        if action not in ("confiance", "defiance", "lien", "revoquer"):
            raise Problem(404, f"action inconnue : {action}")
        _same_origin(request)
        user = _require(request, engine)
        form = await request.form(max_files=0, max_fields=5)
        _check_csrf(user, form)
        accounts.require_admin(user)
        who = f"staff:{user.login}"
        link = None
        with engine.begin() as conn:
            if action in ("confiance", "defiance"):
                editlinks.set_trusted(conn, structure_id, action == "confiance", who)
            elif action == "lien":
                token = editlinks.create_link(
                    conn, st.secret_key, structure_id, st.edit_link_days, who
                )
                link = f"{public_base(request)}/contribuer/fiche?lien={token}"
            else:
                editlinks.revoke_links(conn, structure_id)
            accounts.staff_audit(conn, who, action, f"structures/{structure_id}", {})
        return _page(
            request, "moderation_structure.html", user, structure_id=structure_id,
            action=action, link=link,
        )  # fmt: skip

    return router
