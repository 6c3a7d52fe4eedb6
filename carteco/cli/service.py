"""`carteco serve` and `carteco demo`: the API and the map, with or without the demo data."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from carteco import db, registry
from carteco.cli.common import cli_engine, cli_settings, out
from carteco.cli.db import db_upgrade
from carteco.cli.geocode import run_geocode
from carteco.cli.geodata import geodata_load
from carteco.cli.imports import import_file
from carteco.demo import DEMO_LAND, DEMO_SOURCES
from carteco.importer.mapping import Mapping
from carteco.land import run_land_import


def serve(
    host: Annotated[str | None, typer.Option()] = None,
    port: Annotated[int | None, typer.Option()] = None,
    workers: int = 1,
) -> None:
    """Serve the API and the map (uvicorn)."""
    # Loaded by the one command that needs it: every other command starts faster without it.
    import uvicorn

    settings = cli_settings()
    cli_engine(settings)  # fail early, with a readable message, on a missing schema
    if settings.database_url is None:
        # Workers must not each start the embedded cluster: hand them its URL.
        os.environ["CARTECO_DATABASE_URL"] = db.resolve_url(settings)
    uvicorn.run(
        "api.factory:app_from_env",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        # Forwarding headers are believed from the configured proxies only (the same list the
        # rate limits use, api.ratelimit.client_address), never from any local process.
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=settings.trusted_proxies or None,
        log_level="info",
    )


def demo(
    serve_after: Annotated[bool, typer.Option("--serve/--no-serve")] = True,
    host: Annotated[str | None, typer.Option()] = None,
    port: Annotated[int | None, typer.Option()] = None,
) -> None:
    """Set up the database, load reference data and the IDF demo imports, then serve the map."""
    settings = cli_settings()
    db_upgrade()
    geodata_load(force=False)
    engine = cli_engine(settings)
    for d in DEMO_SOURCES:
        report = import_file(
            engine, d.path, d.source, Mapping.from_file(d.mapping_path), skip_invalid=d.skip_invalid
        )
        if report.status != "succeeded":
            raise typer.Exit(1)
    for layer in DEMO_LAND:
        land = run_land_import(
            engine,
            layer.kind,
            layer.path,
            source=layer.source,
            description=layer.description,
            vintage=layer.vintage,
        )
        if land.status != "succeeded":
            out.print(f"[red]{layer.file} : {land.message}[/red]")
            raise typer.Exit(1)
    # SIAE rows carry addresses only: place them (commune precision without a BAN file).
    run_geocode(engine, None, False, 0.5, "local", None)
    with engine.connect() as conn:
        summary = registry.registry_summary(conn)
        n, located = summary["structures"], summary["located"]
    out.print(f"Démo prête : {n} structures, dont {located} localisées.")
    if serve_after:
        url = f"http://{host or settings.host}:{port or settings.port}/"
        out.print(f"Carte : {url}carte")
        serve(host=host, port=port)
