SELECT count(*) AS n, min(date_mutation) AS first, max(date_mutation) AS last,
       count(DISTINCT commune_code) AS communes,
       count(*) FILTER (WHERE qpv_code IS NOT NULL) AS in_qpv,
       string_agg(DISTINCT source, ', ') AS sources
  FROM land_transactions WHERE departement_code = :d
