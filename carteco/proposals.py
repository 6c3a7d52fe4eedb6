"""Proposed changes to the registry (contributions, self-updates, reconciliation moves).

Every proposal is first stored as received, then checked and queued for a moderator; nothing
here applies a change to ``structures``: moderation decides (see the moderation module).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from carteco.accounts import staff_audit
from carteco.editlinks import is_trusted
from carteco.edits import apply_changes, create_structure, locate
from carteco.errors import CartecoError
from carteco.land import survey
from carteco.mail import queue_mail
from carteco.models import (
    PROPOSAL_KINDS,
    PROPOSAL_ORIGINS,
    PROPOSAL_STATUSES,
    STRUCTURE_PROPOSAL_KINDS,
)
from carteco.settings import Settings
from carteco.structure_fields import FieldError, validate_structure_fields


class ProposalError(CartecoError):
    """A proposal that cannot be recorded or moved to the asked status."""

    kind = "invalid"


def record(
    conn: Connection,
    *,
    kind: str,
    origin: str,
    raw: dict[str, Any],
    structure_id: int | None = None,
    base_version: int | None = None,
    changes: dict[str, Any] | None = None,
    previous: dict[str, Any] | None = None,
    origin_detail: dict[str, Any] | None = None,
    contributor_email: str | None = None,
    client_key: str | None = None,
    status: str = "received",
) -> int:
    """Store one proposal as given; its id."""
    if kind not in PROPOSAL_KINDS:
        raise ProposalError(f"type de proposition inconnu : {kind!r} (attendu : {PROPOSAL_KINDS})")
    if origin not in PROPOSAL_ORIGINS:
        raise ProposalError(
            f"origine de proposition inconnue : {origin!r} (attendu : {PROPOSAL_ORIGINS})"
        )
    if status not in PROPOSAL_STATUSES:
        raise ProposalError(
            f"statut de proposition inconnu : {status!r} (attendu : {PROPOSAL_STATUSES})"
        )
    new_id = conn.execute(
        sa.text(
            """
            INSERT INTO proposals (kind, origin, status, structure_id, base_version, raw,
                                   changes, previous, origin_detail, contributor_email,
                                   client_key)
            VALUES (:kind, :origin, :status, :structure_id, :base_version,
                    CAST(:raw AS jsonb), CAST(:changes AS jsonb), CAST(:previous AS jsonb),
                    CAST(:origin_detail AS jsonb), :email, :client_key)
            RETURNING id
            """
        ),
        {
            "kind": kind,
            "origin": origin,
            "status": status,
            "structure_id": structure_id,
            "base_version": base_version,
            "raw": json.dumps(raw, ensure_ascii=False, default=str),
            "changes": json.dumps(changes or {}, ensure_ascii=False, default=str),
            "previous": json.dumps(previous or {}, ensure_ascii=False, default=str),
            "origin_detail": json.dumps(origin_detail or {}, ensure_ascii=False, default=str),
            "email": contributor_email,
            "client_key": client_key,
        },
    ).scalar_one()
    return int(new_id)


def get(conn: Connection, proposal_id: int) -> dict[str, Any] | None:
    """One proposal as a dict, or None when unknown."""
    row = (
        conn.execute(sa.text("SELECT * FROM proposals WHERE id = :id"), {"id": proposal_id})
        .mappings()
        .first()
    )
    return None if row is None else dict(row)


def list_proposals(
    conn: Connection,
    *,
    statuses: tuple[str, ...] = ("pending",),
    origin: str | None = None,
    kind: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Proposals with one of the given statuses, oldest first."""
    rows = conn.execute(
        sa.text(
            """
            SELECT * FROM proposals
             WHERE status = ANY(:statuses)
               AND (CAST(:origin AS text) IS NULL OR origin = :origin)
               AND (CAST(:kind AS text) IS NULL OR kind = :kind)
             ORDER BY created_at, id
             LIMIT :limit OFFSET :offset
            """
        ),
        {
            "statuses": list(statuses),
            "origin": origin,
            "kind": kind,
            "limit": limit,
            "offset": offset,
        },
    ).mappings()
    return [dict(r) for r in rows]


def set_status(
    conn: Connection,
    proposal_id: int,
    status: str,
    *,
    decided_by: str | None = None,
    reason: str | None = None,
) -> None:
    """Move a proposal to a status, recording who decided and why."""
    if status not in PROPOSAL_STATUSES:
        raise ProposalError(
            f"statut de proposition inconnu : {status!r} (attendu : {PROPOSAL_STATUSES})"
        )
    decided = status in ("approved", "rejected", "needs_info", "spam", "merged")
    conn.execute(
        sa.text(
            """
            UPDATE proposals
               SET status = :status, updated_at = now(),
                   decided_by = CASE WHEN :decided THEN :by ELSE decided_by END,
                   decided_at = CASE WHEN :decided THEN now() ELSE decided_at END,
                   decision_reason = CASE WHEN :decided THEN :reason ELSE decision_reason END
             WHERE id = :id
            """
        ),
        {
            "status": status,
            "decided": decided,
            "by": decided_by,
            "reason": reason,
            "id": proposal_id,
        },
    )


# --- Submissions (public forms, self-update links) -----------------------------------------

# Fields a visitor may propose; identifiers only on a new structure.
PUBLIC_FIELDS = (
    "name",
    "description",
    "website",
    "address_line",
    "postcode",
    "commune_name",
    "legal_form",
    "ess_family",
    "sectors",
    "phone",
    "email",
    "opening_hours",
)
CREATE_ONLY_FIELDS = ("siret", "rna")
# The hidden field people never see nor fill: a robot that fills it is spam.
HONEYPOT = "site_web_2"
MAX_MESSAGE = 2000
_PROCESS_KEY = secrets.token_bytes(32)
FIELD_LABELS = {
    "name": "Nom",
    "description": "Description",
    "website": "Site web",
    "address_line": "Adresse",
    "postcode": "Code postal",
    "commune_name": "Commune",
    "legal_form": "Forme juridique",
    "ess_family": "Famille",
    "sectors": "Secteurs",
    "phone": "Téléphone",
    "email": "Courriel",
    "opening_hours": "Horaires",
    "siret": "SIRET",
    "rna": "RNA",
    "status": "Statut",
    "location": "Position",
}


def _form_key(secret: str | None) -> bytes:
    return hashlib.sha256(b"form:" + secret.encode()).digest() if secret else _PROCESS_KEY


def form_token(secret: str | None, now: float | None = None) -> str:
    """A signed timestamp a form sends back: how long it took to fill it (no cookie needed)."""
    ts = str(int((now or time.time()) * 1000))
    sig = hmac.new(_form_key(secret), ts.encode(), hashlib.sha256).hexdigest()[:32]
    return f"{ts}.{sig}"


def form_age(secret: str | None, token: Any, now: float | None = None) -> float | None:
    """Seconds since `form_token` made this token, or None when it is not ours."""
    if not isinstance(token, str) or len(token) > 80 or token.count(".") != 1:
        return None
    ts, sig = token.split(".")
    good = hmac.new(_form_key(secret), ts.encode(), hashlib.sha256).hexdigest()[:32]
    if not (ts.isascii() and ts.isdigit()) or not hmac.compare_digest(good, sig):
        return None
    return (now or time.time()) - int(ts) / 1000


def _receipt_hash(receipt: str) -> str:
    return hashlib.sha256(receipt.encode()).hexdigest()


def _mark(
    conn: Connection,
    pid: int,
    status: str,
    reason: str | None,
    detail: dict[str, Any] | None = None,
    changes: dict[str, Any] | None = None,
    previous: dict[str, Any] | None = None,
    structure_id: int | None = None,
    base_version: int | None = None,
) -> None:
    conn.execute(
        sa.text(
            """
            UPDATE proposals
               SET status = :status, updated_at = now(),
                   decision_reason = coalesce(:reason, decision_reason),
                   decided_by = CASE WHEN :auto THEN 'contrôle automatique' ELSE decided_by END,
                   decided_at = CASE WHEN :auto THEN now() ELSE decided_at END,
                   origin_detail = origin_detail || CAST(:detail AS jsonb),
                   changes = coalesce(CAST(:changes AS jsonb), changes),
                   previous = coalesce(CAST(:previous AS jsonb), previous),
                   structure_id = coalesce(:sid, structure_id),
                   base_version = coalesce(:bv, base_version)
             WHERE id = :id
            """
        ),
        {
            "status": status,
            "reason": reason,
            "auto": status in ("spam", "rejected"),
            "detail": json.dumps(detail or {}, ensure_ascii=False, default=str),
            "changes": None
            if changes is None
            else json.dumps(changes, ensure_ascii=False, default=str),
            "previous": None
            if previous is None
            else json.dumps(previous, ensure_ascii=False, default=str),
            "sid": structure_id,
            "bv": base_version,
            "id": pid,
        },
    )


_CURRENT = sa.text(
    """
    SELECT id, version, status, name, description, website, address_line, postcode,
           commune_name, legal_form, ess_family, sectors, siret, rna,
           extra->>'phone' AS phone, extra->>'email' AS email,
           extra->>'opening_hours' AS opening_hours,
           CASE WHEN geom IS NULL THEN NULL ELSE json_build_array(ST_X(geom), ST_Y(geom)) END
               AS location,
           location_precision
      FROM structures WHERE id = :id
    """
)


def current_fields(conn: Connection, structure_id: int) -> dict[str, Any] | None:
    """A structure's editable fields as the forms and the diff show them, or None."""
    row = conn.execute(_CURRENT, {"id": structure_id}).mappings().first()
    return None if row is None else dict(row)


def _jsonable(clean: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in clean.items():
        if k == "location" and v is not None:
            out[k] = [v[0], v[1]]
        elif isinstance(v, (date, datetime)):
            out[k] = v.isoformat()
        else:
            out[k] = v
    return out


def _location_of(value: Any) -> Any:
    """A proposed point: [lon, lat] or a GeoJSON Point; returned as given when neither."""
    if isinstance(value, dict) and value.get("type") == "Point":
        value = value.get("coordinates")
    if isinstance(value, list) and len(value) == 2:
        return tuple(value)
    return value


def submit(
    engine: Engine,
    settings: Settings,
    payload: Any,
    *,
    client: str,
    structure_id: int | None = None,
    origin: str = "contribution",
    link_id: int | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """Store a submission as received, then check it; its id, status and receipt.

    Honeypot filled, form sent too fast or without our form token: stored as spam. Over the
    per-client rate: stored as spam, ProposalError `too_many`. Invalid fields: stored as
    rejected with the errors, ProposalError `invalid` listing them. Otherwise pending (or, from
    a trusted structure's edit link, applied at once). The receipt lets the contributor read
    the status of this proposal, and of no other.
    """
    raw = payload if isinstance(payload, dict) else {"_valeur": payload}
    # A land need has its own form and checks (submit_need): never through this path.
    kind = str(raw["kind"]) if raw.get("kind") in STRUCTURE_PROPOSAL_KINDS else "create"
    if structure_id is not None and kind == "create":
        kind = "update"
    email = raw.get("contributor_email")
    email = email.strip()[:254] if isinstance(email, str) and email.strip() else None
    with engine.begin() as conn:
        pid = record(
            conn,
            kind=kind,
            origin=origin,
            raw=raw,
            structure_id=None,
            contributor_email=email,
            client_key=client[:100],
            origin_detail={"edit_link": link_id} if link_id else None,
        )
    receipt = secrets.token_urlsafe(24)
    with engine.begin() as conn:
        result = _check(conn, engine, settings, pid, raw, kind, origin, email, client,
                        structure_id, receipt, now)  # fmt: skip
    if isinstance(result, ProposalError):
        raise result  # after the commit: the refused submission keeps its status
    return result


def _spam_check(
    conn: Connection,
    settings: Settings,
    pid: int,
    raw: dict[str, Any],
    client: str,
    now: float | None,
) -> ProposalError | bool | None:
    """A public form's robot checks: None when passed, True for a silent spam (honeypot),
    else the error to raise. The proposal is marked spam in both cases."""
    if raw.get(HONEYPOT):
        _mark(conn, pid, "spam", "champ piège rempli")
        return True  # a robot learns nothing
    age = form_age(settings.secret_key, raw.get("form_token"), now)
    if age is None or age < settings.contrib_min_fill_s:
        reason = "jeton de formulaire absent ou invalide" if age is None else "envoi trop rapide"
        _mark(conn, pid, "spam", reason)
        return ProposalError(
            "formulaire envoyé trop vite ou expiré : rechargez la page et réessayez"
        )
    if settings.contrib_per_hour > 0:
        recent = conn.execute(
            sa.text(
                "SELECT count(*) FROM proposals WHERE client_key = :c AND id <> :id "
                "AND created_at > now() - interval '1 hour'"
            ),
            {"c": client[:100], "id": pid},
        ).scalar_one()
        if recent >= settings.contrib_per_hour:
            _mark(conn, pid, "spam", "trop de propositions depuis cette adresse")
            return ProposalError(
                "trop de propositions depuis votre adresse ; réessayez dans une heure",
                kind="too_many",
            )
    return None


def submit_need(
    engine: Engine,
    settings: Settings,
    form: dict[str, Any],
    *,
    client: str,
    now: float | None = None,
) -> dict[str, Any]:
    """Store a land need declared on the public survey form, then check it like a
    contribution (honeypot, form token, rate per client) and queue it for moderation; its id,
    status and receipt. Invalid fields: stored as rejected, ProposalError listing them."""
    raw = {k: v for k, v in form.items() if isinstance(k, str)}
    email = raw.get("contact_email")
    email = email.strip()[:254] if isinstance(email, str) and email.strip() else None
    with engine.begin() as conn:
        pid = record(conn, kind="land_need", origin="contribution", raw=raw,
                     contributor_email=email, client_key=client[:100])  # fmt: skip
    receipt = secrets.token_urlsafe(24)
    answer = {"id": pid, "status": "pending", "receipt": receipt}
    with engine.begin() as conn:
        spam = _spam_check(conn, settings, pid, raw, client, now)
        if spam is None:
            clean, errors = survey.validate_need(conn, raw)
            detail: dict[str, Any] = {"receipt_hash": _receipt_hash(receipt)}
            if errors:
                detail["errors"] = [e.as_dict() for e in errors]
                _mark(conn, pid, "rejected", "champs invalides", detail, clean)
                summary = "; ".join(f"{e.field} : {e.reason}" for e in errors)
                spam = ProposalError(summary, errors=[e.as_dict() for e in errors])
            else:
                _mark(conn, pid, "pending", None, detail, clean)
                if email:
                    queue_mail(
                        conn, "ack", email, f"Carteco : besoin foncier n° {pid} reçu",
                        f"Bonjour,\n\nNous avons bien reçu la déclaration de besoin foncier "
                        f"n° {pid}. Elle sera examinée par l'équipe de modération avant "
                        "d'être prise en compte dans les diagnostics fonciers.\n", pid,
                    )  # fmt: skip
    if isinstance(spam, ProposalError):
        raise spam  # after the commit: the refused submission keeps its status
    return answer


def _check(
    conn: Connection,
    engine: Engine,
    settings: Settings,
    pid: int,
    raw: dict[str, Any],
    kind: str,
    origin: str,
    email: str | None,
    client: str,
    structure_id: int | None,
    receipt: str,
    now: float | None,
) -> dict[str, Any] | ProposalError:
    """The answer to a stored submission, or the error to raise once its status is saved."""
    answer = {"id": pid, "status": "pending", "receipt": receipt}
    if origin == "contribution":
        spam = _spam_check(conn, settings, pid, raw, client, now)
        if isinstance(spam, ProposalError):
            return spam
        if spam is True:
            return answer
    errors: list[FieldError] = []
    fields = raw.get("fields", {})
    if not isinstance(fields, dict):
        errors.append(FieldError("fields", None, "objet attendu"))
        fields = {}
    if structure_id is None and kind != "create":
        sid_raw = raw.get("structure_id")
        structure_id = (
            sid_raw if isinstance(sid_raw, int) and not isinstance(sid_raw, bool) else None
        )
        if structure_id is None:
            errors.append(FieldError("structure_id", None, "structure à modifier manquante"))
    current = current_fields(conn, structure_id) if structure_id is not None else None
    if structure_id is not None and (
        current is None or current["status"] not in ("active", "closed")
    ):
        errors.append(FieldError("structure_id", str(structure_id), "structure inconnue"))
        current = None
    allowed = PUBLIC_FIELDS + (CREATE_ONLY_FIELDS if kind == "create" else ())
    proposed: dict[str, Any] = {}
    for key, value in fields.items():
        if key not in allowed:
            errors.append(
                FieldError(str(key)[:50], None, f"champ non modifiable : {str(key)[:50]}")
            )
        else:
            proposed[key] = value
    message = raw.get("message")
    if message is not None and (not isinstance(message, str) or len(message) > MAX_MESSAGE):
        errors.append(
            FieldError("message", None, f"texte de {MAX_MESSAGE} caractères au plus attendu")
        )
        message = None
    if email is not None:
        _, mail_errors = validate_structure_fields({"email": email})
        errors += [FieldError("contributor_email", e.value, e.reason) for e in mail_errors]
    location = raw.get("location")
    if location is not None:
        proposed["location"] = _location_of(location)
    clean, field_errors = validate_structure_fields(proposed)
    errors += field_errors
    if kind == "create" and not clean.get("name") and not any(e.field == "name" for e in errors):
        errors.append(FieldError("name", None, "nom de la structure manquant"))
    detail: dict[str, Any] = {"receipt_hash": _receipt_hash(receipt)}
    if kind == "create" and "location" in clean and raw.get("location_moved") is not True:
        # A point the visitor did not place by hand (the map's centre): the address decides.
        del clean["location"]
    if kind == "create" and not errors and "location" not in clean:
        found = locate(
            conn, clean.get("address_line"), clean.get("postcode"), clean.get("commune_name")
        )
        if found is None:
            why = "adresse introuvable : placez le point sur la carte"
            errors.append(FieldError("address_line", clean.get("address_line"), why))
        else:
            clean["location"] = (found["lon"], found["lat"])
            detail["precision"], detail["score"] = found["precision"], found["score"]
    elif "location" in clean:
        detail["precision"] = "manual"
    if kind == "close":
        clean = {"status": "closed"}
        detail["message"] = message
    elif message:
        detail["message"] = message
    if kind == "update" and current is not None:
        # Only what really changes: a form sends every field back, most of them as they are.
        same = {k for k, v in _jsonable(clean).items() if k != "location" and current.get(k) == v}
        clean = {k: v for k, v in clean.items() if k not in same}
    if kind == "update" and not clean and not errors:
        errors.append(FieldError("fields", None, "aucune modification proposée"))
    changes = _jsonable(clean)
    previous = {k: (current or {}).get(k) for k in changes} if current else {}
    if errors:
        detail["errors"] = [e.as_dict() for e in errors]
        _mark(conn, pid, "rejected", "champs invalides", detail, changes, previous, structure_id)
        summary = "; ".join(f"{e.field} : {e.reason}" for e in errors)
        return ProposalError(summary, errors=[e.as_dict() for e in errors])
    _mark(conn, pid, "pending", None, detail, changes, previous, structure_id,
          current["version"] if current else None)  # fmt: skip
    if origin == "self_update" and structure_id is not None and is_trusted(conn, structure_id):
        approve(conn, settings, pid, "structure de confiance (lien de mise à jour)")
        answer["status"] = "approved"
    elif email:
        queue_mail(
            conn,
            "ack",
            email,
            f"Carteco : proposition n° {pid} reçue",
            f"Bonjour,\n\nNous avons bien reçu votre proposition n° {pid}. Elle sera examinée "
            "par l'équipe de modération ; vous recevrez un courriel à la décision.\n\n"
            "Merci de votre contribution.\n",
            pid,
        )
    return answer


def public_status(conn: Connection, proposal_id: int, receipt: str | None) -> dict[str, Any]:
    """A proposal's status for the contributor holding its receipt (not_found otherwise)."""
    row = get(conn, proposal_id)
    good = (row or {}).get("origin_detail", {}).get("receipt_hash") if row else None
    if not row or not receipt or not good or not hmac.compare_digest(good, _receipt_hash(receipt)):
        raise ProposalError(f"proposition inconnue : {proposal_id}", kind="not_found")
    return {
        "id": row["id"],
        "kind": row["kind"],
        "status": row["status"],
        "reason": row["decision_reason"] if row["status"] in ("rejected", "needs_info") else None,
    }


# --- Moderation ----------------------------------------------------------------------------

DECIDABLE = ("received", "pending", "needs_info")


def _locked(conn: Connection, proposal_id: int) -> dict[str, Any]:
    row = (
        conn.execute(
            sa.text("SELECT * FROM proposals WHERE id = :id FOR UPDATE"), {"id": proposal_id}
        )
        .mappings()
        .first()
    )
    if row is None:
        raise ProposalError(f"proposition inconnue : {proposal_id}", kind="not_found")
    if row["status"] not in DECIDABLE:
        raise ProposalError(
            f"proposition n° {proposal_id} déjà traitée ({row['status']})", kind="conflict"
        )
    return dict(row)


def _revalidate(changes: dict[str, Any]) -> dict[str, Any]:
    fields = dict(changes)
    if "geometry" in fields:
        fields["location"] = fields.pop("geometry")
    if "location" in fields:
        fields["location"] = _location_of(fields["location"])
    clean, errors = validate_structure_fields(fields)
    if errors:
        raise ProposalError(
            "; ".join(f"{e.field} : {e.reason}" for e in errors),
            errors=[e.as_dict() for e in errors],
        )
    return clean


def _decision_mail(conn: Connection, p: dict[str, Any], subject: str, body: str) -> None:
    if p.get("contributor_email"):
        queue_mail(conn, "decision", p["contributor_email"], subject, body, int(p["id"]))


def approve(conn: Connection, settings: Settings, proposal_id: int, who: str) -> int | None:
    """Apply a proposal through the one write path (validation, geocoding, history, audit)."""
    p = _locked(conn, proposal_id)
    if p["kind"] == "land_need":
        _approve_need(conn, p, who)
        return None
    clean = _revalidate(p["changes"] or {})
    detail = p["origin_detail"] or {}
    sid = p["structure_id"]
    if p["kind"] == "create":
        if "location" not in clean:
            found = locate(conn, clean.get("address_line"), clean.get("postcode"),
                           clean.get("commune_name"))  # fmt: skip
            if found is None:
                raise ProposalError("point inconnu : placez-le sur la carte avant d'approuver")
            clean["location"] = (found["lon"], found["lat"])
            detail = {**detail, "precision": found["precision"]}
        clean.setdefault("status", "active")
        sid = create_structure(
            conn, clean, source_id=f"proposition-{proposal_id}", by=who,
            precision=detail.get("precision"), score=detail.get("score"),
        )  # fmt: skip
    else:
        if sid is None:
            raise ProposalError("cette proposition ne vise aucune structure", kind="conflict")
        apply_changes(conn, int(sid), clean, by=who, reason=f"proposition n° {proposal_id}")
    conn.execute(
        sa.text(
            "UPDATE proposals SET status = 'approved', structure_id = :sid, decided_by = :by, "
            "decided_at = now(), updated_at = now() WHERE id = :id"
        ),
        {"sid": sid, "by": who, "id": proposal_id},
    )
    staff_audit(conn, who, "approve", f"proposals/{proposal_id}",
                {"structure": sid, "kind": p["kind"], "changes": p["changes"]})  # fmt: skip
    _decision_mail(
        conn, p, f"Carteco : proposition n° {proposal_id} acceptée",
        f"Bonjour,\n\nVotre proposition n° {proposal_id} a été acceptée et publiée sur la "
        "carte. Merci !\n",
    )  # fmt: skip
    return None if sid is None else int(sid)


def _approve_need(conn: Connection, p: dict[str, Any], who: str) -> None:
    """Write an approved land need into land_needs (re-checked first: territories may have
    changed since it was sent)."""
    pid = int(p["id"])
    clean, errors = survey.validate_need(conn, p["raw"] or {}, today=p["created_at"].date())
    if errors:
        raise ProposalError(
            "; ".join(f"{e.field} : {e.reason}" for e in errors),
            errors=[e.as_dict() for e in errors],
        )
    need_id = survey.write_need(conn, pid, clean)
    conn.execute(
        sa.text(
            "UPDATE proposals SET status = 'approved', decided_by = :by, decided_at = now(), "
            "updated_at = now(), origin_detail = origin_detail || CAST(:d AS jsonb) "
            "WHERE id = :id"
        ),
        {"by": who, "id": pid, "d": json.dumps({"land_need_id": need_id})},
    )
    staff_audit(conn, who, "approve", f"proposals/{pid}", {"kind": "land_need", "need": need_id})
    _decision_mail(
        conn, p, f"Carteco : besoin foncier n° {pid} accepté",
        f"Bonjour,\n\nVotre déclaration de besoin foncier n° {pid} a été acceptée : elle "
        "figure désormais dans les diagnostics fonciers du département. Merci !\n",
    )  # fmt: skip


def reject(conn: Connection, proposal_id: int, who: str, reason: str) -> None:
    """Refuse a proposal with a reason (sent to the contributor)."""
    reason = (reason or "").strip()
    if not reason or len(reason) > MAX_MESSAGE:
        raise ProposalError(f"motif du refus obligatoire ({MAX_MESSAGE} caractères au plus)")
    p = _locked(conn, proposal_id)
    set_status(conn, proposal_id, "rejected", decided_by=who, reason=reason)
    staff_audit(conn, who, "reject", f"proposals/{proposal_id}", {"reason": reason})
    _decision_mail(
        conn, p, f"Carteco : proposition n° {proposal_id} non retenue",
        f"Bonjour,\n\nVotre proposition n° {proposal_id} n'a pas été retenue.\n\nMotif : "
        f"{reason}\n",
    )  # fmt: skip


def needs_info(conn: Connection, proposal_id: int, who: str, question: str) -> None:
    """Ask the contributor for more (the question goes by mail); the proposal waits."""
    question = (question or "").strip()
    if not question or len(question) > MAX_MESSAGE:
        raise ProposalError(f"question obligatoire ({MAX_MESSAGE} caractères au plus)")
    p = _locked(conn, proposal_id)
    set_status(conn, proposal_id, "needs_info", decided_by=who, reason=question)
    staff_audit(conn, who, "needs_info", f"proposals/{proposal_id}", {"question": question})
    _decision_mail(
        conn, p, f"Carteco : proposition n° {proposal_id}, une précision",
        f"Bonjour,\n\nPour examiner votre proposition n° {proposal_id}, l'équipe de modération "
        f"a besoin d'une précision :\n\n{question}\n\nRépondez à ce courriel ou faites une "
        "nouvelle proposition.\n",
    )  # fmt: skip


def merge(conn: Connection, settings: Settings, proposal_id: int, who: str, target_id: int) -> None:
    """Apply a proposal's fields to an existing structure and mark it merged."""
    p = _locked(conn, proposal_id)
    if p["kind"] == "land_need":
        raise ProposalError("un besoin foncier ne se fusionne pas avec une fiche", kind="conflict")
    clean = _revalidate(p["changes"] or {})
    for key in CREATE_ONLY_FIELDS + ("status",):
        clean.pop(key, None)
    apply_changes(conn, target_id, clean, by=who, reason=f"proposition n° {proposal_id}")
    conn.execute(
        sa.text(
            "UPDATE proposals SET status = 'merged', structure_id = :sid, decided_by = :by, "
            "decided_at = now(), updated_at = now() WHERE id = :id"
        ),
        {"sid": target_id, "by": who, "id": proposal_id},
    )
    staff_audit(conn, who, "merge", f"proposals/{proposal_id}", {"into": target_id})
    _decision_mail(
        conn, p, f"Carteco : proposition n° {proposal_id} acceptée",
        f"Bonjour,\n\nVotre proposition n° {proposal_id} a été reportée sur une fiche existante "
        "de la carte. Merci !\n",
    )  # fmt: skip


def move(conn: Connection, proposal_id: int, who: str, lon: float, lat: float) -> None:
    """Correct a proposal's point before approval (precision: manual)."""
    p = _locked(conn, proposal_id)
    if p["kind"] == "land_need":
        raise ProposalError("un besoin foncier se situe par ses territoires", kind="conflict")
    clean, errors = validate_structure_fields({"location": (lon, lat)})
    if errors:
        raise ProposalError(f"position : {errors[0].reason}")
    point = list(clean["location"])
    conn.execute(
        sa.text(
            "UPDATE proposals SET changes = changes || jsonb_build_object('location', "
            "CAST(:pt AS jsonb)), origin_detail = origin_detail || "
            '\'{"precision": "manual"}\'::jsonb, updated_at = now() WHERE id = :id'
        ),
        {"pt": json.dumps(point), "id": proposal_id},
    )
    staff_audit(conn, who, "move", f"proposals/{proposal_id}",
                {"from": (p["changes"] or {}).get("location"), "to": point})  # fmt: skip


def diff(conn: Connection, proposal: dict[str, Any]) -> list[dict[str, Any]]:
    """Field by field: label, current value, proposed value (for the moderation page)."""
    current = (
        current_fields(conn, int(proposal["structure_id"]))
        if proposal.get("structure_id") and proposal["kind"] != "create"
        else None
    ) or {}
    rows = []
    for key, new in (proposal.get("changes") or {}).items():
        old = current.get(key)
        rows.append(
            {
                "field": key,
                "label": (
                    survey.FIELD_LABELS if proposal["kind"] == "land_need" else FIELD_LABELS
                ).get(key, key),
                "old": _shown(key, old),
                "new": _shown(key, new),
                "changed": old != new,
            }
        )
    return rows


def _shown(key: str, value: Any) -> Any:
    """A value as the diff prints it: a point as « lat, lon », a list as words."""
    if key == "location" and isinstance(value, list) and len(value) == 2:
        return f"{value[1]:.6f}, {value[0]:.6f} (lat, lon)"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return value


def queue_counts(conn: Connection) -> dict[str, int]:
    """How many proposals in each status."""
    rows = conn.execute(sa.text("SELECT status, count(*) AS n FROM proposals GROUP BY status"))
    return {str(r[0]): int(r[1]) for r in rows}
