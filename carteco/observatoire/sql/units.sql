-- Population units of a territory with the nearest open structure of the sectors.
-- Units: the 200 m squares when a grid is loaded over the territory (:use_grid), else the
-- communes (Paris, Lyon, Marseille by arrondissement). Each unit is placed at its centre,
-- computed in Lambert-93 (the centroid of the Lambert-93 outline, as geopandas computes it).
WITH terr AS (
    SELECT geom FROM territories WHERE level = :level AND code = :code
), communes AS (
    SELECT t.level, t.code, t.name, t.population::float8 AS population, t.geom,
           coalesce(t.commune_code, t.code) AS commune_code, t.centre_l93 AS p2154
      FROM territories t
     WHERE NOT :use_grid
       AND t.level IN ('commune', 'arrondissement')
       AND (CASE :level
              WHEN 'commune' THEN t.code = :code OR t.commune_code = :code
              WHEN 'region' THEN t.region_code = :code
              WHEN 'departement' THEN t.departement_code = :code
              WHEN 'epci' THEN t.epci_code = :code
              WHEN 'ept' THEN t.ept_code = :code
              ELSE false END)
       AND NOT (t.level = 'commune' AND EXISTS (
                SELECT 1 FROM territories a
                 WHERE a.level = 'arrondissement' AND a.commune_code = t.code))
), squares AS (
    SELECT 'carreau' AS level, g.idcar AS code, g.idcar AS name, g.population,
           ST_Multi(g.geom) AS geom,
           (SELECT c.code FROM territories c
             WHERE c.level = 'commune' AND ST_Intersects(c.geom, g.centre) LIMIT 1) AS commune_code,
           ST_Centroid(ST_Transform(g.geom, 2154)) AS p2154
      FROM population_grid g, terr
     WHERE :use_grid AND ST_Intersects(terr.geom, g.centre)
), placed AS (
    SELECT * FROM communes UNION ALL SELECT * FROM squares
)
SELECT p.level, p.code, p.name, p.population, p.commune_code,
       ST_X(ST_Transform(p.p2154, 4326)) AS lon, ST_Y(ST_Transform(p.p2154, 4326)) AS lat,
       n.id AS structure_id, n.name AS structure_name, n.distance_m,
       CASE WHEN :with_geom THEN ST_AsGeoJSON(p.geom, 6) END AS geometry
  FROM placed p
  -- An upper bound from the KNN on the indexed WGS 84 column, then the exact Lambert-93
  -- nearest among the structures inside that radius (the query box is reprojected, with a
  -- margin for the edges that straighten in WGS 84; never the indexed column).
  LEFT JOIN LATERAL (
      SELECT ST_Distance(ST_Transform(s.geom, 2154), p.p2154) AS ub
        FROM structures s
       WHERE s.status = 'active' AND s.geom IS NOT NULL
         AND s.sectors && CAST(:sectors AS text[])
       ORDER BY s.geom <-> ST_Transform(p.p2154, 4326)
       LIMIT 1
  ) k ON true
  LEFT JOIN LATERAL (
      SELECT s.id, s.name, ST_Distance(ST_Transform(s.geom, 2154), p.p2154) AS distance_m
        FROM structures s
       WHERE k.ub IS NOT NULL AND s.status = 'active' AND s.geom IS NOT NULL
         AND s.sectors && CAST(:sectors AS text[])
         AND s.geom && ST_Transform(ST_Expand(p.p2154, k.ub * 1.01 + 10), 4326)
       ORDER BY 3, s.id
       LIMIT 1
  ) n ON true
 ORDER BY p.code
