-- Every commune and arrondissement of the COG with its postcodes and a point: the territory's
-- point on surface when its polygon is loaded, else the address nearest the centre of its
-- addresses, else none (such a commune is never returned as a result).
WITH pcs AS (
    SELECT insee_code, array_agg(DISTINCT postcode ORDER BY postcode) AS postcodes
      FROM postcodes GROUP BY insee_code
), addr AS (
    SELECT insee_code, ST_Collect(geom) AS pts FROM geo_addresses GROUP BY insee_code
), refs AS (
    SELECT code, type, name, parent_code, departement_code, population, old_codes, postcodes
      FROM communes_ref WHERE type IN ('commune-actuelle', 'arrondissement-municipal')
    UNION ALL
    -- Lyon and Marseille arrondissements are only in the postcode table.
    SELECT p.insee_code, 'arrondissement-municipal', min(p.commune_name),
           CASE WHEN p.insee_code LIKE '132%' THEN '13055'
                WHEN p.insee_code LIKE '6938%' THEN '69123' END,
           left(p.insee_code, 2), NULL::integer, '{}'::text[], '{}'::text[]
      FROM postcodes p
     WHERE (p.insee_code LIKE '132%' OR p.insee_code LIKE '6938%')
       AND NOT EXISTS (SELECT 1 FROM communes_ref r WHERE r.code = p.insee_code)
     GROUP BY p.insee_code
)
SELECT c.code,
       CASE WHEN c.type = 'arrondissement-municipal' THEN 'arrondissement' ELSE 'commune' END
           AS kind,
       c.name,
       c.parent_code,
       c.departement_code,
       c.population,
       c.old_codes,
       ARRAY(SELECT DISTINCT x FROM unnest(c.postcodes || coalesce(pcs.postcodes, '{}')) x
              ORDER BY x) AS postcodes,
       ST_AsEWKT(COALESCE(ST_PointOnSurface(t.geom),
                          ST_ClosestPoint(a.pts, ST_Centroid(a.pts)))) AS geom
  FROM refs c
  LEFT JOIN pcs ON pcs.insee_code = c.code
  LEFT JOIN addr a ON a.insee_code = c.code
  LEFT JOIN LATERAL (
        SELECT t.geom FROM territories t
         WHERE t.level IN ('commune', 'arrondissement') AND t.code = c.code
         ORDER BY t.level LIMIT 1) t ON true
 ORDER BY c.code, c.type;
