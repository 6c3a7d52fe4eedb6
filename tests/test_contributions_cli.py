"""`carteco users …`, `edit-link …`, `trust`, `mail …` run as a user would (subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from carteco import accounts, editlinks

ROOT = Path(__file__).resolve().parent.parent
SECRET = "secret-cli-0123456789"


def _carteco(database_url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "CARTECO_DATABASE_URL": database_url, "COLUMNS": "200", **env}
    return subprocess.run(
        [sys.executable, "-m", "carteco.cli", *args],
        capture_output=True,
        text=True,
        env=full,
        cwd=ROOT,
        timeout=120,
    )


def test_users_and_edit_links(database_url: str, demo_data: sa.Engine) -> None:
    with demo_data.begin() as conn:
        conn.execute(sa.text("TRUNCATE staff_users, edit_links, login_failures CASCADE"))
        sid = conn.execute(sa.text("SELECT min(id) FROM structures")).scalar_one()
    pw = {"CARTECO_NEW_PASSWORD": "un mot de passe solide"}
    res = _carteco(database_url, "users", "add", "lea", "--role", "admin", **pw)
    assert res.returncode == 0, res.stderr
    assert _carteco(database_url, "users", "add", "lea", **pw).returncode == 1  # exists
    short = _carteco(database_url, "users", "add", "bob", CARTECO_NEW_PASSWORD="court")
    assert short.returncode == 1 and "trop court" in short.stdout + short.stderr
    res = _carteco(database_url, "users", "passwd", "lea",
                   CARTECO_NEW_PASSWORD="un autre mot de passe")  # fmt: skip
    assert res.returncode == 0, res.stderr
    with demo_data.begin() as conn:
        accounts.login(conn, "lea", "un autre mot de passe", "127.0.0.1")
    assert _carteco(database_url, "users", "disable", "lea").returncode == 0
    with demo_data.begin() as conn:
        row = conn.execute(sa.text("SELECT disabled_at FROM staff_users WHERE login = 'lea'"))
        assert row.scalar() is not None
    # Edit links: refused without a secret, printed once with one, revocable.
    assert _carteco(database_url, "edit-link", "create", str(sid)).returncode == 1
    res = _carteco(database_url, "edit-link", "create", str(sid), CARTECO_SECRET_KEY=SECRET)
    assert res.returncode == 0, res.stderr
    token = res.stdout.strip().split("lien=")[1]
    with demo_data.connect() as conn:
        assert editlinks.check_link(conn, SECRET, token).structure_id == sid
    assert _carteco(database_url, "edit-link", "revoke", str(sid)).returncode == 0
    assert _carteco(database_url, "trust", str(sid)).returncode == 0
    with demo_data.begin() as conn:
        assert editlinks.is_trusted(conn, sid)
        editlinks.set_trusted(conn, sid, False, "test")
    res = _carteco(database_url, "mail", "send")
    assert res.returncode == 0, res.stderr
