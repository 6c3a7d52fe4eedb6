"""Earlier revisions' SQL, for downgrades that put back a function as an earlier one wrote it."""

from __future__ import annotations

import re
from importlib import import_module


def function_sql(revision: str, name: str, attribute: str = "UPGRADE") -> str:
    """`CREATE OR REPLACE FUNCTION name(…)` exactly as revision `revision` created it.

    `attribute`: the module constant holding that SQL (its UPGRADE, unless it says otherwise).
    """
    text: str = getattr(import_module(f"carteco.migrations.versions.{revision}"), attribute)
    found = re.search(rf"CREATE (?:OR REPLACE )?FUNCTION {re.escape(name)}\(", text)
    if found is None:
        raise LookupError(f"{name} is not created in {revision}.{attribute}")
    body = text.index("$$", found.start())  # `AS $$`: the body runs to the next `$$`
    end = text.index("$$;", body + 2) + len("$$;")
    return "CREATE OR REPLACE FUNCTION " + text[found.end() - len(name) - 1 : end]
