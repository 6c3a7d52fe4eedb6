-- Compare each located structure's declared INSEE code and postcode with the commune (or
-- Paris arrondissement) that contains its point. Unknown postcodes (CEDEX…) are not judged.
WITH c AS (
    SELECT s.id,
           CASE
             WHEN s.geom IS NULL OR s.commune_code IS NULL THEN NULL
             WHEN s.insee_code IS NOT NULL
                  AND s.insee_code NOT IN (s.commune_code, coalesce(s.arrondissement_code, ''))
                  AND NOT EXISTS (
                      SELECT 1 FROM geo_communes g
                       WHERE g.code = s.insee_code
                         AND g.current_code IN (s.commune_code,
                                                coalesce(s.arrondissement_code, '')))
               THEN 'insee_mismatch'
             WHEN s.postcode IS NOT NULL
                  AND EXISTS (SELECT 1 FROM postcodes p WHERE p.postcode = s.postcode)
                  AND NOT EXISTS (
                      -- Through geo_communes, so a merged commune's postcode still counts.
                      SELECT 1 FROM postcodes p
                        LEFT JOIN geo_communes g ON g.code = p.insee_code
                       WHERE p.postcode = s.postcode
                         AND (p.insee_code IN (s.commune_code, coalesce(s.arrondissement_code, ''))
                              OR g.current_code IN (s.commune_code,
                                                    coalesce(s.arrondissement_code, ''))))
               THEN 'postcode_mismatch'
             ELSE 'ok'
           END AS result
      FROM structures s
     WHERE (CAST(:ids AS bigint[]) IS NULL OR s.id = ANY(CAST(:ids AS bigint[])))
)
UPDATE structures s
   SET location_check = c.result
  FROM c
 WHERE s.id = c.id AND s.location_check IS DISTINCT FROM c.result
RETURNING s.id;
