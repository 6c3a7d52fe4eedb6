"""`carteco duplicates …`: candidate pairs, merges and keep-apart decisions."""

from __future__ import annotations

import csv
import io
import json
from enum import StrEnum
from typing import Annotated

import typer

from carteco.auth import audit
from carteco.cli.common import cli_engine, cli_settings, console, out
from carteco.duplicates import (
    DEFAULT_MIN_SCORE,
    DuplicateError,
    keep_apart,
    list_duplicates,
    merge,
)

duplicates_app = typer.Typer(
    help="Doublons entre sources : lister, fusionner, garder séparés.", no_args_is_help=True
)


class Format(StrEnum):
    """Output formats of `duplicates list`."""

    text = "text"
    json = "json"
    csv = "csv"


@duplicates_app.command("list")
def duplicates_list(
    min_score: Annotated[
        float, typer.Option("--min-score", help="Score minimal (0 à 1).")
    ] = DEFAULT_MIN_SCORE,
    territoire: Annotated[
        str | None, typer.Option(help="Territoire niveau:code, ex. departement:79.")
    ] = None,
    fmt: Annotated[Format, typer.Option("--format", help="text, json ou csv.")] = Format.text,
) -> None:
    """List candidate duplicate pairs, best first, with their score and reasons."""
    with cli_engine(cli_settings()).begin() as conn:
        try:
            pairs = list_duplicates(conn, min_score, territoire)
        except DuplicateError as exc:
            console.print(f"[red]{exc}[/red]", highlight=False)
            raise typer.Exit(2) from exc
    if fmt is Format.json:
        out.print_json(json.dumps([p.as_dict() for p in pairs], ensure_ascii=False, default=str))
        return
    if fmt is Format.csv:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(
            ["score", "distance_m", "id_a", "nom_a", "source_a", "id_b", "nom_b", "source_b",
             "raisons"]
        )  # fmt: skip
        for p in pairs:
            d = p.as_dict()
            w.writerow(
                [d["score"], d["distance_m"], p.a["id"], p.a["name"], p.a["source"], p.b["id"],
                 p.b["name"], p.b["source"], " ; ".join(p.reasons)]
            )  # fmt: skip
        out.file.write(buf.getvalue())
        return
    for p in pairs:
        out.print(
            f"{p.score:.2f}\t{p.a['id']} « {p.a['name']} » ({p.a['source']})\t"
            f"{p.b['id']} « {p.b['name']} » ({p.b['source']})\t{', '.join(p.reasons)}",
            markup=False,
            highlight=False,
        )
    console.print(f"{len(pairs)} paire(s) candidate(s) (score ≥ {min_score}).")


@duplicates_app.command("merge")
def duplicates_merge(
    a: Annotated[int, typer.Argument(help="Numéro d'une structure.")],
    b: Annotated[int, typer.Argument(help="Numéro de l'autre structure.")],
    keep: Annotated[
        int | None, typer.Option(help="La structure conservée (défaut : la première).")
    ] = None,
) -> None:
    """Merge two structures: every source link and its values kept, the other id redirects."""
    survivor = a if keep is None else keep
    if survivor not in (a, b):
        console.print(f"[red]--keep doit valoir {a} ou {b}[/red]")
        raise typer.Exit(2)
    other = b if survivor == a else a
    try:
        with cli_engine(cli_settings()).begin() as conn:
            done = merge(conn, survivor, other, by="cli")
            audit(conn, None, "merge", f"structures/{survivor}", done)
    except DuplicateError as exc:
        console.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(1) from exc
    out.print(
        f"Structure {other} fusionnée dans {survivor} (sources : {', '.join(done['sources'])}).",
        markup=False,
        highlight=False,
    )
    for f, said in done["provenance"].items():
        vals = " / ".join(f"{src} : « {v} »" for src, v in said.items())
        out.print(f"  {f} — {vals}", markup=False, highlight=False)


@duplicates_app.command("keep-apart")
def duplicates_keep_apart(
    a: Annotated[int, typer.Argument(help="Numéro d'une structure.")],
    b: Annotated[int, typer.Argument(help="Numéro de l'autre structure.")],
) -> None:
    """Remember that two structures are distinct: the pair is never proposed again."""
    try:
        with cli_engine(cli_settings()).begin() as conn:
            done = keep_apart(conn, a, b, by="cli")
            audit(conn, None, "keep-apart", f"structures/{a}", done)
    except DuplicateError as exc:
        console.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(1) from exc
    out.print(f"Structures {a} et {b} gardées séparées.")
