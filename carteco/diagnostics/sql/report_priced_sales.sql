SELECT id_mutation, date_mutation, commune_code, kind, price_m2,
       valeur_fonciere, nature_mutation, ST_X(geom) AS lon, ST_Y(geom) AS lat
  FROM land_transactions
 WHERE departement_code = :d AND price_m2 IS NOT NULL AND geom IS NOT NULL
   AND kind = 'local'
 ORDER BY date_mutation, id_mutation
