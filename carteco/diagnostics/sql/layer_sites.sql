-- Coverage of the available sites of a département: count, located, sources, kinds.
SELECT count(*) AS n, count(geom) AS located,
       string_agg(DISTINCT source, ', ') AS sources,
       string_agg(DISTINCT kind, ', ') AS kinds
  FROM land_sites WHERE departement_code = :d
