"""What every command shares: the consoles, the settings, the engine and the progress display."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

import sqlalchemy as sa
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from carteco import db
from carteco.settings import Settings

# Messages, progress and errors go to stderr; results (tables, paths, tokens) to stdout.
console = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)


def cli_settings() -> Settings:
    """The settings from the environment, as the command line uses them."""
    settings = Settings()
    if settings.database_direct_url:
        # Behind PgBouncer, the command line (migrations, imports: session-level locks) talks
        # to the primary directly.
        return settings.model_copy(
            update={"database_url": settings.database_direct_url, "pgbouncer": False}
        )
    return settings


def cli_engine(settings: Settings, check_schema: bool = True) -> sa.Engine:
    """An engine on the database, or exit 2 with a readable message when it is unusable."""
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


class Advance(Protocol):
    """Moves a progress display: `done` of `total` (None: unknown), optionally renamed."""

    def __call__(
        self, done: int, total: int | None = None, *, description: str | None = None
    ) -> None: ...


class RateColumn(ProgressColumn):
    """Units per second (e.g. "12 345 lignes/s"), blank until rich has measured a speed."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        """The task's current speed."""
        speed = task.speed
        if speed is None:
            return Text("")
        return Text(f"{speed:,.0f} {self.unit}/s".replace(",", "\u202f"))


@contextmanager
def progress(
    description: str, counter: str | None = None, rate: str | None = None
) -> Iterator[Advance]:
    """A transient progress display on stderr, erased when done.

    By default a bar with done/total and the elapsed time; with `counter` (e.g. "adresses"),
    a running count of that unit instead of the bar, for work whose total is unknown; with
    `rate` (e.g. "lignes"), the speed in that unit per second and the time remaining too.
    """
    middle: list[ProgressColumn] = (
        [TextColumn("{task.completed} " + counter)]
        if counter
        else [BarColumn(), MofNCompleteColumn()]
    )
    if rate:
        middle += [RateColumn(rate), TimeRemainingColumn()]
    with Progress(
        TextColumn("[bold]{task.description}"),
        *middle,
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=None)

        def advance(done: int, total: int | None = None, *, description: str | None = None) -> None:
            # rich leaves a field alone when it is passed None.
            bar.update(task, completed=done, total=total, description=description)

        yield advance
