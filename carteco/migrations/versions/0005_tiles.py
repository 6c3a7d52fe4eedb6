"""Vector tile cache with edit-aware invalidation.

Rendered tiles are cached in `tile_cache`. Statement-level triggers on `structures` delete,
inside the writing transaction, exactly the cached `structures` tiles that cover a changed
point (old and new position, at every zoom, with the render margin), bump a generation
counter and NOTIFY `carteco_tiles`. A render only stores its tile if the generation it saw is
still current, under a share lock, so a render racing an import never caches stale data.
The same triggers keep `tile_grid` (structures summed per z14 cell and first sector) exact,
so unfiltered clusters at zooms 0–10 are summed from it instead of from every point.

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

-- Cluster grid: active located structures summed per z14 and per z16 tile × first sector
-- (count, sums of Web Mercator x/y and of ids). Clusters have 16 cells per tile side, so the
-- cells of zooms 0–10 are unions of z14 tiles and those of zooms 11–12 unions of z16 tiles:
-- they are read from here instead of from every point, with exact counts, centroids,
-- dominant sectors, and the id when a cell holds one structure.
CREATE TABLE tile_grid (
    z smallint NOT NULL,
    cx integer NOT NULL,
    cy integer NOT NULL,
    sector text NOT NULL,
    n integer NOT NULL,
    sx double precision NOT NULL,
    sy double precision NOT NULL,
    sid numeric NOT NULL,
    PRIMARY KEY (z, cx, cy, sector)
);
CREATE INDEX tile_grid_empty_idx ON tile_grid (n) WHERE n <= 0;

-- Web Mercator metres and tile indexes at zoom z of a 4326 point (closed formulas).
CREATE FUNCTION carteco_tiles_cell(g geometry, z integer, OUT mx double precision,
                                   OUT my double precision, OUT cx integer, OUT cy integer)
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT m.mx, m.my,
           floor((m.mx + 20037508.342789244) / (40075016.68557849 / (1 << z)))::integer,
           floor((20037508.342789244 - m.my) / (40075016.68557849 / (1 << z)))::integer
      FROM (SELECT ST_X(g) * 111319.49079327357 AS mx,
                   ln(tan(radians(45 + ST_Y(g) / 2))) * 6378137 AS my) m
$$;

CREATE FUNCTION carteco_tiles_grid_rebuild() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    DELETE FROM tile_grid;
    INSERT INTO tile_grid (z, cx, cy, sector, n, sx, sy, sid)
    SELECT gz.z, c.cx, c.cy, coalesce(split_part(s.sectors[1], '.', 1), 'inconnu'),
           count(*), sum(c.mx), sum(c.my), sum(s.id)
      FROM structures s, (VALUES (14), (16)) gz(z), LATERAL carteco_tiles_cell(s.geom, gz.z) c
     WHERE s.geom IS NOT NULL AND s.status = 'active'
     GROUP BY 1, 2, 3, 4;
    GET DIAGNOSTICS n = ROW_COUNT;
    UPDATE tile_cache_state SET generation = generation + 1, changed_at = now();
    DELETE FROM tile_cache WHERE layer = 'structures';
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
    -- Keep the cluster grid in step: remove the old rows' share, add the new rows'.
    IF TG_OP = 'INSERT' THEN
        INSERT INTO tile_grid AS g (z, cx, cy, sector, n, sx, sy, sid)
        SELECT gz.z, c.cx, c.cy, d.sector, sum(d.sign), sum(d.sign * c.mx), sum(d.sign * c.my),
               sum(d.sign * d.id)
          FROM (SELECT 1 AS sign, id, status, geom, coalesce(split_part(sectors[1], '.', 1), 'inconnu') AS sector FROM new_rows) d, (VALUES (14), (16)) gz(z),
               LATERAL carteco_tiles_cell(d.geom, gz.z) c
         WHERE d.geom IS NOT NULL AND d.status = 'active'
         GROUP BY 1, 2, 3, 4
        ON CONFLICT (z, cx, cy, sector) DO UPDATE
           SET n = g.n + EXCLUDED.n, sx = g.sx + EXCLUDED.sx, sy = g.sy + EXCLUDED.sy,
               sid = g.sid + EXCLUDED.sid;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO tile_grid AS g (z, cx, cy, sector, n, sx, sy, sid)
        SELECT gz.z, c.cx, c.cy, d.sector, sum(d.sign), sum(d.sign * c.mx), sum(d.sign * c.my),
               sum(d.sign * d.id)
          FROM (SELECT -1 AS sign, id, status, geom, coalesce(split_part(sectors[1], '.', 1), 'inconnu') AS sector FROM old_rows) d, (VALUES (14), (16)) gz(z),
               LATERAL carteco_tiles_cell(d.geom, gz.z) c
         WHERE d.geom IS NOT NULL AND d.status = 'active'
         GROUP BY 1, 2, 3, 4
        ON CONFLICT (z, cx, cy, sector) DO UPDATE
           SET n = g.n + EXCLUDED.n, sx = g.sx + EXCLUDED.sx, sy = g.sy + EXCLUDED.sy,
               sid = g.sid + EXCLUDED.sid;
    ELSE
        INSERT INTO tile_grid AS g (z, cx, cy, sector, n, sx, sy, sid)
        SELECT gz.z, c.cx, c.cy, d.sector, sum(d.sign), sum(d.sign * c.mx), sum(d.sign * c.my),
               sum(d.sign * d.id)
          FROM (SELECT -1 AS sign, id, status, geom, coalesce(split_part(sectors[1], '.', 1), 'inconnu') AS sector FROM old_rows
                UNION ALL SELECT 1 AS sign, id, status, geom, coalesce(split_part(sectors[1], '.', 1), 'inconnu') AS sector FROM new_rows) d, (VALUES (14), (16)) gz(z),
               LATERAL carteco_tiles_cell(d.geom, gz.z) c
         WHERE d.geom IS NOT NULL AND d.status = 'active'
         GROUP BY 1, 2, 3, 4
        ON CONFLICT (z, cx, cy, sector) DO UPDATE
           SET n = g.n + EXCLUDED.n, sx = g.sx + EXCLUDED.sx, sy = g.sy + EXCLUDED.sy,
               sid = g.sid + EXCLUDED.sid;
    END IF;
    DELETE FROM tile_grid WHERE n <= 0;
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
    DELETE FROM tile_grid;
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
-- Existing structures (upgrade of a populated database).
SELECT carteco_tiles_grid_rebuild();

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
DROP FUNCTION IF EXISTS carteco_tiles_grid_rebuild();
DROP FUNCTION IF EXISTS carteco_tiles_cell(geometry, integer);
DROP TABLE IF EXISTS tile_grid;
DROP TABLE IF EXISTS tile_cache_state;
DROP TABLE IF EXISTS tile_cache;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
