-- Coverage of the declared land needs of a département: count, sources.
SELECT count(*) AS n, string_agg(DISTINCT source, ', ') AS sources
  FROM land_needs WHERE departement_code = :d
