-- The contrats de ville reference layer: how many points it holds, its layers and vintages,
-- and the départements it covers (none loaded: n = 0).
SELECT count(*) AS n,
       string_agg(DISTINCT c.layer, ', ' ORDER BY c.layer) AS layers,
       (SELECT string_agg(DISTINCT r.vintage, ', ' ORDER BY r.vintage)
          FROM reference_layers r
         WHERE r.name IN (SELECT DISTINCT layer FROM contrats_ville)) AS vintage,
       string_agg(DISTINCT c.departement_code, ', ' ORDER BY c.departement_code) AS coverage
  FROM contrats_ville c
