SELECT c.departement_code AS code, c.region_code,
       sum(c.population) AS population, count(*) AS communes,
       (SELECT name FROM territories WHERE level = 'departement' AND code = :d
         LIMIT 1) AS name
  FROM communes_ref c
 WHERE c.type = 'commune-actuelle' AND c.departement_code = :d
 GROUP BY 1, 2
