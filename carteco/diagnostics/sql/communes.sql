-- Communes of a département with population, intercommunality (EPT inside the Métropole du
-- Grand Paris, else EPCI) and, when the commune outline is loaded, its area in Lambert-93.
SELECT c.code, c.name, c.population, c.epci_code, c.epci_name, c.ept_code,
       coalesce(c.ept_code, c.epci_code) AS inter_code,
       CASE WHEN c.ept_code IS NOT NULL THEN coalesce(e.name, c.ept_code)
            ELSE c.epci_name END AS inter_name,
       CASE WHEN c.ept_code IS NOT NULL THEN 'EPT' ELSE 'EPCI' END AS inter_kind,
       coalesce(t.area_m2, ST_Area(ST_Transform(t.geom, 2154))) AS area_m2
  FROM communes_ref c
  LEFT JOIN territories t ON t.level = 'commune' AND t.code = c.code
  LEFT JOIN territories e ON e.level = 'ept' AND e.code = c.ept_code
 WHERE c.type = 'commune-actuelle' AND c.departement_code = :dep
 ORDER BY c.code
