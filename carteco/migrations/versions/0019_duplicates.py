"""Duplicates across sources: a normalised name and a Lambert-93 point on every structure,
merges (with a redirect from the merged id) and remembered decisions.

`name_key` is the name without accents, punctuation, articles and legal forms
(ASSOCIATION, SARL, SCOP…), lower case: trigram similarity compares it (GIN index).
`geom_l93` is the point in Lambert-93 (EPSG:2154), so distances are metres and
ST_DWithin uses a GiST index on it (queries reproject their point, never the column).
A BEFORE trigger keeps both up to date, whatever writes the row (import, bulk COPY, PATCH).

Revision ID: 0019_duplicates
Revises: 0018_accounts, 0003_features
Create Date: 2026-12-01
"""

from alembic import op

revision = "0019_duplicates"
# Also after 0003_features: it widens api_tokens' scopes (a merge point of the two branches).
down_revision = ("0018_accounts", "0003_features")
branch_labels = None
depends_on = None

UPGRADE = r"""
CREATE FUNCTION carteco_name_key(t text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
SELECT coalesce(
    nullif(btrim(regexp_replace(regexp_replace(
        ' ' || regexp_replace(lower(public.unaccent('public.unaccent'::regdictionary,
                                                   coalesce(t, ''))),
                              '[^a-z0-9]+', ' ', 'g') || ' ',
        ' ((assoc|association|asso|ass|sarl|sas|sasu|sa|scop|scic|sca|eurl|sci|gie|ste|'
        'societe|cooperative|coop|fondation|mutuelle|ets|etablissement|etablissements|'
        'l|la|le|les|un|une|de|des|du|d|et|a|au|aux|en|sur|pour|the) )+', ' ', 'g'),
        ' +', ' ', 'g')), ''),
    btrim(regexp_replace(lower(public.unaccent('public.unaccent'::regdictionary,
                                               coalesce(t, ''))), '[^a-z0-9]+', ' ', 'g')))
$$;

CREATE FUNCTION carteco_structure_keys() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.name_key := carteco_name_key(NEW.name);
    NEW.geom_l93 := CASE WHEN NEW.geom IS NULL THEN NULL
                         ELSE public.ST_Transform(NEW.geom, 2154) END;
    RETURN NEW;
END $$;

ALTER TABLE structures ADD COLUMN name_key text, ADD COLUMN geom_l93 geometry(Point, 2154);
ALTER TABLE structures DISABLE TRIGGER USER;
UPDATE structures SET name_key = carteco_name_key(name),
       geom_l93 = CASE WHEN geom IS NULL THEN NULL ELSE ST_Transform(geom, 2154) END;
ALTER TABLE structures ENABLE TRIGGER USER;
CREATE TRIGGER structures_keys BEFORE INSERT OR UPDATE OF name, geom ON structures
    FOR EACH ROW EXECUTE FUNCTION carteco_structure_keys();
CREATE INDEX structures_name_key_trgm_idx ON structures USING gin (name_key gin_trgm_ops);
CREATE INDEX structures_l93_idx ON structures USING gist (geom_l93);

-- A structure merged into another: its id answers with a redirect to the survivor.
CREATE TABLE structure_merges (
    merged_id bigint PRIMARY KEY,
    into_id bigint NOT NULL REFERENCES structures(id) ON DELETE CASCADE,
    merged_at timestamptz NOT NULL DEFAULT now(),
    merged_by text,
    snapshot jsonb NOT NULL DEFAULT '{}',
    provenance jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX structure_merges_into_idx ON structure_merges (into_id);

-- Decisions on a candidate pair (smaller id first): never proposed again.
CREATE TABLE duplicate_decisions (
    a_id bigint NOT NULL,
    b_id bigint NOT NULL,
    decision text NOT NULL CHECK (decision IN ('merged', 'kept_apart')),
    decided_at timestamptz NOT NULL DEFAULT now(),
    decided_by text,
    score double precision,
    reasons jsonb NOT NULL DEFAULT '[]',
    PRIMARY KEY (a_id, b_id),
    CHECK (a_id < b_id)
);
CREATE INDEX duplicate_decisions_b_idx ON duplicate_decisions (b_id);

ALTER TABLE api_tokens DROP CONSTRAINT api_tokens_scopes_check;
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_scopes_check
    CHECK (scopes <@ ARRAY['import','edit','admin','moderate']::text[]);
"""

DOWNGRADE = """
UPDATE api_tokens SET scopes = array_remove(scopes, 'moderate');
DELETE FROM api_tokens WHERE scopes = '{}';
ALTER TABLE api_tokens DROP CONSTRAINT api_tokens_scopes_check;
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_scopes_check
    CHECK (scopes <@ ARRAY['import','edit','admin']::text[]);
DROP TABLE IF EXISTS duplicate_decisions;
DROP TABLE IF EXISTS structure_merges;
DROP TRIGGER IF EXISTS structures_keys ON structures;
ALTER TABLE structures DROP COLUMN IF EXISTS geom_l93, DROP COLUMN IF EXISTS name_key;
DROP FUNCTION IF EXISTS carteco_structure_keys();
DROP FUNCTION IF EXISTS carteco_name_key(text);
"""


def upgrade() -> None:
    """Name key and Lambert-93 point (trigger, indexes), merges, decisions, moderate scope."""
    op.execute(UPGRADE)


def downgrade() -> None:
    """Drop the duplicate tables, columns and functions; tokens lose the moderate scope."""
    op.execute(DOWNGRADE)
