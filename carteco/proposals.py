"""Proposed changes to the registry (contributions, self-updates, reconciliation moves).

Every proposal is first stored as received, then checked and queued for a moderator; nothing
here applies a change to ``structures``: moderation decides (see the moderation module).
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from carteco.errors import CartecoError
from carteco.models import PROPOSAL_KINDS, PROPOSAL_ORIGINS, PROPOSAL_STATUSES


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
             ORDER BY created_at, id
             LIMIT :limit OFFSET :offset
            """
        ),
        {"statuses": list(statuses), "origin": origin, "limit": limit, "offset": offset},
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
    decided = status in ("approved", "rejected", "needs_info", "spam")
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
