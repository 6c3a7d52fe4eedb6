"""`carteco_name_key` in PL/pgSQL: the same keys without a SQL function's per-call executor.

0026's key is a SQL function whose body has a FROM clause and a sub-select: PostgreSQL cannot
inline it, and runs a small executor for each call. The bulk path calls it once per new
structure (and the duplicate search on names and addresses): a million names took 4.8 s,
half of it that call overhead (the same expression written inline takes 2.4 s). The same
steps in PL/pgSQL, the stop words filtered in a loop of simple expressions: 2.7 s for the
same million names. Same keys: 0 differences over the bench file's 1,000,000 names,
addresses and commune names, the 36,264 territory names, and random strings of letters,
accents, ligatures, digits, punctuation and spaces.

Revision ID: 0029_name_key_loop
Revises: 0028_tile_grid_first_load
Create Date: 2026-12-01
"""

from importlib import import_module

from alembic import op

from carteco.migrations.earlier import function_sql

revision = "0029_name_key_loop"
down_revision = "0028_tile_grid_first_load"
branch_labels = None
depends_on = None

# The stop words: 0026's list (0019's), one list for every version of the key.
_WORDS: str = import_module("carteco.migrations.versions.0026_name_key_words")._WORDS

UPGRADE = f"""
CREATE OR REPLACE FUNCTION carteco_name_key(t text) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    -- Lower case, no accents, every run of other characters one space.
    n text := btrim(regexp_replace(lower(public.unaccent('public.unaccent'::regdictionary,
                                                        coalesce(t, ''))),
                                   '[^a-z0-9]+', ' ', 'g'));
    w text;
    kept text := '';
BEGIN
    FOREACH w IN ARRAY string_to_array(n, ' ') LOOP
        IF w <> ALL ('{{{_WORDS}}}'::text[]) THEN
            kept := kept || ' ' || w;
        END IF;
    END LOOP;
    -- Nothing but stop words: the whole normalised text.
    RETURN CASE WHEN kept = '' THEN n ELSE substr(kept, 2) END;
END $$;
"""  # noqa: S608 - migration DDL from module constants


def upgrade() -> None:
    """The PL/pgSQL key."""
    op.execute(UPGRADE)


def downgrade() -> None:
    """Back to 0026's SQL function (CREATE OR REPLACE: the language may change)."""
    op.execute(function_sql("0026_name_key_words", "carteco_name_key", "_WORD_FILTER"))
