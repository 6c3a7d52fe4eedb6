"""`carteco geocode`, `carteco geocode-csv` and `carteco review`: placing structures."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import sqlalchemy as sa
import typer
from rich.table import Table

from carteco.cli.common import cli_engine, cli_settings, console, out, progress
from carteco.geocoding.backends import make_backend
from carteco.geocoding.csvfile import CsvInputError, geocode_csv
from carteco.geocoding.registry import geocode_dry_run, geocode_structures, review_rows


def run_geocode(
    engine: sa.Engine,
    source: str | None,
    all_: bool,
    min_score: float,
    backend: str,
    url: str | None,
) -> None:
    """Geocode the registry with a progress bar and print the summary by result type."""
    with progress("géocodage") as advance:
        s = geocode_structures(
            engine, make_backend(backend, engine, url), source=source, all_=all_,
            min_score=min_score, progress=advance,
        )  # fmt: skip
    by_type = ", ".join(f"{k} {v}" for k, v in sorted(s.by_type.items())) or "aucun"
    out.print(
        f"Géocodage ({backend}) : {s.structures} structures · placées {s.geocoded} · "
        f"à revoir {s.to_review} · échecs {s.failed} · recherches {s.lookups} · "
        f"cache {s.cache_hits}\n  par type : {by_type}\n"
        f"  communes incohérentes (code postal / INSEE) : {s.mismatches}"
    )


def geocode_cmd(
    source: Annotated[str | None, typer.Option(help="Seulement cette source")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Regéocoder aussi les déjà placées")] = False,
    min_score: Annotated[float, typer.Option(help="Sous ce score : à revoir")] = 0.5,
    backend: Annotated[str, typer.Option(help="local ou ban")] = "local",
    url: Annotated[str | None, typer.Option(help="URL du service compatible BAN")] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Regéocoder sans rien écrire : ce qui bougerait, et de combien"
        ),
    ] = False,
    show: Annotated[int, typer.Option(help="--dry-run : lignes de détail affichées")] = 50,
) -> None:
    """Place the structures to geocode (never moves a provided or manual point)."""
    engine = cli_engine(cli_settings())
    if not dry_run:
        run_geocode(engine, source, all_, min_score, backend, url)
        return
    d = geocode_dry_run(engine, make_backend(backend, engine, url), source=source)
    table = Table("id", "nom", "adresse", "avant", "après", "déplacement")
    for m in d.moves[:show]:
        dist = "nouveau point" if m.metres is None else f"{m.metres:.0f} m"
        before = f"{m.old_type or '—'} {'' if m.old_score is None else f'{m.old_score:.2f}'}"
        table.add_row(str(m.id), m.name, m.address, before.strip(),
                      f"{m.new_type} {m.new_score:.2f}", dist)  # fmt: skip
    for m in d.lost[:show]:
        table.add_row(str(m.id), m.name, m.address, m.old_type or "—", "introuvable", "perdu")
    out.print(table)
    buckets = " · ".join(f"{k} : {v}" for k, v in d.buckets().items())
    out.print(
        f"Simulation ({backend}, rien n'est écrit) : {d.compared} structures comparées · "
        f"inchangées {d.unchanged} · déplacées {len(d.moves)} ({buckets}) · "
        f"plus trouvées {len(d.lost)} · points fournis ou manuels jamais déplacés : {d.protected}"
    )


def geocode_csv_cmd(
    src: Annotated[Path, typer.Argument(help="CSV d'entrée")],
    dst: Annotated[Path, typer.Argument(help="CSV de sortie")],
    columns: Annotated[
        list[str] | None, typer.Option("--columns", help="Colonnes de l'adresse")
    ] = None,
    postcode: Annotated[str | None, typer.Option(help="Colonne du code postal")] = None,
    citycode: Annotated[str | None, typer.Option(help="Colonne du code INSEE")] = None,
    backend: Annotated[str, typer.Option(help="local ou ban")] = "local",
    url: Annotated[str | None, typer.Option(help="URL du service compatible BAN")] = None,
) -> None:
    """Geocode a CSV like /search/csv/ (result columns appended), streaming."""
    engine = cli_engine(cli_settings())
    try:
        with src.open("rb") as fin, dst.open("wb") as fout:
            stats = geocode_csv(fin, fout, make_backend(backend, engine, url), columns or None,
                                postcode, citycode)  # fmt: skip
    except (CsvInputError, OSError) as exc:
        console.print(f"[red]{src} :[/red] {exc}", highlight=False)
        raise typer.Exit(1) from exc
    types = ", ".join(f"{k} {v}" for k, v in sorted(stats.by_type.items()))
    out.print(f"{dst} : {stats.rows} lignes, {stats.geocoded} géocodées ({types})")


def review_cmd(limit: int = 50) -> None:
    """List structures to review or whose commune disagrees with their point, worst first."""
    with cli_engine(cli_settings()).connect() as conn:
        rows = review_rows(conn, limit)
    table = Table("id", "nom", "adresse", "précision", "score", "statut", "contrôle")
    for r in rows:
        addr = " ".join(str(r[k]) for k in ("address_line", "postcode", "commune_name") if r[k])
        score = "" if r["location_score"] is None else f"{r['location_score']:.2f}"
        table.add_row(str(r["id"]), r["name"], addr, r["location_precision"] or "", score,
                      r["geocode_status"] or "", r["location_check"] or "")  # fmt: skip
    out.print(table)
    out.print(f"{len(rows)} structure(s) à revoir.")
