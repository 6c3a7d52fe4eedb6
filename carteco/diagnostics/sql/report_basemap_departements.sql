-- The other départements in the report's frame: simplified outline and a label point inside
-- the frame.
WITH ext AS (
    SELECT ST_SetSRID(ST_Extent(geom)::geometry, 4326) AS b
      FROM territories
     WHERE (level = 'departement' AND code = :d) OR (level = 'commune' AND departement_code = :d)
), box AS (
    SELECT ST_Expand(b, greatest(ST_XMax(b) - ST_XMin(b), ST_YMax(b) - ST_YMin(b)) * :margin) AS b,
           greatest(ST_XMax(b) - ST_XMin(b), ST_YMax(b) - ST_YMin(b)) AS size
      FROM ext
     WHERE b IS NOT NULL
)
SELECT t.code, t.name,
       ST_AsGeoJSON(ST_SimplifyPreserveTopology(t.geom, box.size / :detail), 4) AS g,
       ST_X(p.pt) AS lon, ST_Y(p.pt) AS lat
  FROM box
  JOIN territories t ON t.level = 'departement' AND t.code <> :d AND t.geom && box.b
 CROSS JOIN LATERAL (
       SELECT ST_PointOnSurface(ST_MakeValid(ST_ClipByBox2D(t.geom, box.b::box2d))) AS pt
 ) p
 ORDER BY t.code
