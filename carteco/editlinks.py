"""Self-update links: signed (HMAC-SHA256 with ``SECRET_KEY``), expiring, revocable.

A link's token reads ``<id>.<expiry>.<signature>``; the row in ``edit_links`` names the
structure and says whether the link was revoked. Edits made through a link go to moderation,
or straight in when the structure is trusted (``trusted_structures``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from carteco.errors import CartecoError


class EditLinkError(CartecoError):
    """A self-update link that cannot be made or is not (or no longer) valid."""

    kind = "forbidden"


@dataclass(frozen=True)
class EditLink:
    """A valid link: its id and its structure."""

    id: int
    structure_id: int
    expires: int


def _sign(secret: str, link_id: int, structure_id: int, expires: int) -> str:
    mac = hmac.new(secret.encode(), f"{link_id}.{structure_id}.{expires}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()).decode().rstrip("=")


def _secret(secret: str | None) -> str:
    if not secret:
        raise EditLinkError(
            "liens de mise à jour désactivés : CARTECO_SECRET_KEY n'est pas réglé",
            kind="forbidden",
        )
    return secret


def create_link(conn: Connection, secret: str | None, structure_id: int, days: int, by: str) -> str:
    """A new link token for a structure, valid `days` days."""
    key = _secret(secret)
    exists = conn.execute(
        sa.text("SELECT 1 FROM structures WHERE id = :i"), {"i": structure_id}
    ).first()
    if not exists:
        raise EditLinkError(f"structure inconnue : {structure_id}", kind="not_found")
    expires = int(time.time()) + days * 86400
    link_id = conn.execute(
        sa.text(
            "INSERT INTO edit_links (structure_id, expires_at, created_by) "
            "VALUES (:s, to_timestamp(:e), :b) RETURNING id"
        ),
        {"s": structure_id, "e": expires, "b": by},
    ).scalar_one()
    return f"{link_id}.{expires}.{_sign(key, int(link_id), structure_id, expires)}"


def revoke_links(conn: Connection, structure_id: int) -> int:
    """Revoke every live link of a structure; how many."""
    res = conn.execute(
        sa.text(
            "UPDATE edit_links SET revoked_at = now() "
            "WHERE structure_id = :s AND revoked_at IS NULL"
        ),
        {"s": structure_id},
    )
    return int(res.rowcount or 0)


def check_link(conn: Connection, secret: str | None, token: str | None) -> EditLink:
    """The link a token names, if its signature holds and it is neither expired nor revoked."""
    key = _secret(secret)
    parts = (token or "").split(".")
    if len(parts) != 3 or not parts[0].isascii() or not parts[0].isdigit():
        raise EditLinkError("lien de mise à jour invalide")
    if not parts[1].isascii() or not parts[1].isdigit() or len(parts[0]) > 18:
        raise EditLinkError("lien de mise à jour invalide")
    link_id, expires = int(parts[0]), int(parts[1][:12])
    row = (
        conn.execute(
            sa.text(
                "SELECT structure_id, revoked_at, extract(epoch FROM expires_at)::bigint AS e "
                "FROM edit_links WHERE id = :i"
            ),
            {"i": link_id},
        )
        .mappings()
        .first()
    )
    if row is None or int(row["e"]) != expires:
        raise EditLinkError("lien de mise à jour invalide")
    good = _sign(key, link_id, int(row["structure_id"]), expires)
    if not hmac.compare_digest(good.encode(), parts[2].encode()):
        raise EditLinkError("lien de mise à jour invalide")
    if row["revoked_at"] is not None:
        raise EditLinkError("ce lien de mise à jour a été révoqué")
    if expires < time.time():
        raise EditLinkError("ce lien de mise à jour a expiré")
    return EditLink(link_id, int(row["structure_id"]), expires)


def set_trusted(conn: Connection, structure_id: int, trusted: bool, by: str) -> None:
    """Trust a structure's own edits (applied without moderation), or stop trusting them."""
    if trusted:
        conn.execute(
            sa.text(
                "INSERT INTO trusted_structures (structure_id, trusted_by) VALUES (:s, :b) "
                "ON CONFLICT (structure_id) DO NOTHING"
            ),
            {"s": structure_id, "b": by},
        )
    else:
        conn.execute(
            sa.text("DELETE FROM trusted_structures WHERE structure_id = :s"), {"s": structure_id}
        )


def is_trusted(conn: Connection, structure_id: int) -> bool:
    """True when the structure's own edits skip moderation."""
    return (
        conn.execute(
            sa.text("SELECT 1 FROM trusted_structures WHERE structure_id = :s"),
            {"s": structure_id},
        ).first()
        is not None
    )
