-- Every commune, arrondissement and former commune of the reference, for the in-memory
-- commune index of the geocoder (names of the current commune joined once here).
SELECT g.code, g.kind, g.name, g.name_key, g.current_code, g.parent_code, g.departement_code,
       g.postcodes, g.population, c.name AS current_name,
       ST_X(g.geom) AS lon, ST_Y(g.geom) AS lat
  FROM geo_communes g
  LEFT JOIN LATERAL (
        SELECT c.name FROM geo_communes c
         WHERE c.code = g.current_code AND c.kind IN ('commune', 'arrondissement')
         ORDER BY c.kind LIMIT 1) c ON true
 ORDER BY g.code, g.kind, g.name_key;
