"""The schema has one description, carteco.models.metadata, and the migrations agree with it.

Two checks on real PostGIS databases. `alembic check` compares the migrated database with the
metadata (tables, columns, types, geometry type and SRID, nullability, server defaults,
identities, keys, indexes by name and columns). Alembic does not compare what PostgreSQL
alone knows well: CHECK constraints, generated-column expressions, index methods (gist, gin),
operator classes and partial-index predicates. So the metadata is also built with
`create_all` in an empty database, and the two catalogs, as PostgreSQL itself prints them,
must be identical.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from alembic import command

from carteco import db
from carteco.models import metadata
from tests.conftest import create_database, drop_database

# Not Carteco's: PostGIS's SRID catalogue and Alembic's own revision table.
NOT_OURS = ("spatial_ref_sys", "alembic_version")

CATALOG = {
    "column": """
        SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               pg_get_expr(d.adbin, d.adrelid), a.attidentity, a.attgenerated
          FROM pg_attribute a
          JOIN pg_class c ON c.oid = a.attrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
          LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         WHERE n.nspname = 'public' AND c.relkind = 'r' AND a.attnum > 0
           AND NOT a.attisdropped AND c.relname <> ALL(:not_ours)
    """,
    "constraint": """
        SELECT c.relname, k.conname, k.contype, pg_get_constraintdef(k.oid)
          FROM pg_constraint k
          JOIN pg_class c ON c.oid = k.conrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'public' AND c.relname <> ALL(:not_ours)
    """,
    "index": """
        SELECT tablename, indexname, indexdef FROM pg_indexes
         WHERE schemaname = 'public' AND tablename <> ALL(:not_ours)
    """,
}


def _catalog(url: str) -> dict[str, set[tuple[object, ...]]]:
    eng = sa.create_engine(url)
    try:
        with eng.connect() as conn:
            return {
                kind: {tuple(r) for r in conn.execute(sa.text(sql), {"not_ours": list(NOT_OURS)})}
                for kind, sql in CATALOG.items()
            }
    finally:
        eng.dispose()


@pytest.fixture(scope="module")
def built_from_metadata() -> Iterator[str]:
    """An empty PostGIS database where metadata.create_all made the tables."""
    url = create_database("carteco_schema")
    eng = sa.create_engine(url)
    try:
        with eng.begin() as conn:
            # The trigram indexes' operator class; the migrations create the same extension.
            conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
            metadata.create_all(conn)
        eng.dispose()
        yield url
    finally:
        eng.dispose()
        drop_database(url)


def test_alembic_check_finds_no_difference(database_url: str) -> None:
    # Alembic warns (instead of failing) on differences it cannot express as an operation,
    # e.g. a generated column's expression: those are differences too.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        command.check(db.alembic_config(database_url))
    alembic_warnings = [str(w.message) for w in caught if "alembic" in w.filename]
    assert not alembic_warnings


def test_metadata_covers_every_migrated_table(database_url: str) -> None:
    eng = sa.create_engine(database_url)
    try:
        tables = set(sa.inspect(eng).get_table_names()) - set(NOT_OURS)
    finally:
        eng.dispose()
    assert tables == set(metadata.tables)
    # A floor, not a count: every wave adds tables; losing the core ones is the failure.
    assert {"structures", "structure_sources", "audit_log", "proposals"} <= tables


@pytest.mark.parametrize("kind", sorted(CATALOG))
def test_metadata_builds_the_migrated_catalog(
    database_url: str, built_from_metadata: str, kind: str
) -> None:
    migrated = _catalog(database_url)[kind]
    built = _catalog(built_from_metadata)[kind]
    assert migrated, kind
    only_migrated = sorted(migrated - built, key=str)
    only_built = sorted(built - migrated, key=str)
    assert not only_migrated and not only_built, (
        f"{kind} rows differ\n  migrations only: {only_migrated}\n  metadata only:   {only_built}"
    )
