SELECT ST_AsGeoJSON(geom, 5)
  FROM territories
 WHERE level = 'departement' AND code = :d
 ORDER BY layer
 LIMIT 1
