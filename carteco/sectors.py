"""The sector taxonomy: a versioned data file loaded into the `sectors` table."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from carteco.text import fold

TAXONOMY_FILE = Path(__file__).parent / "data" / "sectors.json"


@dataclass(frozen=True)
class SectorNode:
    """One node of the taxonomy."""

    code: str
    parent: str | None
    kind: str
    label: str
    color: str
    icon: str
    aliases: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class Taxonomy:
    """The whole taxonomy with lookups by code and by label."""

    version: str
    nodes: tuple[SectorNode, ...]
    ignored_labels: frozenset[str]

    def by_code(self) -> dict[str, SectorNode]:
        """Nodes keyed by code."""
        return {n.code: n for n in self.nodes}

    def label_index(self) -> dict[str, str]:
        """Folded label or alias → code."""
        index: dict[str, str] = {}
        for n in self.nodes:
            for text in (n.code, n.label, *n.aliases):
                index.setdefault(fold(text), n.code)
        return index

    def descendants(self, code: str) -> set[str]:
        """`code` and every code below it."""
        out = {code}
        changed = True
        while changed:
            changed = False
            for n in self.nodes:
                if n.parent in out and n.code not in out:
                    out.add(n.code)
                    changed = True
        return out


@lru_cache(maxsize=1)
def load_taxonomy(path: Path = TAXONOMY_FILE) -> Taxonomy:
    """Read the taxonomy data file."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    nodes = tuple(
        SectorNode(
            code=s["code"],
            parent=s.get("parent"),
            kind=s["kind"],
            label=s["label"],
            color=s["color"],
            icon=s["icon"],
            aliases=tuple(s.get("aliases", ())),
        )
        for s in doc["sectors"]
    )
    ignored = frozenset(fold(x) for x in doc.get("ignored_labels", ()))
    return Taxonomy(version=doc["version"], nodes=nodes, ignored_labels=ignored)


def sync_sectors(conn: Connection, taxonomy: Taxonomy | None = None) -> int:
    """Upsert the taxonomy into the `sectors` table; return the number of nodes."""
    tax = taxonomy or load_taxonomy()
    stmt = sa.text(
        """
        INSERT INTO sectors (code, parent_code, kind, label, color, icon, sort_order,
                             taxonomy_version)
        VALUES (:code, :parent, :kind, :label, :color, :icon, :sort_order, :version)
        ON CONFLICT (code) DO UPDATE SET parent_code = EXCLUDED.parent_code,
            kind = EXCLUDED.kind, label = EXCLUDED.label, color = EXCLUDED.color,
            icon = EXCLUDED.icon, sort_order = EXCLUDED.sort_order,
            taxonomy_version = EXCLUDED.taxonomy_version
        """
    )
    # Parents first, so the self-reference holds at every insert.
    conn.execute(
        stmt,
        [
            {
                "code": n.code,
                "parent": n.parent,
                "kind": n.kind,
                "label": n.label,
                "color": n.color,
                "icon": n.icon,
                "sort_order": i,
                "version": tax.version,
            }
            for i, n in enumerate(tax.nodes)
        ],
    )
    return len(tax.nodes)
