SELECT count(*) AS n, count(geom) AS located,
       string_agg(DISTINCT source, ', ') AS sources,
       string_agg(DISTINCT kind, ', ') AS kinds
  FROM land_sites WHERE departement_code = :d
