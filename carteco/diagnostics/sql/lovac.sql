SELECT DISTINCT ON (commune_code) commune_code, value
  FROM commune_indicators
 WHERE indicator = 'logements_vacants_2ans_pct'
   AND commune_code = ANY(:codes)
 ORDER BY commune_code, source
