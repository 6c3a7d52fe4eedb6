-- Stations in the report's frame.
WITH ext AS (
    SELECT ST_SetSRID(ST_Extent(geom)::geometry, 4326) AS b
      FROM territories
     WHERE (level = 'departement' AND code = :d) OR (level = 'commune' AND departement_code = :d)
), box AS (
    SELECT ST_Expand(b, greatest(ST_XMax(b) - ST_XMin(b), ST_YMax(b) - ST_YMin(b)) * :margin) AS b
      FROM ext
     WHERE b IS NOT NULL
)
SELECT s.name, s.mode, s.line, ST_X(s.geom) AS lon, ST_Y(s.geom) AS lat
  FROM box
  JOIN stations s ON s.geom && box.b
 ORDER BY s.name, s.source_id
