SELECT code, ST_AsGeoJSON(geom, 5) AS g
  FROM territories
 WHERE level = 'commune' AND departement_code = :d
