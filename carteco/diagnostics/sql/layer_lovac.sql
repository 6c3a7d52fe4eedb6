SELECT count(DISTINCT i.commune_code) AS n,
       count(DISTINCT i.commune_code) FILTER (WHERE i.value IS NOT NULL) AS known,
       string_agg(DISTINCT i.source, ', ') AS sources,
       string_agg(DISTINCT i.vintage, ', ') AS vintage
  FROM commune_indicators i
 WHERE i.indicator = 'logements_vacants_2ans_pct'
   AND i.commune_code = ANY(:codes)
