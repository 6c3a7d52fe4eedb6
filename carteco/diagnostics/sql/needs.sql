SELECT n.id, n.source_id, n.name, n.siret, n.structure_id, n.kind,
       n.surface_min_m2, n.surface_max_m2, n.budget_rent_eur_month,
       n.budget_purchase_eur, n.territories, n.max_distance_km, n.declared_on,
       n.commune_code, n.departement_code, ST_X(n.geom) AS lon,
       ST_Y(n.geom) AS lat,
       -- Declared on the public survey form (carteco/land/survey.py): intended use, deadline.
       n.extra->>'usage' AS usage, n.extra->>'echeance' AS deadline
  FROM land_needs n WHERE n.departement_code = :d ORDER BY n.source_id
