"""API tokens for the write API: random secrets stored as sha256, with scopes, revocable.

A token reads ``carteco_<secret>``; only its sha256 is stored. Scopes: ``import`` (POST
/imports), ``edit`` (PATCH/DELETE structures), ``admin`` (everything).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from carteco.errors import CartecoError

SCOPES = ("import", "edit", "admin", "moderate")
PREFIX = "carteco_"


class AuthError(CartecoError):
    """Authentication failed: kind `unauthorized` (no or bad token) or `forbidden` (scope)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message, kind=kind)
        self.message = message

    @property
    def status(self) -> int:
        """The HTTP-style code of the kind (401 or 403), for callers that still read it."""
        return 401 if self.kind == "unauthorized" else 403


@dataclass(frozen=True)
class Token:
    """A valid token's identity."""

    id: int
    name: str
    scopes: tuple[str, ...]


def hash_secret(token: str) -> str:
    """sha256 hex of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


def parse_scopes(text: str) -> list[str]:
    """`import,edit` → validated list of scopes."""
    scopes = sorted({s.strip() for s in text.split(",") if s.strip()})
    bad = [s for s in scopes if s not in SCOPES]
    if bad or not scopes:
        raise ValueError(f"portées possibles : {', '.join(SCOPES)} (reçu : {text!r})")
    return scopes


def create_token(conn: Connection, name: str, scopes: list[str]) -> tuple[int, str]:
    """Create a token; return (id, the secret token, shown once)."""
    token = PREFIX + secrets.token_urlsafe(32)
    tid = conn.execute(
        sa.text(
            "INSERT INTO api_tokens (name, token_hash, scopes) "
            "VALUES (:n, :h, CAST(:s AS text[])) RETURNING id"
        ),
        {"n": name, "h": hash_secret(token), "s": scopes},
    ).scalar_one()
    return int(tid), token


def revoke_token(conn: Connection, token_id: int) -> bool:
    """Revoke a token by id; False when unknown or already revoked."""
    res = conn.execute(
        sa.text("UPDATE api_tokens SET revoked_at = now() WHERE id = :i AND revoked_at IS NULL"),
        {"i": token_id},
    )
    return bool(res.rowcount)


def list_tokens(conn: Connection) -> list[dict[str, Any]]:
    """Every token (never the secret)."""
    rows = conn.execute(
        sa.text(
            "SELECT id, name, scopes, created_at, last_used_at, revoked_at "
            "FROM api_tokens ORDER BY id"
        )
    ).mappings()
    return [dict(r) for r in rows]


def verify_token(conn: Connection, token: str | None, scope: str) -> Token:
    """The token's identity if valid and granted `scope` (or admin); AuthError otherwise."""
    if not token:
        raise AuthError(
            "unauthorized", "jeton manquant : en-tête « Authorization: Bearer <jeton> »"
        )
    row = (
        conn.execute(
            sa.text(
                "UPDATE api_tokens SET last_used_at = now() "
                "WHERE token_hash = :h AND revoked_at IS NULL RETURNING id, name, scopes"
            ),
            {"h": hash_secret(token)},
        )
        .mappings()
        .first()
    )
    if row is None:
        raise AuthError("unauthorized", "jeton inconnu ou révoqué")
    scopes = tuple(row["scopes"])
    if scope not in scopes and "admin" not in scopes:
        raise AuthError("forbidden", f"ce jeton n'a pas la portée « {scope} »")
    return Token(int(row["id"]), str(row["name"]), scopes)


def audit(
    conn: Connection, token: Token | None, action: str, target: str, detail: dict[str, Any]
) -> None:
    """Record one write in the audit log."""
    conn.execute(
        sa.text(
            "INSERT INTO audit_log (token_id, token_name, action, target, detail) "
            "VALUES (:t, :n, :a, :g, CAST(:d AS jsonb))"
        ),
        {
            "t": token.id if token else None,
            "n": token.name if token else None,
            "a": action,
            "g": target,
            "d": json.dumps(detail, default=str),
        },
    )
