SELECT count(*) AS n, string_agg(DISTINCT source, ', ') AS sources
  FROM land_needs WHERE departement_code = :d
