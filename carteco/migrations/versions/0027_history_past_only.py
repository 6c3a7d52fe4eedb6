"""History keeps the past only: a structure's current state is its row, as in SQL:2011 system versioning.

0016 stored every state of a structure in `structure_versions`, the current one included: each
structure written twice (its row, and the same row as JSON), so a first import of 1,000,000
structures wrote 1.5 GB of versions (1,278 bytes each, three times the table) and built three
more indexes over them — a third of the bulk path's time, for a copy of what `structures` holds.

Now, as system-versioned tables do (SQL:2011, MariaDB, the temporal_tables extension):
- `structures` carries the period start and the author of its current state: `valid_from`
  (set with `version` by the touch trigger when the content changes, default now()),
  `changed_by` and `import_run_id` (defaults: the session settings `carteco.changed_by` and
  `carteco.import_run_id` that writers SET LOCAL, as before; set again on each change);
- `structure_past_versions` holds the states that ended, [valid_from, valid_to), valid_to never
  null: the UPDATE and DELETE statement triggers move the old rows there (a state begun in the
  same transaction is not kept: no zero-length period, as before). An INSERT writes nothing to
  the history: the new row is its own current state;
- `structure_versions` is now a view with 0016's columns and rows, every state, current ones
  included (id null): readers of 0016's table see the same thing.

Existing current versions move into `structures` (their start, author and run): every `as_of`
answer is the same before and after.

Revision ID: 0027_history_past_only
Revises: 0026_name_key_words
Create Date: 2026-12-01
"""

from alembic import op

from carteco.migrations.earlier import function_sql

revision = "0027_history_past_only"
down_revision = "0026_name_key_words"
branch_labels = None
depends_on = None

# The columns saying when and by whom the current state began: kept in the version row's own
# columns, not in its `data`.
_PROVENANCE = "'valid_from', 'changed_by', 'import_run_id'"
_WHO = "nullif(current_setting('carteco.changed_by', true), '')"
_RUN = "nullif(current_setting('carteco.import_run_id', true), '')::bigint"

UPGRADE = rf"""
ALTER TABLE structures
    ADD COLUMN valid_from timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN changed_by text DEFAULT {_WHO},
    ADD COLUMN import_run_id bigint DEFAULT {_RUN};

-- The current versions move into their rows (no trigger: nothing changes but where it is).
ALTER TABLE structures DISABLE TRIGGER structures_touch;
ALTER TABLE structures DISABLE TRIGGER structures_history_upd;
ALTER TABLE structures DISABLE TRIGGER structures_tiles_upd;
UPDATE structures s
   SET valid_from = v.valid_from, changed_by = v.changed_by, import_run_id = v.import_run_id
  FROM structure_versions v
 WHERE v.structure_id = s.id AND v.valid_to IS NULL;
ALTER TABLE structures ENABLE TRIGGER structures_touch;
ALTER TABLE structures ENABLE TRIGGER structures_history_upd;
ALTER TABLE structures ENABLE TRIGGER structures_tiles_upd;
DELETE FROM structure_versions WHERE valid_to IS NULL;

ALTER TABLE structure_versions RENAME TO structure_past_versions;
ALTER SEQUENCE structure_versions_id_seq RENAME TO structure_past_versions_id_seq;
ALTER INDEX structure_versions_pkey RENAME TO structure_past_versions_pkey;
DROP INDEX structure_versions_current_idx;
ALTER INDEX structure_versions_structure_idx RENAME TO structure_past_versions_structure_idx;
ALTER INDEX structure_versions_period_idx RENAME TO structure_past_versions_period_idx;
ALTER INDEX structure_versions_geom_idx RENAME TO structure_past_versions_geom_idx;
ALTER TABLE structure_past_versions
    DROP CONSTRAINT structure_versions_check,
    ALTER COLUMN valid_to SET NOT NULL,
    ADD CONSTRAINT structure_past_versions_check CHECK (valid_to >= valid_from);

-- A version's data: every column but the geometry, the search vector and the provenance.
CREATE OR REPLACE FUNCTION carteco_structure_version_columns(alias text) RETURNS text
LANGUAGE sql STABLE AS $$
SELECT string_agg(
           CASE WHEN a.atttypid = 'geometry'::regtype
                THEN format('CAST(CAST(%s.%I AS json) AS jsonb) AS %I', alias, a.attname,
                            a.attname)
                ELSE format('%s.%I', alias, a.attname) END,
           ', ' ORDER BY a.attnum)
  FROM pg_attribute a
 WHERE a.attrelid = 'structures'::regclass AND a.attnum > 0 AND NOT a.attisdropped
   AND a.attname NOT IN ('search', 'geom', {_PROVENANCE})
$$;

-- A content change starts a new state: a new version, its instant and its author.
CREATE OR REPLACE FUNCTION carteco_touch_structure() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Generated columns are not computed yet in a BEFORE trigger: compare without them.
    IF to_jsonb(NEW) - 'search' - 'updated_at' - 'version' - {_PROVENANCE.replace(", ", " - ")}
       IS DISTINCT FROM
       to_jsonb(OLD) - 'search' - 'updated_at' - 'version' - {_PROVENANCE.replace(", ", " - ")}
    THEN
        NEW.updated_at := now();
        NEW.version := OLD.version + 1;
        NEW.valid_from := now();
        NEW.changed_by := {_WHO};
        NEW.import_run_id := {_RUN};
    END IF;
    RETURN NEW;
END $$;

-- The states that ended: the old rows of an UPDATE that changed them, of a DELETE.
CREATE OR REPLACE FUNCTION carteco_structures_history() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        EXECUTE format(
            'INSERT INTO structure_past_versions (structure_id, valid_from, valid_to, data,
                                                  geom, changed_by, import_run_id)
             SELECT o.id, o.valid_from, now(), to_jsonb(x), o.geom, o.changed_by,
                    o.import_run_id
               FROM old_rows o CROSS JOIN LATERAL (SELECT %s) x
              WHERE o.valid_from < now()',
            carteco_structure_version_columns('o'));
    ELSE
        -- Only the rows whose content changed (the touch trigger bumped their version), and
        -- not a state begun in this transaction.
        EXECUTE format(
            'INSERT INTO structure_past_versions (structure_id, valid_from, valid_to, data,
                                                  geom, changed_by, import_run_id)
             SELECT o.id, o.valid_from, now(), to_jsonb(x), o.geom, o.changed_by,
                    o.import_run_id
               FROM old_rows o JOIN new_rows n ON n.id = o.id
                    CROSS JOIN LATERAL (SELECT %s) x
              WHERE n.version <> o.version AND o.valid_from < now()',
            carteco_structure_version_columns('o'));
    END IF;
    RETURN NULL;
END $$;

DROP TRIGGER structures_history_ins ON structures;
DROP FUNCTION carteco_record_structure_versions(bigint[]);

CREATE OR REPLACE FUNCTION carteco_structures_history_truncated() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE structure_past_versions RESTART IDENTITY;
    RETURN NULL;
END $$;

-- Every state, 0016's shape: the past versions and the current rows (id null). The current
-- rows' data from the whole row, so that a column added later (or by the 0002 branch, which
-- may run after this one) is listed too; per structure, its cost does not matter.
CREATE VIEW structure_versions AS
SELECT p.id, p.structure_id, p.valid_from, p.valid_to, p.data, p.geom, p.changed_by,
       p.import_run_id
  FROM structure_past_versions p
UNION ALL
SELECT NULL::bigint, s.id, s.valid_from, NULL::timestamptz,
       to_jsonb(s) - 'search' - 'geom' - {_PROVENANCE.replace(", ", " - ")}, s.geom,
       s.changed_by, s.import_run_id
  FROM structures s;
"""  # noqa: S608 - migration DDL from module constants

# Back to one table of every state (0016's), the current ones rebuilt from the rows; the
# functions as 0001, 0016 and 0021 wrote them are put back by downgrade().
DOWNGRADE = r"""
DROP VIEW structure_versions;
ALTER TABLE structure_past_versions
    DROP CONSTRAINT structure_past_versions_check,
    ALTER COLUMN valid_to DROP NOT NULL,
    ADD CONSTRAINT structure_versions_check CHECK (valid_to IS NULL OR valid_to >= valid_from);
ALTER TABLE structure_past_versions RENAME TO structure_versions;
ALTER SEQUENCE structure_past_versions_id_seq RENAME TO structure_versions_id_seq;
ALTER INDEX structure_past_versions_pkey RENAME TO structure_versions_pkey;
ALTER INDEX structure_past_versions_structure_idx RENAME TO structure_versions_structure_idx;
ALTER INDEX structure_past_versions_period_idx RENAME TO structure_versions_period_idx;
ALTER INDEX structure_past_versions_geom_idx RENAME TO structure_versions_geom_idx;
CREATE UNIQUE INDEX structure_versions_current_idx ON structure_versions (structure_id)
    WHERE valid_to IS NULL;
DO $$
BEGIN
    EXECUTE format(
        'INSERT INTO structure_versions (structure_id, valid_from, data, geom, changed_by,
                                         import_run_id)
         SELECT s.id, s.valid_from, to_jsonb(x), s.geom, s.changed_by, s.import_run_id
           FROM structures s CROSS JOIN LATERAL (SELECT %s) x ORDER BY s.id',
        carteco_structure_version_columns('s'));
END $$;
ALTER TABLE structures DROP COLUMN valid_from, DROP COLUMN changed_by,
                       DROP COLUMN import_run_id;
"""  # noqa: S608 - migration DDL from module constants


def upgrade() -> None:
    """Current states in `structures`, ended ones in structure_past_versions, the view."""
    op.execute(UPGRADE)


def downgrade() -> None:
    """Back to 0021's history: every state in the structure_versions table."""
    from importlib import import_module

    m = import_module("carteco.migrations.versions.0021_bulk_speed")
    op.execute(DOWNGRADE)
    op.execute(function_sql("0021_bulk_speed", "carteco_structure_version_columns"))
    op.execute(function_sql("0001_initial", "carteco_touch_structure"))
    op.execute(function_sql("0016_history", "carteco_structures_history_truncated"))
    # 0021's recording function and history trigger function, and the INSERT trigger.
    op.execute(m._RECORD.format(insert_s=m._NEW_INSERT_S, insert_n=m._NEW_INSERT_N))
    op.execute(
        """
        CREATE TRIGGER structures_history_ins AFTER INSERT ON structures
            REFERENCING NEW TABLE AS new_rows
            FOR EACH STATEMENT EXECUTE FUNCTION carteco_structures_history();
        """
    )
