"""Geocode a CSV file as api-adresse's /search/csv/ does, streaming (constant memory)."""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

from carteco.errors import CartecoError
from carteco.geocoding.backends import RESULT_COLUMNS, Backend, Query, result_columns
from carteco.geocoding.engine import GeocodeResult
from carteco.text import neutralise_formula

SNIFF_BYTES = 64 * 1024


class CsvInputError(CartecoError, ValueError):
    """The CSV cannot be geocoded as asked (unknown column, unreadable file)."""

    kind = "invalid"


@dataclass
class CsvStats:
    """What a CSV run did."""

    rows: int = 0
    geocoded: int = 0
    by_type: dict[str, int] = field(default_factory=dict)
    encoding: str = "utf-8"
    delimiter: str = ","


def detect(head: bytes) -> tuple[str, str]:
    """Encoding (utf-8 or cp1252) and delimiter of a CSV from its first bytes."""
    encoding = "utf-8"
    try:
        # A multi-byte character may be cut at the end of the sample: decode incrementally.
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        encoding = "cp1252"
    if head.startswith(codecs.BOM_UTF8):
        encoding = "utf-8-sig"
    text = head.decode(encoding, errors="replace")
    first = text.splitlines()[0] if text.splitlines() else ""
    counts = {d: first.count(d) for d in (";", ",", "\t", "|")}
    delimiter = max(counts, key=lambda d: (counts[d], d == ","))
    return encoding, delimiter if counts[delimiter] else ","


def geocode_csv(
    src: IO[bytes],
    dst: IO[bytes],
    backend: Backend,
    columns: list[str] | None = None,
    postcode_column: str | None = None,
    citycode_column: str | None = None,
    batch_size: int = 500,
    progress: Callable[[int], None] | None = None,
    max_rows: int | None = None,
    result_names: list[str] | None = None,
) -> CsvStats:
    """Append the api-adresse result columns (all, or `result_names`) to every row.

    Same encoding and delimiter as the input. With `max_rows`, a file of more data rows is
    refused (CsvInputError) as soon as the row past the cap is read, not after geocoding it all.
    """
    picked = list(range(len(RESULT_COLUMNS)))
    if result_names:
        unknown = [c for c in result_names if c not in RESULT_COLUMNS]
        if unknown:
            raise CsvInputError(
                f"result_columns : {', '.join(unknown)} inconnue(s) "
                f"(attendu parmi {', '.join(RESULT_COLUMNS)})"
            )
        picked = [RESULT_COLUMNS.index(c) for c in result_names]
    head = src.read(SNIFF_BYTES)
    encoding, delimiter = detect(head)
    stats = CsvStats(encoding=encoding, delimiter=delimiter)
    stream = io.BufferedReader(_Prepend(head, src))  # type: ignore[type-var]
    text_in = io.TextIOWrapper(stream, encoding=encoding, errors="replace", newline="")
    out_enc = "utf-8" if encoding == "utf-8-sig" else encoding
    text_out = io.TextIOWrapper(dst, encoding=out_enc, errors="replace", newline="")
    if encoding == "utf-8-sig":
        dst.write(codecs.BOM_UTF8)
    reader = csv.reader(text_in, delimiter=delimiter)
    writer = csv.writer(text_out, delimiter=delimiter, lineterminator="\r\n")
    header = next(reader, None)
    if header is None:
        raise CsvInputError("fichier CSV vide")
    index = {h.strip(): i for i, h in enumerate(header)}
    wanted = columns or list(header)
    for c in [*wanted, *(x for x in (postcode_column, citycode_column) if x)]:
        if c not in index:
            raise CsvInputError(f"colonne {c!r} absente de l'en-tête ({', '.join(header)})")
    cols = [index[c] for c in wanted]
    pc_i = index[postcode_column] if postcode_column else None
    cc_i = index[citycode_column] if citycode_column else None
    # Every cell written goes through the one CSV formula rule (OWASP CSV injection).
    writerow = _safe_writer(writer)
    writerow([*header, *(RESULT_COLUMNS[i] for i in picked)])
    search_batch = getattr(backend, "search_batch", None)
    batch: list[list[str]] = []

    def flush() -> None:
        queries = [_query(row, cols, pc_i, cc_i) for row in batch]
        todo = [(i, q) for i, q in enumerate(queries) if q is not None]
        results: list[list[GeocodeResult]] = [[] for _ in batch]
        status = ["skipped" if q is None else "not-found" for q in queries]
        try:
            if search_batch is not None:  # the second answer gives result_score_next
                found = search_batch([q for _, q in todo], 2) if todo else []
            else:
                found = [[r] if r else [] for r in backend.geocode_batch([q for _, q in todo])]
        except Exception:  # noqa: BLE001 — one failed batch must not lose the file
            found = []
            for i, _ in todo:
                status[i] = "error"
            todo = []
        for (i, _), res in zip(todo, found, strict=True):
            results[i] = res
            if res:
                status[i] = "ok"
        for row, res, st in zip(batch, results, status, strict=True):
            padded = row + [""] * (len(header) - len(row))
            r = res[0] if res else None
            nxt = res[1].score if len(res) > 1 else None
            values = result_columns(r, nxt, st)
            writerow([*padded, *(values[i] for i in picked)])
            if r is not None:
                stats.geocoded += 1
                stats.by_type[r.type] = stats.by_type.get(r.type, 0) + 1
        stats.rows += len(batch)
        batch.clear()
        text_out.flush()
        if progress:
            progress(stats.rows)

    for row in reader:
        batch.append(row)
        if max_rows is not None and stats.rows + len(batch) > max_rows:
            raise CsvInputError(f"plus de {max_rows} lignes : découpez le fichier")
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    text_out.flush()
    text_out.detach()
    text_in.detach()
    return stats


def _safe_writer(writer: Any) -> Callable[[list[str]], None]:
    """`writer.writerow` with every cell neutralised against spreadsheet formulas."""

    def writerow(cells: list[str]) -> None:
        writer.writerow([neutralise_formula(str(c)) for c in cells])

    return writerow


def _query(row: list[str], cols: list[int], pc_i: int | None, cc_i: int | None) -> Query | None:
    text = " ".join(row[i].strip() for i in cols if i < len(row) and row[i].strip())
    if not any(c.isalnum() for c in text):
        return None
    pc = row[pc_i].strip() if pc_i is not None and pc_i < len(row) else ""
    cc = row[cc_i].strip() if cc_i is not None and cc_i < len(row) else ""
    return Query(text, postcode=pc if len(pc) == 5 and pc.isdigit() else None, citycode=cc or None)


class _Prepend(io.RawIOBase):
    """A raw stream that first yields already-read bytes, then the rest of the source."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        self._head = head
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray) -> int:  # type: ignore[override]
        if self._head:
            n = min(len(b), len(self._head))
            b[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(b))
        b[: len(data)] = data
        return len(data)
