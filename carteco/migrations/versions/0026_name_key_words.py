"""`carteco_name_key` drops its stop words by filtering words, not with one regular expression.

The key (0019, 0021) removed legal-form and article words with a 40-way alternation matched
at every space, and the key is computed for every new or renamed structure (a bulk INSERT
computes it for each of its rows). The normalised text is already words separated by single
spaces (`[^a-z0-9]+` → ' '), so the same key is the words that are not in the list, joined by
one space; when none is left, the whole normalised text, as before. Same results (0 differences
over the names, addresses and communes of the 1,000,000-row bench file and over every
territory name), 1.6× faster on a quiet machine (1,000,000 names: 7.6 s → 4.8 s, interleaved).

Revision ID: 0026_name_key_words
Revises: 0025_contrats_ville
Create Date: 2026-12-01
"""

from alembic import op

revision = "0026_name_key_words"
down_revision = "0025_contrats_ville"
branch_labels = None
depends_on = None

_WORDS = (
    "assoc,association,asso,ass,sarl,sas,sasu,sa,scop,scic,sca,eurl,sci,gie,ste,societe,"
    "cooperative,coop,fondation,mutuelle,ets,etablissement,etablissements,"
    "l,la,le,les,un,une,de,des,du,d,et,a,au,aux,en,sur,pour,the"
)

_WORD_FILTER = f"""
CREATE OR REPLACE FUNCTION carteco_name_key(t text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
SELECT coalesce(
    nullif(array_to_string(ARRAY(
        SELECT w FROM unnest(string_to_array(btrim(s.n), ' ')) AS w
         WHERE w <> ALL ('{{{_WORDS}}}'::text[])), ' '), ''),
    btrim(s.n))
  FROM (SELECT regexp_replace(lower(public.unaccent('public.unaccent'::regdictionary,
                                                   coalesce(t, ''))),
                              '[^a-z0-9]+', ' ', 'g') AS n) s
$$;
"""  # noqa: S608 - migration DDL from module constants

# 0021's body, for the downgrade.
_ALTERNATION = f"""
CREATE OR REPLACE FUNCTION carteco_name_key(t text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
SELECT coalesce(
    nullif(btrim(regexp_replace(regexp_replace(
        ' ' || regexp_replace(lower(public.unaccent('public.unaccent'::regdictionary,
                                                   coalesce(t, ''))),
                              '[^a-z0-9]+', ' ', 'g') || ' ',
        ' (?\\:(?\\:{_WORDS.replace(",", "|")}) )+', ' ', 'g'),
        ' +', ' ', 'g')), ''),
    btrim(regexp_replace(lower(public.unaccent('public.unaccent'::regdictionary,
                                               coalesce(t, ''))), '[^a-z0-9]+', ' ', 'g')))
$$;
"""  # noqa: S608 - migration DDL from module constants


def upgrade() -> None:
    """Replace the stop-word regular expression by a word filter."""
    op.execute(_WORD_FILTER)


def downgrade() -> None:
    """Back to 0021's regular expression."""
    op.execute(_ALTERNATION)
