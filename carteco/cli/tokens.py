"""`carteco token …`: the write API's tokens."""

from __future__ import annotations

from typing import Annotated

import typer

from carteco.auth import create_token, list_tokens, parse_scopes, revoke_token
from carteco.cli.common import cli_engine, cli_settings, console, out

token_app = typer.Typer(help="Jetons de l'API d'écriture.", no_args_is_help=True)


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Argument(help="Nom du jeton (partenaire, usage).")],
    scope: Annotated[
        str, typer.Option(help="Portées : import, edit, moderate, admin (liste).")
    ] = "import",
) -> None:
    """Create a token; the secret is printed once (only its sha256 is stored)."""
    try:
        scopes = parse_scopes(scope)
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    with cli_engine(cli_settings()).begin() as conn:
        tid, token = create_token(conn, name, scopes)
    console.print(f"Jeton n°{tid} « {name} » ({', '.join(scopes)}) ; conservez-le :")
    out.print(token)


@token_app.command("list")
def token_list() -> None:
    """List tokens (never their secret)."""
    with cli_engine(cli_settings()).connect() as conn:
        rows = list_tokens(conn)
    for r in rows:
        state = f"révoqué le {r['revoked_at']:%Y-%m-%d}" if r["revoked_at"] else "actif"
        out.print(f"{r['id']}\t{r['name']}\t{','.join(r['scopes'])}\t{state}")


@token_app.command("revoke")
def token_revoke(token_id: Annotated[int, typer.Argument(help="Numéro du jeton.")]) -> None:
    """Revoke a token by its number."""
    with cli_engine(cli_settings()).begin() as conn:
        ok = revoke_token(conn, token_id)
    if not ok:
        console.print(f"[red]Jeton n°{token_id} inconnu ou déjà révoqué.[/red]")
        raise typer.Exit(1)
    console.print(f"Jeton n°{token_id} révoqué.")
