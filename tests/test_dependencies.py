"""Every dependency declared in pyproject.toml is used, and every import is declared.

A dependency is used when its module is imported where the group serves: the runtime group in
the shipped packages, `dev` in tests/, `bench` in bench/. A few are used without an import of
their own (a plugin, a tool, a library another one loads); each is listed in USED_WITHOUT_IMPORT
with the file and text that show the use, and the test checks that text is still there.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
RUNTIME_DIRS = ("carteco", "api", "tiles", "geodata")
GROUP_DIRS = {"runtime": RUNTIME_DIRS, "dev": ("tests",), "bench": ("bench",)}

# Distribution name → top-level module, where they differ beyond case and "-" vs "_"
# (extras are dropped: psycopg[binary] → psycopg, uvicorn[standard] → uvicorn).
IMPORT_NAMES = {
    "python-multipart": "multipart",
    "pytest-xdist": "xdist",
    "pytest-timeout": "pytest_timeout",
}

# Used without being imported by name: (file or folder, text showing the use, why).
USED_WITHOUT_IMPORT: dict[str, tuple[str, str, str]] = {
    "geopandas": (
        "carteco/export.py",
        "pyogrio.read_dataframe",
        "pyogrio's dataframe reader and writer build and take GeoDataFrames",
    ),
    "python-multipart": (
        "api",
        "File(",
        "FastAPI parses multipart bodies (File/Form parameters) with it",
    ),
    "pytest-xdist": ("scripts/test.sh", "pytest -n", "the test runner's -n workers"),
    "pytest-timeout": ("pyproject.toml", "\ntimeout = ", "a hung test fails instead of hanging CI"),
    "ruff": ("scripts/test.sh", "ruff check", "lint and format check, a command"),
    "mypy": ("scripts/test.sh", "\nmypy", "type check, a command"),
    "addok-fr": ("bench/geocoding/addok_config.py", "addok_fr.", "addok plugin, by dotted name"),
    "addok-france": (
        "bench/geocoding/addok_config.py",
        "addok_france.",
        "addok plugin, by dotted name",
    ),
}

# Modules imported directly that a declared dependency installs and documents as its API.
PROVIDED_BY = {
    "starlette": "fastapi",  # FastAPI is built on Starlette and documents importing from it
    "anyio": "fastapi",  # Starlette's concurrency layer, used for the streaming responses
}


def _dist_name(requirement: str) -> str:
    """`uvicorn[standard]>=0.30` → `uvicorn` (normalised, lowercase)."""
    name = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert name, requirement
    return re.sub(r"[-_.]+", "-", name.group(0)).lower()


def _declared() -> dict[str, list[str]]:
    project = PYPROJECT["project"]
    extras = project["optional-dependencies"]
    return {
        "runtime": [_dist_name(r) for r in project["dependencies"]],
        "dev": [_dist_name(r) for r in extras["dev"]],
        "bench": [_dist_name(r) for r in extras["bench"]],
    }


def _imports(dirs: tuple[str, ...]) -> dict[str, Path]:
    """Top-level modules imported (absolute imports) by the .py files under `dirs`."""
    found: dict[str, Path] = {}
    for d in dirs:
        for path in sorted((ROOT / d).rglob("*.py")):
            if ".venv" in path.parts or "node_modules" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    found.setdefault(name.split(".")[0], path)
    return found


def _module(dist: str) -> str:
    return IMPORT_NAMES.get(dist, dist.replace("-", "_"))


def test_every_declared_dependency_is_used() -> None:
    unused = []
    for group, dists in _declared().items():
        imported = _imports(GROUP_DIRS[group])
        for dist in dists:
            if dist in USED_WITHOUT_IMPORT:
                continue
            if _module(dist) not in imported:
                unused.append(f"{dist} ({group}: no `import {_module(dist)}`)")
    assert not unused, f"declared but never used: {unused}"


def test_uses_without_import_are_still_there() -> None:
    declared = {d for dists in _declared().values() for d in dists}
    for dist, (file, evidence, why) in USED_WITHOUT_IMPORT.items():
        assert dist in declared, f"{dist} is listed as used ({why}) but no longer declared"
        where = ROOT / file
        files = sorted(where.rglob("*.py")) if where.is_dir() else [where]
        text = "\n".join(f.read_text(encoding="utf-8") for f in files)
        assert evidence in text, f"{dist}: {file} no longer contains {evidence!r} ({why})"


def test_every_runtime_import_is_declared() -> None:
    """Product code imports only the standard library, itself, and declared dependencies."""
    runtime = set(_declared()["runtime"])
    modules = {_module(d): d for d in runtime}
    own = set(RUNTIME_DIRS)
    undeclared = []
    for name, path in sorted(_imports(RUNTIME_DIRS).items()):
        if name in sys.stdlib_module_names or name in own or name == "__future__":
            continue
        if name in modules or PROVIDED_BY.get(name) in runtime:
            continue
        undeclared.append(f"{name} ({path.relative_to(ROOT)})")
    assert not undeclared, f"imported but not a declared runtime dependency: {undeclared}"


def test_import_names_belong_to_their_distribution() -> None:
    """The name mapping agrees with the installed packages' own metadata.

    Runtime and dev groups only: scripts/setup.sh installs those, not the bench extra.
    """
    owners = metadata.packages_distributions()
    declared = _declared()
    for dists in (declared["runtime"], declared["dev"]):
        for dist in dists:
            if dist in USED_WITHOUT_IMPORT and dist not in IMPORT_NAMES:
                continue
            module = _module(dist)
            names = {_dist_name(n) for n in owners.get(module, [])}
            assert dist in names, f"`import {module}` is not provided by {dist} ({names})"
