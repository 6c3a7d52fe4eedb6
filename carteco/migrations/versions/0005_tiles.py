"""Vector tile cache with edit-aware invalidation.

Rendered tiles are cached in `tile_cache`. Statement-level triggers on `structures` delete,
inside the writing transaction, exactly the cached `structures` tiles that cover a changed
point (old and new position, at every zoom, with the render margin), bump a generation
counter and NOTIFY `carteco_tiles`. A render only stores its tile if the generation it saw is
still current, under a share lock, so a render racing an import never caches stale data.

Revision ID: 0005_tiles
Revises: 0001_initial
Create Date: 2026-11-27
"""

from alembic import op

revision = "0005_tiles"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


UPGRADE = r"""
CREATE TABLE tile_cache (
    layer text NOT NULL,
    filter_key text NOT NULL DEFAULT '',
    z smallint NOT NULL,
    x integer NOT NULL,
    y integer NOT NULL,
    data bytea NOT NULL,
    etag text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (layer, z, x, y, filter_key)
);
CREATE INDEX tile_cache_created_idx ON tile_cache (created_at);

-- One row: bumped by every write that invalidates tiles (see the module docstring).
CREATE TABLE tile_cache_state (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    generation bigint NOT NULL DEFAULT 0,
    changed_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO tile_cache_state DEFAULT VALUES;

-- Delete the cached structure tiles covering these 3857 points at zooms 0..maxzoom. The
-- margin (in tile fractions) matches the render buffer, so a point drawn in a neighbour's
-- buffer also invalidates that neighbour.
CREATE FUNCTION carteco_tiles_invalidate(pts geometry[], maxzoom integer DEFAULT 22,
                                         margin double precision DEFAULT 0.015625)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
    origin constant double precision := 20037508.342789244;
BEGIN
    UPDATE tile_cache_state SET generation = generation + 1, changed_at = now();
    IF pts IS NULL OR cardinality(pts) = 0 THEN
        RETURN 0;
    END IF;
    IF cardinality(pts) > 20000 THEN
        -- A bulk load touches most tiles anyway: cheaper to drop the layer's cache.
        DELETE FROM tile_cache WHERE layer = 'structures';
        GET DIAGNOSTICS n = ROW_COUNT;
    ELSE
        WITH p AS (
            SELECT DISTINCT ST_X(g) AS px, ST_Y(g) AS py FROM unnest(pts) AS g WHERE g IS NOT NULL
        ), t AS (
            SELECT DISTINCT zz.z, xs.x, ys.y
              FROM p, generate_series(0, maxzoom) AS zz(z),
                   LATERAL (SELECT 2 * origin / (1 << zz.z) AS size) s,
                   LATERAL generate_series(
                       greatest(0, floor((p.px + origin) / s.size - margin)::int),
                       least((1 << zz.z) - 1, floor((p.px + origin) / s.size + margin)::int)) AS xs(x),
                   LATERAL generate_series(
                       greatest(0, floor((origin - p.py) / s.size - margin)::int),
                       least((1 << zz.z) - 1, floor((origin - p.py) / s.size + margin)::int)) AS ys(y)
        )
        DELETE FROM tile_cache c USING t
         WHERE c.layer = 'structures' AND c.z = t.z AND c.x = t.x AND c.y = t.y;
        GET DIAGNOSTICS n = ROW_COUNT;
    END IF;
    PERFORM pg_notify('carteco_tiles', n::text);
    RETURN n;
END $$;

CREATE FUNCTION carteco_tiles_structures_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    pts geometry[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT array_agg(ST_Transform(geom, 3857)) INTO pts FROM new_rows WHERE geom IS NOT NULL;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT array_agg(ST_Transform(geom, 3857)) INTO pts FROM old_rows WHERE geom IS NOT NULL;
    ELSE
        -- Only rows whose drawn or filterable content changed; both positions count.
        SELECT array_agg(ST_Transform(u.pt, 3857)) INTO pts FROM (
            SELECT o.geom AS og, n.geom AS ng
              FROM old_rows o JOIN new_rows n USING (id)
             WHERE to_jsonb(o) - 'updated_at' - 'version' - 'search'
                   IS DISTINCT FROM to_jsonb(n) - 'updated_at' - 'version' - 'search'
        ) d, LATERAL unnest(ARRAY[d.og, d.ng]) AS u(pt)
         WHERE u.pt IS NOT NULL;
        IF pts IS NULL THEN
            RETURN NULL;
        END IF;
    END IF;
    PERFORM carteco_tiles_invalidate(pts);
    RETURN NULL;
END $$;

CREATE TRIGGER structures_tiles_ins AFTER INSERT ON structures
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION carteco_tiles_structures_changed();
CREATE TRIGGER structures_tiles_upd AFTER UPDATE ON structures
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION carteco_tiles_structures_changed();
CREATE TRIGGER structures_tiles_del AFTER DELETE ON structures
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION carteco_tiles_structures_changed();

CREATE FUNCTION carteco_tiles_structures_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE tile_cache_state SET generation = generation + 1, changed_at = now();
    DELETE FROM tile_cache WHERE layer = 'structures';
    PERFORM pg_notify('carteco_tiles', 'structures');
    RETURN NULL;
END $$;
CREATE TRIGGER structures_tiles_trunc AFTER TRUNCATE ON structures
    FOR EACH STATEMENT EXECUTE FUNCTION carteco_tiles_structures_truncated();

-- Territory layers change only when reference data is reloaded: drop their tiles.
CREATE FUNCTION carteco_tiles_territories_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE tile_cache_state SET generation = generation + 1, changed_at = now();
    DELETE FROM tile_cache WHERE layer <> 'structures';
    PERFORM pg_notify('carteco_tiles', 'territories');
    RETURN NULL;
END $$;
CREATE TRIGGER territories_tiles AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON territories
    FOR EACH STATEMENT EXECUTE FUNCTION carteco_tiles_territories_changed();
"""

DOWNGRADE = r"""
DROP TRIGGER IF EXISTS territories_tiles ON territories;
DROP TRIGGER IF EXISTS structures_tiles_trunc ON structures;
DROP TRIGGER IF EXISTS structures_tiles_del ON structures;
DROP TRIGGER IF EXISTS structures_tiles_upd ON structures;
DROP TRIGGER IF EXISTS structures_tiles_ins ON structures;
DROP FUNCTION IF EXISTS carteco_tiles_territories_changed();
DROP FUNCTION IF EXISTS carteco_tiles_structures_truncated();
DROP FUNCTION IF EXISTS carteco_tiles_structures_changed();
DROP FUNCTION IF EXISTS carteco_tiles_invalidate(geometry[], integer, double precision);
DROP TABLE IF EXISTS tile_cache_state;
DROP TABLE IF EXISTS tile_cache;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
