"""Load a population grid in the INSEE Filosofi 200 m format (`idcar_200m`, `ind`).

`idcar_200m` names a square by its size and its south-west corner in ETRS89-LAEA
(EPSG:3035): `CRS3035RES200mN2890000E3760000`. The file is read as a stream and written in
one transaction; a malformed row names the file, the line, the column and the reason, and
nothing is written.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from carteco.importer.errors import ImportFileError, RowError

IDCAR = re.compile(r"^CRS3035RES(\d{2,5})mN(\d{5,8})E(\d{5,8})$")
ID_COLUMNS = ("idcar_200m", "idcar_1km", "idcar_nat", "idcar")
POP_COLUMNS = ("ind", "ind_c", "population")
BATCH = 20_000
Progress = Callable[[int], None]


class GridError(ImportFileError):
    """A grid file that cannot be loaded, with its row errors."""

    def __init__(self, file: str, errors: list[RowError]) -> None:
        super().__init__(file, f"{len(errors)} ligne(s) invalide(s) : rien n'a été écrit")
        self.row_errors = errors


def _pick(header: list[str], names: tuple[str, ...]) -> str | None:
    low = {h.strip().lower(): h for h in header}
    return next((low[n] for n in names if n in low), None)


def load_grid(
    engine: Engine, path: Path, source: str | None = None, progress: Progress | None = None
) -> int:
    """Replace the squares of `source` by those of the file; the number of squares loaded."""
    source = source or path.stem
    errors: list[RowError] = []
    with path.open(encoding="utf-8-sig", newline="") as fh:
        sample = fh.read(4096)
        fh.seek(0)
        try:
            dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
        except csv.Error:
            dialect = csv.excel
        reader = csv.reader(fh, dialect)
        header = next(reader, None)
        if not header:
            raise ImportFileError(path.name, "fichier vide")
        id_col, pop_col = _pick(header, ID_COLUMNS), _pick(header, POP_COLUMNS)
        if id_col is None or pop_col is None:
            raise ImportFileError(
                path.name, "colonnes idcar_200m et ind attendues (format INSEE Filosofi)", row=1
            )
        i_id, i_pop = header.index(id_col), header.index(pop_col)
        n = 0
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM population_grid WHERE source = :s"), {"s": source})
            conn.execute(
                sa.text(
                    "CREATE TEMP TABLE grid_load (idcar text, population float8, res int, "
                    "n float8, e float8) ON COMMIT DROP"
                )
            )
            buf = io.StringIO()
            seen: set[str] = set()
            raw = conn.connection.dbapi_connection
            assert raw is not None

            def flush() -> None:
                with raw.cursor() as cur, cur.copy("COPY grid_load FROM STDIN") as cp:  # type: ignore[attr-defined]
                    cp.write(buf.getvalue())
                buf.seek(0)
                buf.truncate()

            for line_no, row in enumerate(reader, start=2):
                if len(row) <= max(i_id, i_pop):
                    errors.append(RowError(line_no, None, None, "ligne incomplète"))
                    continue
                idcar, pop_raw = row[i_id].strip(), row[i_pop].strip()
                m = IDCAR.match(idcar)
                if not m:
                    errors.append(
                        RowError(line_no, id_col, idcar, "identifiant de carreau INSEE attendu")
                    )
                    continue
                try:
                    pop = float(pop_raw.replace(",", ".")) if pop_raw.isascii() else -1.0
                except ValueError:
                    pop = -1.0
                if not pop >= 0 or pop == float("inf"):
                    errors.append(RowError(line_no, pop_col, pop_raw, "nombre positif attendu"))
                    continue
                if idcar in seen:
                    errors.append(RowError(line_no, id_col, idcar, "carreau en double"))
                    continue
                seen.add(idcar)
                res, north, east = m.groups()
                buf.write(f"{idcar}\t{pop!r}\t{res}\t{north}\t{east}\n")
                n += 1
                if n % BATCH == 0:
                    flush()
                    if progress:
                        progress(n)
            if errors:
                raise GridError(path.name, errors)
            flush()
            conn.execute(
                sa.text(
                    """
                    INSERT INTO population_grid (idcar, population, source, geom, centre)
                    SELECT idcar, population, :s,
                           ST_Transform(ST_MakeEnvelope(e, n, e + res, n + res, 3035), 4326),
                           ST_Transform(ST_SetSRID(
                               ST_MakePoint(e + res / 2.0, n + res / 2.0), 3035), 4326)
                      FROM grid_load
                    """
                ),
                {"s": source},
            )
    if progress:
        progress(n)
    return n
