"""Errors of the import pipeline: one for a whole file, one for a cell or row."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from carteco.errors import CartecoError

MAX_FILE_NAME = 255
_NAME_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class ImportFileError(CartecoError, ValueError):
    """The file cannot be read at all (format, encoding, headers); nothing is written."""

    kind = "invalid"

    def __init__(self, file: str, reason: str, row: int | None = None) -> None:
        self.file = file
        self.reason = reason
        self.row = row
        where = f"{file}, ligne {row}" if row else file
        super().__init__(f"{where} : {reason}")


@dataclass(frozen=True)
class RowError:
    """Why one row (and, when known, one column) was rejected."""

    row: int
    column: str | None
    value: str | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form stored in import_runs.errors."""
        return asdict(self)

    def message(self, file: str) -> str:
        """One line naming file, row, column, value and reason."""
        col = f", colonne « {self.column} »" if self.column else ""
        val = f" (valeur « {_short(self.value)} »)" if self.value not in (None, "") else ""
        return f"{file}, ligne {self.row}{col}{val} : {self.reason}"


def _short(value: str | None, n: int = 60) -> str:
    text = str(value)
    return text if len(text) <= n else text[: n - 1] + "…"


def safe_file_name(raw: str | None) -> str:
    """The base name of an uploaded file, or ImportFileError when none is usable.

    Clients send any string as a multipart filename: a path (only its last part is kept, with
    / or \\ as separator), ".", "..", nothing, NUL or control characters (refused).
    """
    text = raw or ""
    if _NAME_CONTROL.search(text):
        raise ImportFileError(
            "(nom de fichier)", "nom de fichier invalide : caractères de contrôle ou NUL"
        )
    name = re.split(r"[/\\]", text)[-1].strip()
    if name in ("", ".", ".."):
        raise ImportFileError(
            "(nom de fichier)",
            f"nom de fichier invalide : « {text[:80]} » (un nom comme structures.csv est attendu)",
        )
    if len(name) > MAX_FILE_NAME:
        raise ImportFileError(
            name[:40] + "…", f"nom de fichier trop long (plus de {MAX_FILE_NAME} caractères)"
        )
    return name
