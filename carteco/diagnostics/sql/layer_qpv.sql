SELECT count(*) AS n, string_agg(DISTINCT vintage, ', ') AS vintage,
       string_agg(DISTINCT layer, ', ') AS layers
  FROM territories WHERE level = 'qpv' AND departement_code = :d
