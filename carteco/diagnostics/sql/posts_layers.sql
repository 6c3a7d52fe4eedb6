-- The politique de la ville post layers loaded (any département), and how many posts each
-- holds in département :d with the latest year there.
SELECT l.kind, l.source, l.description, l.vintage,
       (SELECT count(*) FROM land_posts p
         WHERE p.source = l.source AND p.departement_code = :d) AS n_dep,
       (SELECT max(p.year) FROM land_posts p
         WHERE p.source = l.source AND p.departement_code = :d) AS last_year,
       (SELECT string_agg(DISTINCT p.departement_code, ', ' ORDER BY p.departement_code)
          FROM land_posts p WHERE p.source = l.source) AS coverage
  FROM land_layers l
 WHERE l.kind IN ('adultes_relais', 'fonjep_qpv')
 ORDER BY l.kind, l.source
