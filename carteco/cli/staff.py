"""`carteco users …`, `carteco edit-link …`, `carteco trust …`, `carteco mail …`: moderation."""

from __future__ import annotations

import getpass
import os
from typing import Annotated

import typer

from carteco.accounts import add_user, disable_user, list_users, set_password
from carteco.cli.common import cli_engine, cli_settings, console, out
from carteco.editlinks import create_link, revoke_links, set_trusted
from carteco.errors import CartecoError
from carteco.mail import deliver, queue_digest

users_app = typer.Typer(help="Comptes de l'équipe de modération.", no_args_is_help=True)
edit_link_app = typer.Typer(help="Liens de mise à jour d'une fiche.", no_args_is_help=True)
mail_app = typer.Typer(
    help="Courriels (file d'envoi, résumé aux modérateurs).", no_args_is_help=True
)

PASSWORD_ENV = "CARTECO_NEW_PASSWORD"


def _password() -> str:
    """The new password: CARTECO_NEW_PASSWORD (scripts), else asked twice on the terminal."""
    given = os.environ.get(PASSWORD_ENV)
    if given:
        return given
    first = getpass.getpass("Mot de passe : ")
    if first != getpass.getpass("Mot de passe (encore) : "):
        console.print("[red]les deux saisies diffèrent[/red]")
        raise typer.Exit(2)
    return first


def _fail(exc: CartecoError) -> typer.Exit:
    console.print(f"[red]{exc}[/red]")
    return typer.Exit(1)


@users_app.command("add")
def users_add(
    login: Annotated[str, typer.Argument(help="Identifiant de connexion.")],
    role: Annotated[str, typer.Option(help="moderator ou admin.")] = "moderator",
    email: Annotated[str | None, typer.Option(help="Adresse électronique.")] = None,
) -> None:
    """Create a staff user (password asked, or from CARTECO_NEW_PASSWORD)."""
    password = _password()
    try:
        with cli_engine(cli_settings()).begin() as conn:
            uid = add_user(conn, login, password, role, email)
    except CartecoError as exc:
        raise _fail(exc) from exc
    console.print(f"Utilisateur n°{uid} « {login} » ({role}) créé.")


@users_app.command("passwd")
def users_passwd(login: Annotated[str, typer.Argument(help="Identifiant.")]) -> None:
    """Change a user's password (ends its sessions)."""
    password = _password()
    try:
        with cli_engine(cli_settings()).begin() as conn:
            set_password(conn, login, password)
    except CartecoError as exc:
        raise _fail(exc) from exc
    console.print(f"Mot de passe de « {login} » changé ; ses sessions sont fermées.")


@users_app.command("disable")
def users_disable(login: Annotated[str, typer.Argument(help="Identifiant.")]) -> None:
    """Disable a user (ends its sessions)."""
    try:
        with cli_engine(cli_settings()).begin() as conn:
            disable_user(conn, login)
    except CartecoError as exc:
        raise _fail(exc) from exc
    console.print(f"« {login} » désactivé.")


@users_app.command("list")
def users_list() -> None:
    """List staff users."""
    with cli_engine(cli_settings()).connect() as conn:
        for u in list_users(conn):
            state = "désactivé" if u["disabled_at"] else "actif"
            out.print(f"{u['id']}\t{u['login']}\t{u['role']}\t{state}")


@edit_link_app.command("create")
def edit_link_create(
    structure_id: Annotated[int, typer.Argument(help="Numéro de la structure.")],
    days: Annotated[int | None, typer.Option(help="Validité en jours.")] = None,
) -> None:
    """Make a signed self-update link for a structure; the link is printed once."""
    settings = cli_settings()
    try:
        with cli_engine(settings).begin() as conn:
            token = create_link(
                conn, settings.secret_key, structure_id, days or settings.edit_link_days, "cli"
            )
    except CartecoError as exc:
        raise _fail(exc) from exc
    base = (settings.public_url or f"http://{settings.host}:{settings.port}").rstrip("/")
    out.print(f"{base}/contribuer/fiche?lien={token}")


@edit_link_app.command("revoke")
def edit_link_revoke(
    structure_id: Annotated[int, typer.Argument(help="Numéro de la structure.")],
) -> None:
    """Revoke every live self-update link of a structure."""
    with cli_engine(cli_settings()).begin() as conn:
        n = revoke_links(conn, structure_id)
    console.print(f"{n} lien(s) révoqué(s).")


def trust_cmd(
    structure_id: Annotated[int, typer.Argument(help="Numéro de la structure.")],
    off: Annotated[bool, typer.Option("--off", help="Retirer la confiance.")] = False,
) -> None:
    """Trust a structure: its edit-link updates are applied without moderation (or --off)."""
    with cli_engine(cli_settings()).begin() as conn:
        set_trusted(conn, structure_id, not off, "cli")
    console.print(f"Structure {structure_id} : {'plus de confiance' if off else 'de confiance'}.")


@mail_app.command("send")
def mail_send() -> None:
    """Send (or log) the queued mails of the outbox."""
    settings = cli_settings()
    counts = deliver(cli_engine(settings), settings)
    console.print(", ".join(f"{k} : {v}" for k, v in counts.items()))


@mail_app.command("digest")
def mail_digest() -> None:
    """Queue and send the moderators' digest of pending proposals."""
    settings = cli_settings()
    engine = cli_engine(settings)
    with engine.begin() as conn:
        n = queue_digest(conn, settings)
    deliver(engine, settings)
    console.print(f"{n} résumé(s) envoyé(s).")
