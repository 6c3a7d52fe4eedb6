"""Tagging with the France-wide commune layer: index-bound lookups, and a point in no commune
polygon takes the nearest commune.

The commune outlines of France are simplified (IGN ADMIN EXPRESS 2018, 25 %): a structure on a
quay can fall just off the coastline, or in a sliver between two outlines drawn from different
files (IDF and the rest of France). Such a point now takes the nearest commune polygon within
2 km — the same rule as the land-access diagnostic — before falling back on the département.

Revision ID: 0007_france_tagging
Revises: 0006_tile_cache_lru
Create Date: 2026-12-01
"""

from alembic import op

revision = "0007_france_tagging"
down_revision = "0006_tile_cache_lru"
branch_labels = None
depends_on = None

TAG_FUNCTION = r"""
CREATE OR REPLACE FUNCTION carteco_tag_structure() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    t record;
BEGIN
    NEW.commune_code := NULL; NEW.arrondissement_code := NULL; NEW.epci_code := NULL;
    NEW.ept_code := NULL; NEW.departement_code := NULL; NEW.region_code := NULL;
    NEW.qpv_code := NULL;
    IF NEW.geom IS NULL THEN
        RETURN NEW;
    END IF;
    -- "OFFSET 0" keeps each lookup on the GiST index: with 35,000 communes, "ORDER BY code
    -- LIMIT 1" alone made the planner walk the (level, code) btree and test every polygon.
    SELECT code, epci_code, ept_code, departement_code, region_code INTO t
      FROM (SELECT * FROM territories
             WHERE level = 'commune' AND ST_Intersects(geom, NEW.geom) OFFSET 0) c
     ORDER BY code LIMIT 1;
    IF NOT FOUND THEN
        -- Off a simplified outline (coast, sliver between layers): the nearest commune, 2 km max.
        SELECT code, epci_code, ept_code, departement_code, region_code INTO t
          FROM (SELECT *, ST_Distance(geom::geography, NEW.geom::geography) AS d
                  FROM territories
                 WHERE level = 'commune' AND geom && ST_Expand(NEW.geom, 0.03)
                   AND ST_DWithin(geom::geography, NEW.geom::geography, 2000) OFFSET 0) c
         ORDER BY d, code LIMIT 1;
    END IF;
    IF FOUND THEN
        NEW.commune_code := t.code; NEW.epci_code := t.epci_code; NEW.ept_code := t.ept_code;
        NEW.departement_code := t.departement_code; NEW.region_code := t.region_code;
    ELSE
        -- Outside the communes loaded: fall back on the département and région layers.
        SELECT code, region_code INTO t
          FROM (SELECT code, region_code FROM territories
                 WHERE level = 'departement' AND ST_Intersects(geom, NEW.geom) OFFSET 0) d
         ORDER BY code LIMIT 1;
        IF FOUND THEN
            NEW.departement_code := t.code; NEW.region_code := t.region_code;
        ELSE
            SELECT code INTO t
              FROM (SELECT code FROM territories
                     WHERE level = 'region' AND ST_Intersects(geom, NEW.geom) OFFSET 0) r
             ORDER BY code LIMIT 1;
            IF FOUND THEN NEW.region_code := t.code; END IF;
        END IF;
    END IF;
    SELECT code INTO t
      FROM (SELECT code FROM territories
             WHERE level = 'arrondissement' AND ST_Intersects(geom, NEW.geom) OFFSET 0) a
     ORDER BY code LIMIT 1;
    IF FOUND THEN NEW.arrondissement_code := t.code; END IF;
    SELECT code INTO t
      FROM (SELECT code FROM territories
             WHERE level = 'qpv' AND ST_Intersects(geom, NEW.geom) OFFSET 0) q
     ORDER BY code LIMIT 1;
    IF FOUND THEN NEW.qpv_code := t.code; END IF;
    RETURN NEW;
END $$;
"""

PREVIOUS_TAG_FUNCTION = r"""
CREATE OR REPLACE FUNCTION carteco_tag_structure() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    t record;
BEGIN
    NEW.commune_code := NULL; NEW.arrondissement_code := NULL; NEW.epci_code := NULL;
    NEW.ept_code := NULL; NEW.departement_code := NULL; NEW.region_code := NULL;
    NEW.qpv_code := NULL;
    IF NEW.geom IS NULL THEN
        RETURN NEW;
    END IF;
    SELECT code, epci_code, ept_code, departement_code, region_code INTO t
      FROM territories
     WHERE level = 'commune' AND ST_Intersects(geom, NEW.geom)
     ORDER BY code LIMIT 1;
    IF FOUND THEN
        NEW.commune_code := t.code; NEW.epci_code := t.epci_code; NEW.ept_code := t.ept_code;
        NEW.departement_code := t.departement_code; NEW.region_code := t.region_code;
    ELSE
        SELECT code, region_code INTO t FROM territories
         WHERE level = 'departement' AND ST_Intersects(geom, NEW.geom) ORDER BY code LIMIT 1;
        IF FOUND THEN
            NEW.departement_code := t.code; NEW.region_code := t.region_code;
        ELSE
            SELECT code INTO t FROM territories
             WHERE level = 'region' AND ST_Intersects(geom, NEW.geom) ORDER BY code LIMIT 1;
            IF FOUND THEN NEW.region_code := t.code; END IF;
        END IF;
    END IF;
    SELECT code INTO t FROM territories
     WHERE level = 'arrondissement' AND ST_Intersects(geom, NEW.geom) ORDER BY code LIMIT 1;
    IF FOUND THEN NEW.arrondissement_code := t.code; END IF;
    SELECT code INTO t FROM territories
     WHERE level = 'qpv' AND ST_Intersects(geom, NEW.geom) ORDER BY code LIMIT 1;
    IF FOUND THEN NEW.qpv_code := t.code; END IF;
    RETURN NEW;
END $$;
"""


def upgrade() -> None:
    op.execute(TAG_FUNCTION)


def downgrade() -> None:
    op.execute(PREVIOUS_TAG_FUNCTION)
