"""Earlier revisions' SQL, for downgrades that put back a function as an earlier one wrote it."""

from __future__ import annotations

from importlib import import_module


def function_sql(revision: str, name: str) -> str:
    """`CREATE OR REPLACE FUNCTION name(…)` exactly as revision `revision`'s UPGRADE created it."""
    text: str = import_module(f"carteco.migrations.versions.{revision}").UPGRADE
    start = text.index(f"CREATE FUNCTION {name}(")
    body = text.index("$$", start)  # `AS $$`: the body runs to the next `$$`
    end = text.index("$$;", body + 2) + len("$$;")
    return "CREATE OR REPLACE" + text[start + len("CREATE") : end]
