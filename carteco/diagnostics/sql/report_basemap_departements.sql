-- The other départements in the report's frame (the box :xmin :ymin :xmax :ymax of
-- report_basemap_frame.sql, in the SRID of the indexed column): outline simplified by
-- :tolerance and a label point inside the frame.
WITH box AS (
    SELECT ST_MakeEnvelope(:xmin, :ymin, :xmax, :ymax, 4326) AS b
)
SELECT t.code, t.name,
       ST_AsGeoJSON(ST_SimplifyPreserveTopology(t.geom, :tolerance), 4) AS g,
       ST_X(p.pt) AS lon, ST_Y(p.pt) AS lat
  FROM box
  JOIN territories t ON t.level = 'departement' AND t.code <> :d AND t.geom && box.b
 CROSS JOIN LATERAL (
       SELECT ST_PointOnSurface(ST_MakeValid(ST_ClipByBox2D(t.geom, box.b::box2d))) AS pt
 ) p
 ORDER BY t.code
