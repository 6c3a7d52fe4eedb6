"""The `carteco` command line, run as a user would (subprocess, real database)."""

import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from carteco.demo import DEMO_SOURCES

ROOT = Path(__file__).resolve().parent.parent


def _carteco(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CARTECO_DATABASE_URL": database_url, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "carteco.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )


def test_import_prints_counts(database_url: str, clean_registry: sa.Engine) -> None:
    for d in DEMO_SOURCES:
        args = ["import", str(d.path), "--source", d.source, "--mapping", str(d.mapping_path)]
        if d.skip_invalid:
            args.append("--skip-invalid")
        res = _carteco(database_url, *args)
        assert res.returncode == 0, res.stderr
        assert "créées" in res.stdout and "inchangées" in res.stdout, res.stdout
    res = _carteco(
        database_url,
        "import",
        str(DEMO_SOURCES[0].path),
        "--source",
        "siae-2019",
        "--mapping",
        str(DEMO_SOURCES[0].mapping_path),
    )
    assert "créées 0 · mises à jour 0" in res.stdout


def test_import_error_exit_code_and_message(database_url: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("nom,siret\nA,12345678901234\n", encoding="utf-8")
    res = _carteco(database_url, "import", str(bad), "--source", "bad")
    assert res.returncode == 1
    assert "bad.csv, ligne 2, colonne « siret »" in res.stderr
    assert "Traceback" not in res.stderr


def test_missing_schema_is_a_clear_error(tmp_path: Path) -> None:
    from tests.conftest import create_database, drop_database

    url = create_database("carteco_cli")
    try:
        res = _carteco(url, "import", str(DEMO_SOURCES[0].path))
        assert res.returncode == 2 and "carteco db upgrade" in res.stderr
    finally:
        drop_database(url)
