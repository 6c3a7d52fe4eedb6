-- Communes of the report's frame (the département's extent widened by :margin of its size):
-- label point and population for every one, a simplified outline for those of other
-- départements (the département's own are drawn from their full outlines).
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
SELECT t.code, t.name, t.departement_code, t.population,
       t.departement_code IS NOT DISTINCT FROM :d AS own,
       ST_X(p.pt) AS lon, ST_Y(p.pt) AS lat,
       CASE WHEN t.departement_code IS DISTINCT FROM :d
            THEN ST_AsGeoJSON(ST_SimplifyPreserveTopology(t.geom, box.size / :detail), 4)
       END AS g
  FROM box
  JOIN territories t ON t.level = 'commune' AND t.geom && box.b
 CROSS JOIN LATERAL (SELECT ST_PointOnSurface(t.geom) AS pt) p
 ORDER BY t.population DESC NULLS LAST, t.code
