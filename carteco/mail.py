"""Mails to contributors and moderators: kept in ``mail_outbox``, sent by SMTP when configured.

A mail is first stored (status ``queued``) in the transaction of the change it reports; once
that is committed, `deliver` sends the queued mails through ``SMTP_HOST`` (smtplib), or, with
no server configured, writes them to the log (status ``logged``). A failed send stays in the
outbox (``failed``, with the error) to be retried: no mail is dropped.
"""

from __future__ import annotations

import logging
import smtplib
from email.message import EmailMessage
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from carteco.settings import Settings

log = logging.getLogger("carteco.mail")


def queue_mail(
    conn: Connection,
    kind: str,
    to: str,
    subject: str,
    body: str,
    proposal_id: int | None = None,
) -> int:
    """Store one mail to send; its id."""
    mid = conn.execute(
        sa.text(
            "INSERT INTO mail_outbox (kind, to_addr, subject, body, proposal_id) "
            "VALUES (:k, :t, :s, :b, :p) RETURNING id"
        ),
        {"k": kind, "t": to, "s": subject[:300], "b": body, "p": proposal_id},
    ).scalar_one()
    return int(mid)


def _send(settings: Settings, row: dict[str, Any]) -> None:
    msg = EmailMessage()
    msg["From"] = settings.mail_from
    msg["To"] = row["to_addr"]
    msg["Subject"] = row["subject"]
    msg.set_content(row["body"])
    assert settings.smtp_host is not None
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=10) as smtp:
        if settings.smtp_starttls:
            smtp.starttls()
        if settings.smtp_user:
            smtp.login(settings.smtp_user, settings.smtp_password or "")
        smtp.send_message(msg)


def deliver(engine: Engine, settings: Settings, limit: int = 100) -> dict[str, int]:
    """Send (or log) the queued and failed mails; counts by outcome."""
    with engine.begin() as conn:
        rows = [
            dict(r)
            for r in conn.execute(
                sa.text(
                    "SELECT id, to_addr, subject, body FROM mail_outbox "
                    "WHERE status IN ('queued', 'failed') ORDER BY id LIMIT :n "
                    "FOR UPDATE SKIP LOCKED"
                ),
                {"n": limit},
            ).mappings()
        ]
        counts = {"sent": 0, "logged": 0, "failed": 0}
        for row in rows:
            status, error = "logged", None
            if settings.smtp_host:
                try:
                    _send(settings, row)
                    status = "sent"
                except (OSError, smtplib.SMTPException) as exc:
                    status, error = "failed", f"{type(exc).__name__}: {exc}"[:500]
                    log.warning("mail %s not sent: %s", row["id"], error)
            if status == "logged":
                log.info(
                    "mail (pas de serveur SMTP) à %s : %s\n%s",
                    row["to_addr"],
                    row["subject"],
                    row["body"],
                )
            conn.execute(
                sa.text(
                    "UPDATE mail_outbox SET status = :s, error = :e, "
                    "sent_at = CASE WHEN :s IN ('sent', 'logged') THEN now() END WHERE id = :i"
                ),
                {"s": status, "e": error, "i": row["id"]},
            )
            counts[status] += 1
    return counts


def queue_digest(conn: Connection, settings: Settings) -> int:
    """Queue the moderators' digest of proposals awaiting a decision; how many mails."""
    rows = conn.execute(
        sa.text(
            "SELECT id, kind, origin, created_at, coalesce(changes->>'name', '') AS name "
            "FROM proposals WHERE status = 'pending' ORDER BY created_at, id LIMIT 200"
        )
    ).mappings()
    items = [dict(r) for r in rows]
    if not items or not settings.moderator_emails:
        return 0
    kinds = {"create": "ajout", "update": "modification", "close": "fermeture"}
    lines = [
        f"- n° {r['id']} ({kinds.get(r['kind'], r['kind'])}, {r['origin']}) {r['name']}"
        for r in items
    ]
    base = (settings.public_url or "").rstrip("/")
    body = (
        f"{len(items)} proposition(s) attendent une décision :\n\n"
        + "\n".join(lines)
        + f"\n\nFile de modération : {base}/moderation\n"
    )
    for to in settings.moderator_emails:
        queue_mail(conn, "digest", to, f"Carteco : {len(items)} proposition(s) à modérer", body)
    return len(settings.moderator_emails)


def outbox(conn: Connection, limit: int = 50) -> list[dict[str, Any]]:
    """The latest mails of the outbox, newest first."""
    rows = conn.execute(
        sa.text(
            "SELECT id, kind, to_addr, subject, status, error, created_at, sent_at "
            "FROM mail_outbox ORDER BY id DESC LIMIT :n"
        ),
        {"n": limit},
    ).mappings()
    return [dict(r) for r in rows]
