-- The frame of the report's maps, computed once for its basemap queries: the extent of the
-- département (its outline and its communes') widened by :margin of its size on each side, in
-- EPSG:4326 like the outlines and stations it selects, and that size (degrees) for the
-- simplification of the outlines. No row when the département is not loaded.
WITH ext AS (
    SELECT ST_SetSRID(ST_Extent(geom)::geometry, 4326) AS b
      FROM territories
     WHERE (level = 'departement' AND code = :d) OR (level = 'commune' AND departement_code = :d)
), sized AS (
    SELECT b, greatest(ST_XMax(b) - ST_XMin(b), ST_YMax(b) - ST_YMin(b)) AS size
      FROM ext
     WHERE b IS NOT NULL
), box AS (
    SELECT ST_Expand(b, size * :margin) AS b, size FROM sized
)
SELECT ST_XMin(b) AS xmin, ST_YMin(b) AS ymin, ST_XMax(b) AS xmax, ST_YMax(b) AS ymax, size
  FROM box
