-- Posts of département :d funded in :year from the loaded sources, with the registry structure
-- sharing the employer's SIRET (the lowest id when several do) and the contrat de ville code.
SELECT p.program, p.siret, p.employer_name, p.amount_eur, p.contrat_ville,
       (SELECT s.name FROM structures s
         WHERE s.siret = p.siret AND s.status = 'active'
         ORDER BY s.id LIMIT 1) AS structure_name
  FROM land_posts p
 WHERE p.departement_code = :d
   AND p.year = :year
   AND p.source = ANY(:sources)
 ORDER BY p.program, p.source_id
