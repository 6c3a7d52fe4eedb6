"""The documentation is checked: every command and file the README names exists."""

from __future__ import annotations

import re
from pathlib import Path

import click
import typer.main

from carteco.cli import app

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", ROOT / "docs" / "deploy.md", ROOT / "docs" / "architecture.md"]


def _commands() -> click.Group:
    return typer.main.get_command(app)  # type: ignore[return-value]


def test_every_carteco_command_in_the_docs_exists() -> None:
    root = _commands()
    seen = 0
    for doc in DOCS:
        for line in doc.read_text(encoding="utf-8").splitlines():
            for m in re.finditer(r"\bcarteco ((?:[a-z][a-z-]*)(?: [a-z][a-z-]*)?)", line):
                words = m.group(1).split()
                cmd = root.commands.get(words[0])
                assert cmd is not None, f"{doc.name}: unknown command `carteco {words[0]}`"
                if isinstance(cmd, click.Group) and len(words) > 1:
                    assert words[1] in cmd.commands, f"{doc.name}: `carteco {m.group(1)}`"
                seen += 1
    assert seen > 20


def test_every_repository_path_in_the_docs_exists() -> None:
    paths = set()
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for m in re.finditer(
            r"`((?:scripts|tests|bench|docs|geodata|carteco|api|tiles)/[A-Za-z0-9_./-]+)`", text
        ):
            paths.add(m.group(1).rstrip("."))
    assert paths
    missing = [p for p in sorted(paths) if not (ROOT / p).exists()]
    assert not missing, f"paths named in the docs but absent: {missing}"


def test_readme_has_the_two_commands() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "bash scripts/demo.sh" in text and "bash scripts/test.sh" in text
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "scripts/test.sh" in ci
