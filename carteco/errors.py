"""The core's one error base: every domain error says what *kind* of failure it is.

The core knows nothing of HTTP: a kind is a word (``invalid``, ``not_found``…). The API maps
kinds to statuses once, in `api/errors.py`; the command line prints the message. A new kind
is added here (`KINDS`) and mapped there.
"""

from __future__ import annotations

from typing import Any

# Every kind a domain error may carry, with what it means.
KINDS = {
    "invalid": "the input is malformed or out of its limits",
    "not_found": "the thing named does not exist",
    "conflict": "the request contradicts the current state",
    "unauthorized": "no or bad credentials",
    "forbidden": "credentials valid but not allowed to do this",
    "too_large": "the input exceeds a size limit",
    "too_many": "too many attempts or submissions from this client; retry later",
    "unavailable": "a dependency (database, remote service) does not answer",
    "internal": "a failure of the service itself; its message is for the log, not the client",
}


class CartecoError(Exception):
    """A domain error: a French `message` for users, a `kind`, optional per-field errors."""

    kind: str = "invalid"

    def __init__(
        self,
        message: str = "",
        *args: Any,
        kind: str | None = None,
        errors: list[dict[str, str]] | None = None,
    ) -> None:
        super().__init__(message, *args)
        if kind is not None:
            if kind not in KINDS:
                raise ValueError(f"unknown error kind {kind!r}")
            self.kind = kind
        self._errors = list(errors or [])

    @property
    def detail(self) -> str:
        """The message a client or a terminal reads."""
        return str(self)

    def field_errors(self) -> list[dict[str, str]]:
        """Per-parameter errors (``parameter``, ``reason``…), empty when none apply."""
        return list(getattr(self, "_errors", []))
