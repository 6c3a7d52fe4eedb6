SELECT code, name, commune_code, ST_AsGeoJSON(geom, 6) AS g
  FROM territories
 WHERE level = 'qpv' AND departement_code = :d
 ORDER BY code
