"""The `carteco` command line: database, reference data, imports, demo and service."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import sqlalchemy as sa
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from carteco import db
from carteco.importer import ImportFileError, ImportReport, run_import
from carteco.importer.mapping import Mapping
from carteco.settings import Settings

app = typer.Typer(
    help="Carteco : registre et carte des structures de l'ESS.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Base de données : migrations, grappe embarquée.", no_args_is_help=True)
geodata_app = typer.Typer(help="Données de référence livrées.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(geodata_app, name="geodata")
console = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)


def _settings() -> Settings:
    settings = Settings()
    if settings.database_direct_url:
        # Behind PgBouncer, the command line (migrations, imports: session-level locks) talks
        # to the primary directly.
        return settings.model_copy(
            update={"database_url": settings.database_direct_url, "pgbouncer": False}
        )
    return settings


def _engine(settings: Settings, check_schema: bool = True) -> sa.Engine:
    try:
        url = db.resolve_url(settings)
    except Exception as exc:  # embedded cluster failures carry a readable message
        console.print(f"[red]Base de données indisponible :[/red] {exc}")
        raise typer.Exit(2) from exc
    engine = db.make_engine(settings, url)
    if check_schema:
        with engine.connect() as conn:
            current = db.current_revisions(conn)
        if current != db.head_revisions(url):
            console.print(
                "[red]Schéma absent ou ancien :[/red] lancez `carteco db upgrade` "
                f"(base à {sorted(current) or 'vide'})."
            )
            raise typer.Exit(2)
    return engine


@db_app.command("upgrade")
def db_upgrade(revision: str = "heads") -> None:
    """Create or migrate the schema (Alembic) and load the sector taxonomy."""
    settings = _settings()
    url = db.resolve_url(settings)
    db.upgrade(url, revision)
    engine = db.make_engine(settings, url)
    from carteco.sectors import sync_sectors

    with engine.begin() as conn:
        db.check_postgis(conn)
        n = sync_sectors(conn)
    console.print(f"Schéma à jour ; {n} secteurs chargés.")


@db_app.command("downgrade")
def db_downgrade(revision: str = "base") -> None:
    """Migrate the schema down (to `base` by default: drops every table)."""
    db.downgrade(db.resolve_url(_settings()), revision)
    console.print(f"Schéma ramené à {revision}.")


@db_app.command("url")
def db_url() -> None:
    """Print the database URL in use (starting the embedded cluster if needed)."""
    out.print(db.resolve_url(_settings()))


@db_app.command("start")
def db_start() -> None:
    """Start the embedded cluster (no-op when CARTECO_DATABASE_URL is set)."""
    out.print(db.resolve_url(_settings()))


@db_app.command("backup")
def db_backup(out: Path) -> None:
    """Dump the database (pg_dump custom format) to OUT."""
    from carteco.backup import dump

    size = dump(db.resolve_url(_settings()), out)
    console.print(f"Sauvegarde écrite : {out} ({size} octets).")


@db_app.command("restore")
def db_restore(dump_file: Path) -> None:
    """Restore a dump made by `carteco db backup` into the (empty) configured database."""
    from carteco.backup import restore

    restore(db.resolve_url(_settings()), dump_file)
    console.print(f"Base restaurée depuis {dump_file}.")


@db_app.command("stop")
def db_stop() -> None:
    """Stop the embedded cluster."""
    db.embedded_cluster(_settings()).stop()
    console.print("Grappe embarquée arrêtée.")


@geodata_app.command("load")
def geodata_load(force: bool = False) -> None:
    """Load the shipped boundaries, stations and COG tables (a second run changes nothing)."""
    from geodata.loader import load_all

    engine = _engine(_settings())
    with engine.begin() as conn:
        with console.status("Chargement des couches de référence…") as status:
            results = load_all(conn, force=force, progress=lambda n: status.update(f"{n}…"))
    table = Table("couche", "action", "entités")
    for r in results:
        table.add_row(r.layer, "chargée" if r.action == "loaded" else "inchangée", str(r.features))
    out.print(table)


@app.command("sectors")
def sectors_list() -> None:
    """List the sector taxonomy (codes to use in mappings and filters)."""
    from carteco.sectors import load_taxonomy

    tax = load_taxonomy()
    table = Table("code", "libellé", "type", title=f"Taxonomie {tax.version}")
    for n in tax.nodes:
        table.add_row(("  " if n.parent else "") + n.code, n.label, n.kind)
    out.print(table)


def print_report(report: ImportReport, max_errors: int = 50) -> None:
    """Print an import summary and its first row errors."""
    verb = {"dry_run": "simulation", "rejected": "REFUSÉ", "succeeded": "terminé"}.get(
        report.status, report.status
    )
    out.print(
        f"{report.file} → source « {report.source} » ({report.format}) : {verb}\n"
        f"  lignes lues {report.rows_read} · créées {report.created} · "
        f"mises à jour {report.updated} · inchangées {report.unchanged} · "
        f"rejetées {report.rejected}"
    )
    for e in report.errors[:max_errors]:
        console.print("  " + e.message(report.file), highlight=False, markup=False)
    if len(report.errors) > max_errors:
        console.print(f"  … et {len(report.errors) - max_errors} autres erreurs")
    if report.message:
        console.print("  " + report.message, markup=False)


def import_file(
    engine: sa.Engine,
    path: Path,
    source: str | None,
    mapping: Mapping | None,
    dry_run: bool = False,
    skip_invalid: bool = False,
) -> ImportReport:
    """Import one file with a progress bar; print the report."""
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task(path.name, total=None)
        report = run_import(
            engine,
            path,
            source=source,
            mapping=mapping,
            dry_run=dry_run,
            skip_invalid=skip_invalid,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    print_report(report)
    return report


@app.command("import")
def import_cmd(
    path: Annotated[Path, typer.Argument(help="CSV, XLSX, GeoJSON ou export GoGoCarto")],
    source: Annotated[
        str | None, typer.Option(help="Nom de la source (défaut : nom du fichier)")
    ] = None,
    mapping: Annotated[Path | None, typer.Option(help="Correspondance TOML/JSON")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Valider sans écrire")] = False,
    skip_invalid: Annotated[
        bool, typer.Option("--skip-invalid", help="Écrire les lignes valides, rapporter les autres")
    ] = False,
    geocode: Annotated[
        bool, typer.Option("--geocode", help="Géocoder ensuite les structures de la source")
    ] = False,
) -> None:
    """Import a structure list as one transaction (upsert on source id, then SIRET, then RNA)."""
    engine = _engine(_settings())
    try:
        m = Mapping.from_file(mapping) if mapping else None
        report = import_file(engine, path, source, m, dry_run, skip_invalid)
    except ImportFileError as exc:
        console.print(f"[red]Import refusé :[/red] {exc}", highlight=False)
        raise typer.Exit(1) from exc
    if report.status == "rejected":
        raise typer.Exit(1)
    if geocode and report.status == "succeeded":
        run_geocode(engine, report.source, False, 0.5, "local", None)


@app.command("serve")
def serve(
    host: Annotated[str | None, typer.Option()] = None,
    port: Annotated[int | None, typer.Option()] = None,
    workers: int = 1,
) -> None:
    """Serve the API and the map (uvicorn)."""
    import uvicorn

    settings = _settings()
    _engine(settings)  # fail early, with a readable message, on a missing schema
    if settings.database_url is None:
        # Workers must not each start the embedded cluster: hand them its URL.
        import os

        os.environ["CARTECO_DATABASE_URL"] = db.resolve_url(settings)
    uvicorn.run(
        "api.factory:app_from_env",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        proxy_headers=True,
        log_level="info",
    )


@app.command("demo")
def demo(
    serve_after: Annotated[bool, typer.Option("--serve/--no-serve")] = True,
    host: Annotated[str | None, typer.Option()] = None,
    port: Annotated[int | None, typer.Option()] = None,
) -> None:
    """Set up the database, load reference data and the IDF demo imports, then serve the map."""
    from carteco.demo import DEMO_SOURCES

    settings = _settings()
    db_upgrade()
    geodata_load(force=False)
    engine = _engine(settings)
    for d in DEMO_SOURCES:
        report = import_file(
            engine, d.path, d.source, Mapping.from_file(d.mapping_path), skip_invalid=d.skip_invalid
        )
        if report.status != "succeeded":
            raise typer.Exit(1)
    # SIAE rows carry addresses only: place them (commune precision without a BAN file).
    run_geocode(engine, None, False, 0.5, "local", None)
    with engine.connect() as conn:
        n, located = conn.execute(sa.text("SELECT count(*), count(geom) FROM structures")).one()
    out.print(f"Démo prête : {n} structures, dont {located} localisées.")
    if serve_after:
        url = f"http://{host or settings.host}:{port or settings.port}/"
        out.print(f"Carte : {url}carte")
        serve(host=host, port=port)


@geodata_app.command("load-addresses")
def geodata_load_addresses(
    paths: Annotated[list[Path], typer.Argument(help="adresses-XX.csv[.gz] (BAN) ou BAL 1.3")],
) -> None:
    """Load BAN / BAL address files into the local geocoder (a second run changes nothing)."""
    from carteco.geocoding.reference import AddressFileError, load_addresses

    engine = _engine(_settings())
    try:
        with engine.begin() as conn, Progress(
            TextColumn("[bold]{task.description}"), TextColumn("{task.completed} adresses"),
            TimeElapsedColumn(), console=console, transient=True,
        ) as bar:  # fmt: skip
            task = bar.add_task("adresses", total=None)
            results = load_addresses(
                conn, paths, lambda name, n: bar.update(task, description=name, completed=n)
            )
    except (AddressFileError, FileNotFoundError) as exc:
        console.print(f"[red]Chargement refusé :[/red] {exc}", highlight=False)
        raise typer.Exit(1) from exc
    table = Table("fichier", "format", "adresses", "communes", "voies", "ignorées")
    for r in results:
        table.add_row(r.file, r.format.upper(), str(r.addresses), str(r.communes),
                      str(r.streets), str(r.skipped))  # fmt: skip
    out.print(table)


def run_geocode(
    engine: sa.Engine,
    source: str | None,
    all_: bool,
    min_score: float,
    backend: str,
    url: str | None,
) -> None:
    """Geocode the registry with a progress bar and print the summary by result type."""
    from carteco.geocoding.backends import make_backend
    from carteco.geocoding.registry import geocode_structures

    with Progress(
        TextColumn("[bold]géocodage"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=True,
    ) as bar:  # fmt: skip
        task = bar.add_task("géocodage", total=None)
        s = geocode_structures(
            engine, make_backend(backend, engine, url), source=source, all_=all_,
            min_score=min_score, progress=lambda d, t: bar.update(task, completed=d, total=t),
        )  # fmt: skip
    by_type = ", ".join(f"{k} {v}" for k, v in sorted(s.by_type.items())) or "aucun"
    out.print(
        f"Géocodage ({backend}) : {s.structures} structures · placées {s.geocoded} · "
        f"à revoir {s.to_review} · échecs {s.failed} · recherches {s.lookups} · "
        f"cache {s.cache_hits}\n  par type : {by_type}\n"
        f"  communes incohérentes (code postal / INSEE) : {s.mismatches}"
    )


@app.command("geocode")
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
    if not dry_run:
        run_geocode(_engine(_settings()), source, all_, min_score, backend, url)
        return
    from carteco.geocoding.backends import make_backend
    from carteco.geocoding.registry import geocode_dry_run

    engine = _engine(_settings())
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


@app.command("geocode-csv")
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
    from carteco.geocoding.backends import make_backend
    from carteco.geocoding.csvfile import CsvInputError, geocode_csv

    engine = _engine(_settings())
    try:
        with src.open("rb") as fin, dst.open("wb") as fout:
            stats = geocode_csv(fin, fout, make_backend(backend, engine, url), columns or None,
                                postcode, citycode)  # fmt: skip
    except (CsvInputError, OSError) as exc:
        console.print(f"[red]{src} :[/red] {exc}", highlight=False)
        raise typer.Exit(1) from exc
    types = ", ".join(f"{k} {v}" for k, v in sorted(stats.by_type.items()))
    out.print(f"{dst} : {stats.rows} lignes, {stats.geocoded} géocodées ({types})")


@app.command("review")
def review_cmd(limit: int = 50) -> None:
    """List structures to review or whose commune disagrees with their point, worst first."""
    from carteco.geocoding.registry import review_rows

    with _engine(_settings()).connect() as conn:
        rows = review_rows(conn, limit)
    table = Table("id", "nom", "adresse", "précision", "score", "statut", "contrôle")
    for r in rows:
        addr = " ".join(str(r[k]) for k in ("address_line", "postcode", "commune_name") if r[k])
        score = "" if r["location_score"] is None else f"{r['location_score']:.2f}"
        table.add_row(str(r["id"]), r["name"], addr, r["location_precision"] or "", score,
                      r["geocode_status"] or "", r["location_check"] or "")  # fmt: skip
    out.print(table)
    out.print(f"{len(rows)} structure(s) à revoir.")


from carteco.land.commands import diagnostic_app, land_app  # noqa: E402

app.add_typer(land_app, name="land")
app.add_typer(diagnostic_app, name="diagnostic")


from carteco.features_cli import export_cmd, token_app  # noqa: E402

app.command("export")(export_cmd)
app.add_typer(token_app, name="token")

# Vector tiles live in the tiles package; the command is registered here (see tiles/cli.py).
from tiles.cli import tiles_app  # noqa: E402

app.add_typer(tiles_app, name="tiles")


def main() -> None:
    """Entry point of the `carteco` console script."""
    try:
        app()
    except db.DatabaseError as exc:
        console.print(f"[red]{exc}[/red]")
        sys.exit(2)


if __name__ == "__main__":
    main()
