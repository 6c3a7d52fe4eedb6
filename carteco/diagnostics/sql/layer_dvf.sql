-- Coverage of the DVF sales of a département: count, dates, communes, sources.
SELECT count(*) AS n, min(date_mutation) AS first, max(date_mutation) AS last,
       count(DISTINCT commune_code) AS communes,
       string_agg(DISTINCT source, ', ') AS sources
  FROM land_transactions WHERE departement_code = :d
