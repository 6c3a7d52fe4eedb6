"""The import contract: imports point inward, and the core has no import cycle.

Layers, outermost first: `api` and the command line (`carteco.cli`) → `tiles`, `geodata` →
the core (the rest of `carteco`). Every `import` statement of every module is read from its
syntax tree — function-local ones and `if TYPE_CHECKING:` ones included — so a lazy import
cannot hide a dependency. No new dependency: the standard library's `ast` does it.
"""

from __future__ import annotations

import ast
import io
import re
import tempfile
import tokenize
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("carteco", "api", "tiles", "geodata")
CLI = "carteco.cli"
# What the core must never import: the outer layers and the frameworks they are built on.
CORE_FORBIDDEN = (CLI, "api", "tiles", "geodata", "fastapi", "starlette", "typer", "rich")
MIDDLE_FORBIDDEN = (CLI, "api")  # tiles and geodata: the core, never the outer layers


@dataclass(frozen=True)
class Import:
    """One imported module, where it is imported and whether inside a function."""

    source: str  # importing module
    target: str  # imported module (resolved to a project submodule when it is one)
    path: Path
    line: int
    end_line: int
    local: bool  # inside a function body


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> dict[str, Path]:
    return {
        _module_name(p): p
        for pkg in PACKAGES
        for p in sorted((ROOT / pkg).rglob("*.py"))
        if "vendor" not in p.parts
    }


MODULES = _sources()


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _is_project(name: str) -> bool:
    return any(_within(name, pkg) for pkg in PACKAGES)


def _is_core(name: str) -> bool:
    return _within(name, "carteco") and not _within(name, CLI)


def _imports_of(module: str, path: Path) -> Iterator[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]

    def visit(node: ast.AST, local: bool) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            inner = local or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            end = getattr(child, "end_lineno", None) or getattr(child, "lineno", 0)
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield Import(module, alias.name, path, child.lineno, end, local)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:  # relative: resolve against the importing package
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - (child.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                for alias in child.names:
                    # `from carteco import db` imports the module carteco.db.
                    sub = f"{base}.{alias.name}"
                    target = sub if sub in MODULES else base
                    yield Import(module, target, path, child.lineno, end, local)
            yield from visit(child, inner)

    yield from visit(tree, False)


IMPORTS = [imp for module, path in MODULES.items() for imp in _imports_of(module, path)]


def _where(imp: Import) -> str:
    return f"{imp.path.relative_to(ROOT)}:{imp.line}: {imp.source} imports {imp.target}"


def _report(title: str, found: list[str]) -> str:
    return title + ":\n" + "\n".join(sorted(set(found)))


def test_the_walk_sees_every_layer() -> None:
    # Guards the test itself: a broken walk would make every rule below pass vacuously.
    assert {"carteco.cli", "carteco.cli.common", "carteco.db", "api.factory"} <= MODULES.keys()
    assert {"tiles.export", "geodata.loader"} <= MODULES.keys()
    targets = {(i.source, i.target) for i in IMPORTS}
    assert ("carteco.cli.tiles", "tiles.export") in targets
    assert ("api.factory", "carteco.db") in targets
    assert any(i.local for i in IMPORTS)


def test_the_core_imports_no_outer_layer_nor_framework() -> None:
    bad = [
        _where(i)
        for i in IMPORTS
        if _is_core(i.source) and any(_within(i.target, f) for f in CORE_FORBIDDEN)
    ]
    assert not bad, _report("the core (carteco without carteco.cli) must stay inward", bad)


def test_the_core_reads_no_file_of_the_outer_layers() -> None:
    """No import, and no path either: a file built as `… / "api" / …` is a dependency too."""
    outward = re.compile(r"""/\s*["'](api|tiles)["']\s*/""")
    bad = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in sorted((ROOT / "carteco").rglob("*.py"))
        if "cli" not in path.relative_to(ROOT / "carteco").parts
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if outward.search(line)
    ]
    assert not bad, f"the core builds paths into api/ or tiles/: {bad}"


def test_tiles_and_geodata_import_only_inward() -> None:
    bad = [
        _where(i)
        for i in IMPORTS
        if (_within(i.source, "tiles") or _within(i.source, "geodata"))
        and any(_within(i.target, f) for f in MIDDLE_FORBIDDEN)
    ]
    assert not bad, _report("tiles and geodata may import the core, never api or the CLI", bad)


def test_nothing_imports_the_command_line() -> None:
    bad = [_where(i) for i in IMPORTS if _within(i.target, CLI) and not _within(i.source, CLI)]
    assert not bad, _report("the command line is an outer layer; nothing imports it", bad)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def test_cycle_detection_finds_a_circle() -> None:
    # The detector itself, on the shape of the former diagnostics circle.
    graph = {"engine": {"rules", "options"}, "rules": {"engine"}, "options": set()}
    assert _cycles(graph) == [["engine", "rules"]]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_no_import_cycle() -> None:
    # Between any two modules of carteco, api, tiles and geodata (the core's included). A
    # package importing its own submodules (carteco.land → carteco.land.importers) is not a
    # cycle; a submodule importing its package back, or two modules importing each other, is.
    graph: dict[str, set[str]] = {}
    for i in IMPORTS:
        if i.target in MODULES and i.target != i.source:
            graph.setdefault(i.source, set()).add(i.target)
    assert not _cycles(graph), f"import cycles: {_cycles(graph)}"


def _commented_lines(path: Path) -> set[int]:
    tokens = tokenize.generate_tokens(io.StringIO(path.read_text(encoding="utf-8")).readline)
    return {tok.start[0] for tok in tokens if tok.type == tokenize.COMMENT}


def test_function_local_project_imports_say_why() -> None:
    # A lazy import of a project module is either a hidden circle or a deliberate choice
    # (start-up time of a heavy optional module): the latter says so on its line.
    comments = {path: _commented_lines(path) for path in MODULES.values()}
    bad = [
        _where(i)
        for i in IMPORTS
        if i.local
        and _is_project(i.target)
        and not any(n in comments[i.path] for n in range(i.line, i.end_line + 1))
    ]
    assert not bad, _report("function-local project imports without a comment saying why", bad)


def test_no_import_after_code() -> None:
    # Silencing E402 (import after code) was how the command line hid its circle.
    bad = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in MODULES.values()
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if re.search(r"noqa:[^#]*\bE402\b", line)
    ]
    assert not bad, bad


# -- SQL lives in the core ----------------------------------------------------------------------

# A statement in a string literal (f-string parts included): uppercase keywords, as the project
# writes SQL. HTTP verbs alone ("DELETE") or French prose do not match.
SQL_STATEMENT = re.compile(
    r"\bSELECT\b[\s\S]*\bFROM\b|\bINSERT\s+INTO\b|\bUPDATE\s+\w+\s+SET\b|\bDELETE\s+FROM\b"
    r"|\b(?:CREATE|ALTER|DROP|TRUNCATE)\s+(?:TABLE|INDEX|VIEW|SCHEMA|EXTENSION)\b"
    r"|\bST_\w+\s*\(|\s=\s*:[A-Za-z_]\w*"  # a PostGIS function, a bound parameter
)
# What an outer module may use of SQLAlchemy: its exceptions and the Connection/Engine types.
SQLALCHEMY_ALLOWED = {"exc", "engine", "Engine", "Connection"}
# Methods that run SQL (on a Connection, a Session, a DB-API cursor).
EXECUTING = {"execute", "exec_driver_sql", "executemany", "executescript", "scalar", "scalars"}


def _is_outer(module: str) -> bool:
    return _within(module, "api") or _within(module, CLI)


def _sql_findings(path: Path) -> Iterator[str]:
    """Where a module writes or runs SQL itself: SQLAlchemy's SQL builders, an execute call,
    a SQL statement in a string, a `.sql` file name."""
    where = path.relative_to(ROOT)
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    aliases: set[str] = set()  # names bound to the sqlalchemy module
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "sqlalchemy":
                    aliases.add(alias.asname or alias.name)
                elif _within(alias.name, "sqlalchemy"):
                    if alias.name.split(".")[1] not in SQLALCHEMY_ALLOWED:
                        yield f"{where}:{node.lineno}: imports {alias.name}"
        elif isinstance(node, ast.ImportFrom) and _within(node.module or "", "sqlalchemy"):
            parts = (node.module or "").split(".")
            names = [parts[1]] if len(parts) > 1 else [a.name for a in node.names]
            for name in names:
                if name not in SQLALCHEMY_ALLOWED:
                    yield f"{where}:{node.lineno}: imports {name} from {node.module}"
        elif isinstance(node, ast.Attribute):
            if isinstance(node.value, ast.Name) and node.value.id in aliases:
                if node.attr not in SQLALCHEMY_ALLOWED:
                    yield f"{where}:{node.lineno}: uses {node.value.id}.{node.attr}"
            if node.attr in EXECUTING:
                yield f"{where}:{node.lineno}: calls .{node.attr}(…)"
        elif isinstance(node, ast.JoinedStr):  # an f-string: its literal parts, joined
            text = "".join(v.value if isinstance(v, ast.Constant) else "x" for v in node.values)
            if SQL_STATEMENT.search(text):
                yield f"{where}:{node.lineno}: SQL in a string: {text[:60]!r}"
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if SQL_STATEMENT.search(node.value):
                yield f"{where}:{node.lineno}: SQL in a string: {node.value[:60]!r}"
            if node.value.strip().endswith(".sql"):
                yield f"{where}:{node.lineno}: names a .sql file: {node.value!r}"
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id in ("read_sql", "text"):
                yield f"{where}:{node.lineno}: calls {node.func.id}(…)"


def test_the_sql_rule_sees_sql() -> None:
    # Guards the rule below: each way of writing SQL in a route is caught.
    samples = {
        "import sqlalchemy as sa\nq = sa.text('x')\n": "uses sa.text",
        "from sqlalchemy import select\n": "imports select",
        "def f(conn):\n    conn.execute(q)\n": "calls .execute",
        "q = 'SELECT id FROM structures'\n": "SQL in a string",
        "q = f'UPDATE {t} SET a = 1'\n": "SQL in a string",
        "n = 'ST_Extent(geom)'\n": "SQL in a string",
        "w = f'({w} AND {col} = :_code)'\n": "SQL in a string",
        "p = 'extent.sql'\n": "names a .sql file",
        "import sqlalchemy as sa\ntry:\n    pass\nexcept sa.exc.DBAPIError:\n    pass\n": "",
        "from sqlalchemy.engine import Connection\nmethods = ['GET', 'DELETE']\n": "",
    }
    with tempfile.TemporaryDirectory(dir=ROOT / "tests") as tmp:
        for i, (source, expected) in enumerate(samples.items()):
            path = Path(tmp) / f"sample{i}.py"
            path.write_text(source, encoding="utf-8")
            found = " ".join(_sql_findings(path))
            assert (expected in found) if expected else not found, (source, found)


def test_no_sql_in_api_nor_cli() -> None:
    # SQL lives in the core (query modules and their sql/ folders) or in tiles: the routes and
    # the commands call a function that takes a connection.
    bad = [f for m, p in MODULES.items() if _is_outer(m) for f in _sql_findings(p)]
    assert not bad, _report("SQL in api/ or carteco/cli/ (move it to a core module)", bad)


def test_absolute_urls_start_in_one_place() -> None:
    # Links, Location headers, TileJSON: every absolute URL starts from api.urls.public_base
    # (public_url, or a checked Host), never from the request's own base URL.
    bad = [
        f"{path.relative_to(ROOT)}:{node.lineno}: {node.attr}"
        for module, path in MODULES.items()
        if _within(module, "api") and module != "api.urls"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Attribute) and node.attr in ("base_url", "url_for")
    ]
    assert not bad, _report("absolute URLs built outside api/urls.py", bad)
