"""Shared helpers of the contribution tests: a real SMTP server (aiosmtpd), form payloads."""

from __future__ import annotations

import email
import email.policy
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import Message
from typing import Any

from aiosmtpd.controller import Controller

from carteco.proposals import form_token
from tests.conftest import free_port


class Inbox:
    """An aiosmtpd handler keeping every message it receives."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        """Keep the message (aiosmtpd's hook)."""
        self.messages.append(
            email.message_from_bytes(envelope.content, policy=email.policy.default)
        )
        return "250 OK"

    def to(self, addr: str) -> list[Message]:
        """Messages sent to one address."""
        return [m for m in self.messages if m["To"] == addr]

    @staticmethod
    def body(msg: Message) -> str:
        """The text of a message."""
        part = msg.get_body(("plain",))  # type: ignore[attr-defined]
        return str(part.get_content()) if part is not None else ""


@contextmanager
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    """A real SMTP server on loopback: (inbox, port)."""
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def aged_token(secret: str | None, seconds: float = 30) -> str:
    """A form token made `seconds` ago (a person filling the form)."""
    return form_token(secret, time.time() - seconds)


def creation(secret: str | None = None, **fields: Any) -> dict[str, Any]:
    """A valid "new structure" submission in Saint-Denis (93)."""
    base = {
        "name": "La Recyclerie du canal",
        "address_line": "2 rue du Canal",
        "postcode": "93200",
        "commune_name": "Saint-Denis",
        "ess_family": "association",
        "phone": "01 23 45 67 89",
        "opening_hours": "Mo-Fr 09:00-18:00; PH off",
    }
    base.update(fields)
    return {
        "kind": "create",
        "fields": base,
        "location": [2.3575, 48.9362],
        "location_moved": True,
        "contributor_email": "visiteur@exemple.fr",
        "form_token": aged_token(secret),
    }
